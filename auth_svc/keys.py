"""Signing keys of the access tokens (Ed25519, JWT ``alg: EdDSA``).

Where the keys come from, first match wins:

* ``JWT_PRIVATE_KEYS`` (config, else the environment): one or more PEM
  private keys concatenated; the first signs, the others stay valid for
  verification (rotation: put the new key first, keep the old one until the
  longest access token signed with it has expired);
* ``JWT_KEYS_DIR`` (default ``var/keys``): every ``*.pem`` in it in name
  order (the first signs); when empty, two keys are generated there (local runs only).

A key's ``kid`` is its RFC 7638 thumbprint, so the same key has the same id in
every process and two different keys can never share one. The public half is
published as a JWKS: ``GET /auth/jwks.json``, the ``jwks`` RPC, and the Redis
keys ``auth:jwks:kid:{kid}`` (the JWK) that the gateway reads.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.redis import clustered

ALGORITHM = "EdDSA"
JWKS_KEY_PREFIX = "auth:jwks:kid:"   # + kid -> the public JWK (JSON), no TTL


def jwk_redis_key(kid: str) -> str:
    return f"{JWKS_KEY_PREFIX}{kid}"
_PEM_BLOCK = re.compile(r"-----BEGIN PRIVATE KEY-----.+?-----END PRIVATE KEY-----", re.S)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(public_key: Ed25519PublicKey) -> dict:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}


def thumbprint(jwk: dict) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, no whitespace."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x")}, separators=(",", ":"),
                           sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey

    @classmethod
    def from_private(cls, private_key: Ed25519PrivateKey) -> "SigningKey":
        return cls(thumbprint(public_jwk(private_key.public_key())), private_key)

    def jwk(self) -> dict:
        return {**public_jwk(self.private_key.public_key()), "kid": self.kid,
                "alg": ALGORITHM, "use": "sig"}

    def pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()


class KeyRing:
    """The active keys: ``signing`` signs, every key verifies."""

    def __init__(self, keys: list[SigningKey]):
        if not keys:
            raise ValueError("no signing keys")
        seen: dict[str, SigningKey] = {}
        for key in keys:
            seen.setdefault(key.kid, key)
        self.keys = list(seen.values())
        self.signing = self.keys[0]

    def jwks(self) -> dict:
        return {"keys": [key.jwk() for key in self.keys]}


def parse_pem_keys(text: str) -> list[SigningKey]:
    keys = []
    for block in _PEM_BLOCK.findall(text):
        private = serialization.load_pem_private_key(block.encode(), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError("JWT keys must be Ed25519 private keys")
        keys.append(SigningKey.from_private(private))
    return keys


def generate_keys(directory: Path, count: int = 2) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for index in range(count):
        key = SigningKey.from_private(Ed25519PrivateKey.generate())
        path = directory / f"{index:02d}-{key.kid[:16]}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key.pem())


def load_keyring(config: dict) -> KeyRing:
    text = config.get("JWT_PRIVATE_KEYS") or os.environ.get("JWT_PRIVATE_KEYS") or ""
    if text.strip():
        return KeyRing(parse_pem_keys(text.replace("\\n", "\n")))
    directory = Path(config.get("JWT_KEYS_DIR") or "var/keys")
    if not any(directory.glob("*.pem")):
        generate_keys(directory)
    files = sorted(directory.glob("*.pem"))
    return KeyRing([key for path in files for key in parse_pem_keys(path.read_text())])


def publish_jwks(redis_client, ring: KeyRing) -> None:
    """Write our public keys to Redis, one key per kid (``auth:jwks:kid:{kid}``).
    Kids are thumbprints, so processes with other keys never overwrite ours."""
    keys = {jwk_redis_key(k.kid): json.dumps(k.jwk()) for k in ring.keys}
    if clustered(redis_client):  # the kids' keys are in several hash slots
        redis_client.mset_nonatomic(keys)
    else:
        redis_client.mset(keys)
