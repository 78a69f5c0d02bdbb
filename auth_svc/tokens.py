"""Access tokens: minting (here) and the claims the gateway checks."""
from __future__ import annotations

import time
import uuid

import jwt

from auth_svc.keys import ALGORITHM, SigningKey

DEFAULT_ISSUER = "workforce-auth"
DEFAULT_AUDIENCE = "workforce-api"
DEFAULT_ACCESS_TTL = 900


def settings_of(config: dict) -> dict:
    return config.get("auth") or {}


def mint_access_token(key: SigningKey, user_id: str, *, session_id: str | None = None,
                      email_verified: bool = False, ttl: int = DEFAULT_ACCESS_TTL,
                      issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE,
                      now: float | None = None, jti: str | None = None) -> tuple[str, dict]:
    """(token, claims). Nothing secret goes in: the payload is only signed."""
    issued = int(now if now is not None else time.time())
    claims = {"iss": issuer, "aud": audience, "sub": user_id, "sid": session_id,
              "jti": jti or uuid.uuid4().hex, "iat": issued, "nbf": issued,
              "exp": issued + int(ttl), "email_verified": bool(email_verified),
              "typ": "access"}
    token = jwt.encode(claims, key.private, algorithm=ALGORITHM,
                       headers={"kid": key.kid, "typ": "JWT"})
    return token, claims
