"""Who is calling: access-token verification for ``@api(auth=True)`` routes.

Tokens are EdDSA JWTs signed by the auth service. The gateway verifies them
locally with auth's public keys (JWKS): the keys given in config
(``auth.JWKS``, optional) plus the JWKS auth writes to Redis
(``auth:jwks``), kept in process memory and re-read when a token names an
unknown ``kid`` (at most once per ``auth.JWKS_REFRESH_SECONDS``, so garbage
kids cannot hammer Redis). Then the revocation lists are checked, failing
closed: ``auth:blacklist:jti:{jti}`` (logout) and ``auth:blacklist:sid:{sid}``
(a revoked session / deleted user). A Redis error is a 503, never a free pass.
"""
from __future__ import annotations

import json
import logging
import threading
import time

import jwt
import redis

from shared.errors import Unauthorized, Unavailable

log = logging.getLogger(__name__)

ALGORITHMS = ["EdDSA"]  # never HS*/none: the algorithm is not the token's choice
JWKS_KEY = "auth:jwks"
DEFAULT_ISSUER = "workforce-auth"
DEFAULT_AUDIENCE = "workforce-api"
MAX_TOKEN_CHARS = 4096


def blacklist_jti_key(jti: str) -> str:
    return f"auth:blacklist:jti:{jti}"


def blacklist_sid_key(sid: str) -> str:
    return f"auth:blacklist:sid:{sid}"


def parse_jwks(value) -> dict:
    """{kid: public key} of a JWKS (dict or JSON text); bad entries are skipped."""
    if not value:
        return {}
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    keys = {}
    for entry in value.get("keys", []):
        try:
            jwk = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, KeyError) as exc:
            log.warning("skipping unusable JWK %s: %s", entry.get("kid"), exc)
            continue
        if jwk.key_id and jwk.algorithm_name in ALGORITHMS:
            keys[jwk.key_id] = jwk.key
    return keys


class Identity:
    def __init__(self, config: dict, redis_client):
        self.config = config
        self.redis = redis_client
        settings = config.get("auth") or {}
        self.issuer = settings.get("ISSUER") or DEFAULT_ISSUER
        self.audience = settings.get("AUDIENCE") or DEFAULT_AUDIENCE
        self.jwks_key = settings.get("JWKS_REDIS_KEY") or JWKS_KEY
        self.refresh_interval = float(settings.get("JWKS_REFRESH_SECONDS") or 1.0)
        self.static_keys = parse_jwks(settings.get("JWKS"))
        self.keys: dict = dict(self.static_keys)
        self._last_refresh = float("-inf")
        self._lock = threading.Lock()

    # -- keys ------------------------------------------------------------------
    def _refresh_keys(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_refresh < self.refresh_interval:
                return
            self._last_refresh = now
        try:
            raw = self.redis.get(self.jwks_key)
        except redis.RedisError as exc:
            raise Unavailable("Token keys are unavailable; try again shortly.") from exc
        try:
            learned = parse_jwks(raw)
        except (ValueError, AttributeError) as exc:
            log.error("unreadable JWKS in redis %s: %s", self.jwks_key, exc)
            learned = {}
        self.keys = {**learned, **self.static_keys}

    def _key_for(self, kid: str):
        key = self.keys.get(kid)
        if key is None:
            self._refresh_keys()
            key = self.keys.get(kid)
        if key is None:
            raise Unauthorized("The token was signed by an unknown key.")
        return key

    # -- tokens ----------------------------------------------------------------
    def verify_token(self, token: str) -> dict:
        """The verified, unrevoked claims of an access token, or Unauthorized (401);
        Unavailable (503) when revocation cannot be checked."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("A bearer token is required.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("The token is malformed.") from None
        kid = header.get("kid")
        if header.get("alg") not in ALGORITHMS or not isinstance(kid, str) or len(kid) > 100:
            raise Unauthorized("The token's algorithm or key id is not accepted.")
        key = self._key_for(kid)
        try:
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, audience=self.audience,
                                issuer=self.issuer, leeway=5,
                                options={"require": ["exp", "iat", "sub", "jti"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except jwt.PyJWTError:
            raise Unauthorized("The token is invalid.") from None
        if claims.get("typ") != "access" or not isinstance(claims.get("sub"), str) \
                or not isinstance(claims.get("jti"), str):
            raise Unauthorized("The token is not an access token.")
        self._check_not_revoked(claims)
        return claims

    def _check_not_revoked(self, claims: dict) -> None:
        keys = [blacklist_jti_key(claims["jti"])]
        if isinstance(claims.get("sid"), str):
            keys.append(blacklist_sid_key(claims["sid"]))
        try:
            revoked = self.redis.mget(keys)
        except redis.RedisError as exc:
            # fail closed: without the blacklist a logged-out token would pass
            raise Unavailable("Cannot check the token right now; try again shortly.") from exc
        if any(value is not None for value in revoked):
            raise Unauthorized("The token has been revoked.")

    def authenticate(self, request) -> dict:
        """The verified claims of the request's bearer token, or Unauthorized."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("A bearer token is required.",
                               headers={"WWW-Authenticate": 'Bearer realm="api"'})
        return self.verify_token(token.strip())
