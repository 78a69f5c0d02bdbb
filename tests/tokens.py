"""Real access tokens for tests.

``make_config()`` puts two deterministic Ed25519 keys (fixed seeds) into
``config["auth"]``: the auth service signs with the first, and the gateway
knows both public keys from ``auth.JWKS`` without needing auth or Redis, so
parallel test sessions never disagree about keys.

    from tests.tokens import auth_headers
    requests.get(url, headers=auth_headers(config, user_id))
"""
from __future__ import annotations

import json

from auth_svc.keys import jwks, key_from_seed, parse_pems
from auth_svc.tokens import mint_access_token

TEST_KEYS = [key_from_seed(b"workforce-test-signing-key-1"),
             key_from_seed(b"workforce-test-signing-key-2")]


def auth_settings(**overrides) -> dict:
    """The ``auth`` config section for tests (fast bcrypt, short windows)."""
    settings = {
        "JWT_PRIVATE_KEYS": "\n".join(key.pem() for key in TEST_KEYS),
        "JWKS": json.dumps(jwks(TEST_KEYS)),
        "ACCESS_TOKEN_TTL": 900,
        "BCRYPT_ROUNDS": 4,  # tests only; config.yaml's default is 12
    }
    settings.update(overrides)
    return settings


def mint(config: dict, user_id: str, *, session_id: str | None = None,
         email_verified: bool = True, ttl: int = 900, **kwargs) -> tuple[str, dict]:
    """(token, claims) signed with the config's current key."""
    settings = config.get("auth") or {}
    key = parse_pems(settings.get("JWT_PRIVATE_KEYS", ""))[0]
    return mint_access_token(key, user_id, session_id=session_id,
                             email_verified=email_verified, ttl=ttl, **kwargs)


def auth_headers(config: dict, user_id: str, **kwargs) -> dict:
    """{"Authorization": "Bearer <real access token for user_id>"}."""
    token, _ = mint(config, user_id, **kwargs)
    return {"Authorization": f"Bearer {token}"}
