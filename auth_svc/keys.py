"""Signing keys for access tokens (EdDSA / Ed25519).

Keys come from ``auth.JWT_PRIVATE_KEYS`` (one or more PEM blocks, from the
environment); the first signs, every key verifies, so a key can be rotated by
prepending a new one and dropping the old one after the access-token TTL.
When none are given (local runs), two keys are generated into
``auth.JWT_KEYS_DIR`` (default ``./var/keys``) and reused on the next start.
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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ALGORITHM = "EdDSA"
_PEM_BLOCK = re.compile(r"-----BEGIN PRIVATE KEY-----.+?-----END PRIVATE KEY-----", re.S)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @property
    def x(self) -> str:
        raw = self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                     serialization.PublicFormat.Raw)
        return _b64(raw)

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint: the same key always has the same kid."""
        canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": self.x},
                               separators=(",", ":"), sort_keys=True)
        return _b64(hashlib.sha256(canonical.encode()).digest())[:16]

    def jwk(self) -> dict:
        return {"kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid,
                "alg": ALGORITHM, "use": "sig"}

    def pem(self) -> str:
        return self.private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode()


def parse_pems(text: str) -> list[SigningKey]:
    keys = []
    for block in _PEM_BLOCK.findall(text or ""):
        key = serialization.load_pem_private_key(block.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("JWT_PRIVATE_KEYS must hold Ed25519 keys")
        keys.append(SigningKey(key))
    return keys


def key_from_seed(seed: bytes) -> SigningKey:
    return SigningKey(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))


def _generated(directory: Path, count: int = 2) -> list[SigningKey]:
    directory.mkdir(parents=True, exist_ok=True)
    keys = []
    for index in range(count):
        path = directory / f"jwt-{index}.pem"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(SigningKey(Ed25519PrivateKey.generate()).pem())
        keys.extend(parse_pems(path.read_text()))
    return keys


def load_keys(settings: dict) -> list[SigningKey]:
    """The signing keys, the current one first."""
    text = settings.get("JWT_PRIVATE_KEYS") or ""
    path = settings.get("JWT_PRIVATE_KEYS_FILE") or ""
    if not text and path:
        text = Path(path).read_text()
    keys = parse_pems(text)
    if not keys:
        keys = _generated(Path(settings.get("JWT_KEYS_DIR") or "./var/keys"))
    return keys


def jwks(keys: list[SigningKey]) -> dict:
    return {"keys": [key.jwk() for key in keys]}
