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
    keys = [f"auth:blacklist:jti:{claims['jti']}"]
    if claims.get("sid"):
        keys.append(f"auth:blacklist:sid:{claims['sid']}")
    return keys


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
        self._verified = TLRUCache(VERIFIED_TOKENS_MAX, timer=time.time,
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
        try:
            return bool(self.redis.exists(*blacklist_keys(claims)))
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
