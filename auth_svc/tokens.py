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
DEFAULT_ACCESS_TTL = 900


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


def new_secret() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What is stored of a secret: its SHA-256 (the secret has 256 bits of
    entropy, so a fast hash is enough; a leaked database reveals no token)."""
    return hashlib.sha256(secret.encode()).hexdigest()
