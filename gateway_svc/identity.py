"""Who is calling: access-token verification for ``@api(auth=True)`` routes
(and the websocket's token, gateway_svc.realtime).

* The token is a JWT signed by auth with Ed25519 (``alg: EdDSA``); it is
  verified locally with auth's public keys. Only ``EdDSA`` is accepted, so
  ``alg: none`` and HMAC tokens "signed" with a public key are refused.
* Public keys come from the Redis keys ``auth:jwks:kid:{kid}`` (one JWK
  each, no TTL) that auth writes at start and every minute. They are kept in
  process memory for ``JWKS_CACHE_SECONDS``; an unknown ``kid`` is looked
  up, at most ``JWKS_LOOKUPS_PER_SECOND`` times a second in all, and a kid
  found missing is not looked up again for a second, so garbage kids cannot
  hammer Redis.
* Revocation: ``auth:blacklist:jti:{jti}`` (logout) and
  ``auth:blacklist:sid:{sid}`` (a revoked session) are checked on every
  request, failing closed: Redis unreachable -> 503, never a free pass.
  (``@api`` routes check them with their other per-request checks in one
  Redis call: ``gateway_svc.checks``.)
* A token whose signature was verified is remembered in process until it
  expires (at most ``VERIFIED_TOKENS_MAX`` of them), keyed by the whole
  token: PyJWT is skipped on its next requests, while its key must still be
  trusted and the blacklist is still checked every time.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time

import jwt
import redis
from cachetools import TLRUCache
from jwt.algorithms import OKPAlgorithm

from shared.errors import Unauthorized, Unavailable

log = logging.getLogger(__name__)

ALGORITHMS = ["EdDSA"]
ISSUER = "workforce-auth"
AUDIENCE = "workforce-api"
JWKS_KEY_PREFIX = "auth:jwks:kid:"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "iss", "aud"]
_KID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
MAX_TOKEN_BYTES = 4096
VERIFIED_TOKENS_MAX = 10_000
REVOKED = "The access token has been revoked."


def blacklist_keys(claims: dict) -> list[str]:
    if "pat" in claims:  # a personal access token: its record must be live instead
        return []
    keys = [f"auth:blacklist:jti:{claims['jti']}"]
    if claims.get("sid"):
        keys.append(f"auth:blacklist:sid:{claims['sid']}")
    return keys


def ask_if_revoked(pipe, claims: dict) -> int:
    """Queue on ``pipe`` the commands that tell whether the token of ``claims`` was
    revoked, one key each (a Redis Cluster keeps the keys in other slots): a JWT's
    blacklist keys, or a personal access token's record. Returns how many replies
    :func:`revoked_by` reads."""
    if "pat_key" in claims:
        pipe.get(claims["pat_key"])
        return 1
    keys = blacklist_keys(claims)
    for key in keys:
        pipe.exists(key)
    return len(keys)


def revoked_by(claims: dict, replies: list) -> bool:
    """The answer to :func:`ask_if_revoked`'s commands: revoked (or, for a
    personal access token, its record gone)?"""
    if "pat_key" in claims:
        return replies[0] is None or replies[0] in (PAT_REVOKED, PAT_REVOKED.encode())
    return any(replies)


class Identity:
    def __init__(self, config: dict, redis_client):
        self.config = config
        self.redis = redis_client
        self.cache_seconds = float(config.get("JWKS_CACHE_SECONDS", 300))
        self.lookups_per_second = int(config.get("JWKS_LOOKUPS_PER_SECOND", 20))
        self.leeway = int(config.get("JWT_LEEWAY_SECONDS", 5))
        self._keys: dict[str, tuple[object, float]] = {}   # kid -> (public key, fetched at)
        self._missing: dict[str, float] = {}               # kid -> when found missing
        self._window = (0.0, 0)                            # (second, lookups in it)
        # token -> (kid, claims), each until its exp (+ leeway), as PyJWT would accept it
        self._verified: TLRUCache[str, tuple[str, dict]] = TLRUCache(
            VERIFIED_TOKENS_MAX, timer=time.time,
            ttu=lambda _token, entry, _now: entry[1]["exp"] + self.leeway)

    # -- the request side ---------------------------------------------------
    def authenticate(self, request) -> dict:
        """The verified claims of the request's bearer token, or Unauthorized."""
        return self.verify_token(self.bearer_token(request))

    @staticmethod
    def bearer_token(request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Send an access token: Authorization: Bearer <token>.",
                               headers={"WWW-Authenticate": 'Bearer realm="api"'})
        return token.strip()

    def verify_token(self, token: str) -> dict:
        """Claims of a valid, unrevoked access token; Unauthorized (401) if not,
        Unavailable (503) when revocation cannot be checked."""
        claims = self.verify_signature(token)
        if self.is_revoked(claims):
            raise Unauthorized(REVOKED)
        return claims

    def verify_signature(self, token: str) -> dict:
        """Claims of a well-formed, well-signed, unexpired access token, revocation
        not checked (the caller does: :meth:`is_revoked`, ``gateway_svc.checks``)."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized("The access token is malformed.")
        known = self._verified.get(token)
        if known is not None:
            kid, claims = known
            self.public_key(kid)  # a key dropped from the JWKS since is not trusted
            return dict(claims)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("The access token is malformed.") from None
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized("The access token's algorithm is not accepted.")
        key = self.public_key(header.get("kid"))
        try:
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, audience=AUDIENCE,
                                issuer=ISSUER, leeway=self.leeway,
                                options={"require": REQUIRED_CLAIMS})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The access token has expired.") from None
        except jwt.PyJWTError:
            raise Unauthorized("The access token is invalid.") from None
        if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("jti"), str):
            raise Unauthorized("The access token is invalid.")
        claims.setdefault("email_verified", False)
        self._verified[token] = (header["kid"], claims)
        return dict(claims)

    def is_revoked(self, claims: dict) -> bool:
        """A JWT blacklisted, or a personal access token's record revoked or gone."""
        try:
            if "pat_key" in claims:
                return revoked_by(claims, [self.redis.get(claims["pat_key"])])
            return revoked_by(claims, [self.redis.exists(*blacklist_keys(claims))])
        except redis.RedisError as exc:
            log.warning("token blacklist unreachable, refusing: %s", exc)
            raise Unavailable("Cannot check the token right now; try again shortly.") from None

    # -- keys ---------------------------------------------------------------
    def public_key(self, kid):
        if not isinstance(kid, str) or not _KID.match(kid):
            raise Unauthorized("The access token has no valid key id.")
        now = time.monotonic()
        known = self._keys.get(kid)
        if known and now - known[1] < self.cache_seconds:
            return known[0]
        key = self._lookup(kid, now)
        if key is None:
            if known:  # a key dropped from the JWKS is no longer trusted
                self._keys.pop(kid, None)
            raise Unauthorized("The access token was signed with an unknown key.")
        self._keys[kid] = (key, now)
        return key

    def _lookup(self, kid: str, now: float):
        missing_at = self._missing.get(kid)
        if missing_at is not None and now - missing_at < 1.0:
            return None
        second, count = self._window
        if int(now) != second:
            second, count = int(now), 0
        if count >= self.lookups_per_second:
            return None
        self._window = (second, count + 1)
        try:
            raw = self.redis.get(f"{JWKS_KEY_PREFIX}{kid}")
        except redis.RedisError as exc:
            log.warning("JWKS unreachable: %s", exc)
            raise Unavailable("Cannot check the token right now; try again shortly.") from None
        if raw is None:
            if len(self._missing) > 10_000:
                self._missing.clear()
            self._missing[kid] = now
            return None
        try:
            jwk = json.loads(raw)
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                return None
            return OKPAlgorithm.from_jwk(jwk)
        except (ValueError, jwt.PyJWTError) as exc:
            log.warning("bad JWK for kid %s: %s", kid, exc)
            return None


# --- personal access tokens (auth_svc.pats writes their records) -------------------
PAT_PREFIX = "wfp_"
PAT_RECORD_PREFIX = "auth:pat:"
PAT_USED_PREFIX = "gateway:pat:used:"
PAT_REVOKED = "revoked"
PAT_USED_EVERY = 60          # seconds between two reports of one token's use, per process
PAT_USED_TTL = 400 * 24 * 3600
_PAT = re.compile(r"^wfp_[A-Za-z0-9_-]{43}$")
UNKNOWN_PAT = "The personal access token is unknown, expired or revoked."


def is_personal_token(token: str) -> bool:
    return token.startswith(PAT_PREFIX)


class PersonalTokens:
    """``Authorization: Bearer wfp_...``: the token's SHA-256 names its record in
    Redis (``auth:pat:{hash}``, written by auth). The record's fields never
    change, so a process keeps it after the first look-up; whether the token is
    still live (not revoked) is read on every request, in the request's one
    Redis script (``gateway_svc.checks``), like a JWT's blacklist."""

    def __init__(self, redis_client):
        self.redis = redis_client
        self._known = TLRUCache(VERIFIED_TOKENS_MAX, timer=time.time,
                                ttu=lambda _hash, record, _now: record["expires_at"])
        self._reported: dict[str, float] = {}

    def resolve(self, token: str) -> dict:
        """Claims-like fields of a well-formed, unexpired token (revocation is
        checked by the caller through ``claims["pat_key"]``)."""
        if not _PAT.match(token):
            raise Unauthorized("The personal access token is malformed.")
        token_hash = hashlib.sha256(token.encode()).hexdigest()
        record = self._known.get(token_hash)
        if record is None:
            try:
                raw = self.redis.get(f"{PAT_RECORD_PREFIX}{token_hash}")
            except redis.RedisError as exc:
                log.warning("token records unreachable, refusing: %s", exc)
                raise Unavailable("Cannot check the token right now; try again shortly.") from None
            if raw is None or raw == PAT_REVOKED:
                raise Unauthorized(UNKNOWN_PAT)
            record = json.loads(raw)
            if record["expires_at"] <= time.time():
                raise Unauthorized(UNKNOWN_PAT)
            self._known[token_hash] = record
        return {"sub": record["user_id"], "pat": record["token_id"], "scope": record["scope"],
                "org_id": record.get("org_id"), "exp": record["expires_at"],
                "pat_key": f"{PAT_RECORD_PREFIX}{token_hash}"}

    def note_use(self, token_id: str) -> None:
        """Tell auth the token was used, at most once a minute per process."""
        now = time.monotonic()
        if now - self._reported.get(token_id, -PAT_USED_EVERY) < PAT_USED_EVERY:
            return
        if len(self._reported) > VERIFIED_TOKENS_MAX:
            self._reported.clear()
        self._reported[token_id] = now
        try:
            self.redis.set(f"{PAT_USED_PREFIX}{token_id}", int(time.time()), ex=PAT_USED_TTL)
        except redis.RedisError as exc:  # only "last used" is late
            log.warning("could not note an access token's use: %s", exc)
