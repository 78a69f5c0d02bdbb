"""Access tokens (JWT, EdDSA) and the opaque secrets of sessions, resets and
verifications. No I/O: the service stores what these return."""
from __future__ import annotations

import hashlib
import secrets
import time
import uuid

import jwt

from auth_svc.keys import ALGORITHM, KeyRing

ISSUER = "workforce-auth"
AUDIENCE = "workforce-api"
DEVICE_AUDIENCE = "workforce-auth-device"   # never accepted by the API (other audience)
DEFAULT_ACCESS_TTL = 900
DEFAULT_DEVICE_TTL = 180 * 24 * 3600


def mint_access_token(ring: KeyRing, user_id: str, *, session_id: str,
                      email_verified: bool, ttl: int = DEFAULT_ACCESS_TTL,
                      now: float | None = None) -> tuple[str, dict]:
    """A signed access token and its claims. Nothing secret goes in it."""
    issued = int(now if now is not None else time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": user_id, "sid": session_id,
              "jti": uuid.uuid4().hex, "iat": issued, "exp": issued + int(ttl),
              "email_verified": bool(email_verified)}
    token = jwt.encode(claims, ring.signing.private_key, algorithm=ALGORITHM,
                       headers={"kid": ring.signing.kid, "typ": "at+jwt"})
    return token, claims


def mint_device_token(ring: KeyRing, user_id: str, ttl: int = DEFAULT_DEVICE_TTL,
                      now: float | None = None) -> str:
    """A "known device" token: proof that the client holding it signed in to
    ``user_id`` before. It only lets that client past the account lockout
    (auth_svc.throttle); it is no credential by itself."""
    issued = int(now if now is not None else time.time())
    claims = {"iss": ISSUER, "aud": DEVICE_AUDIENCE, "sub": user_id, "jti": uuid.uuid4().hex,
              "iat": issued, "exp": issued + int(ttl)}
    return jwt.encode(claims, ring.signing.private_key, algorithm=ALGORITHM,
                      headers={"kid": ring.signing.kid, "typ": "device+jwt"})


def read_device_token(ring: KeyRing, token: str | None, user_id: str) -> str | None:
    """The device id (``jti``) of a valid device token of ``user_id``, else None."""
    if not token or not isinstance(token, str) or len(token) > 2048:
        return None
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = next((k for k in ring.keys if k.kid == kid), None)
        if key is None:
            return None
        claims = jwt.decode(token, key.private_key.public_key(), algorithms=[ALGORITHM],
                            audience=DEVICE_AUDIENCE, issuer=ISSUER,
                            options={"require": ["exp", "sub", "jti"]})
    except jwt.PyJWTError:
        return None
    return claims["jti"] if claims["sub"] == user_id else None


def new_secret() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What is stored of a secret: its SHA-256 (the secret has 256 bits of
    entropy, so a fast hash is enough; a leaked database reveals no token)."""
    return hashlib.sha256(secret.encode()).hexdigest()
