"""Real access tokens for tests: signed with the deterministic test keys that
``make_config`` puts in ``JWT_PRIVATE_KEYS``, so a gateway (and an auth
service) started with that config accepts them.

    from tests.tokens import auth_headers
    requests.get(url, headers=auth_headers(config, user_id))

The keys come from fixed seeds, so every parallel test session has the same
ones (and the same kids) and none can confuse another through the shared
Redis keys ``auth:jwks:kid:{kid}``.
"""
from __future__ import annotations

import base64
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_svc.keys import KeyRing, SigningKey, load_keyring, publish_jwks
from auth_svc.tokens import mint_access_token
from shared.redis import make_client
from shared.sealed import unseal

TEST_SEEDS = (b"workforce-test-key-one-32-bytes!", b"workforce-test-key-two-32-bytes!")
TEST_KEYS = [SigningKey.from_private(Ed25519PrivateKey.from_private_bytes(seed))
             for seed in TEST_SEEDS]
TEST_PRIVATE_KEYS_PEM = "".join(key.pem() for key in TEST_KEYS)
# fixed keys of 2FA data at rest (auth_svc.vault): Fernet keys, the first in use
TEST_DATA_KEYS = "x3kV1pQ0uJ1o3C4r1m0Yc0R8w7cVw7kq4hZ3bR2l1aE=,Zm9yLXRlc3RzLW9ubHktb2xkLWRhdGEta2V5LTAwMDA="
# the Fernet key tests seal links with (shared.sealed): tests.tokens.unseal_link
TEST_SEALING_KEY = base64.urlsafe_b64encode(b"workforce-test-sealing-32-bytes!").decode()

_published: set[str] = set()


def keyring(config: dict) -> KeyRing:
    return load_keyring(config)


def publish_test_jwks(config: dict) -> None:
    """What auth does at start: put the public keys where the gateway looks."""
    ring = keyring(config)
    marker = f"{config['REDIS_URI']}|{ring.signing.kid}"
    if marker in _published:
        return
    client = make_client(config)
    try:
        publish_jwks(client, ring)
    finally:
        client.close()
    _published.add(marker)


def access_token(config: dict, user_id: str, *, email_verified: bool = True,
                 ttl: int = 900, session_id: str | None = None) -> tuple[str, dict]:
    publish_test_jwks(config)
    return mint_access_token(keyring(config), user_id, session_id=session_id or uuid.uuid4().hex,
                             email_verified=email_verified, ttl=ttl)


def auth_headers(config: dict, user_id: str, **kwargs) -> dict:
    token, _ = access_token(config, user_id, **kwargs)
    return {"Authorization": f"Bearer {token}"}


def unseal_link(config: dict, data: dict) -> str:
    """The link an event's ``sealed_link`` holds (what the email will show)."""
    return unseal(config, data["sealed_link"])


def token_of(config: dict, data: dict) -> str:
    """The reset/verification/invitation token inside an event's sealed link."""
    link = unseal_link(config, data)
    return link.split("token=")[-1] if "token=" in link else link.split("/")[-2]
