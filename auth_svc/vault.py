"""Server keys for 2FA data at rest: TOTP secrets are encrypted (Fernet:
AES-128-CBC + HMAC-SHA256, from ``cryptography``) and recovery codes are
kept as a keyed hash (HMAC-SHA256), so a copy of the database alone gives
neither a working authenticator nor a code to guess offline.

Where the keys come from, first match wins:

* ``AUTH_DATA_KEYS`` (config, else the environment): Fernet keys separated by
  commas or new lines; the first encrypts and hashes, all decrypt and verify
  (rotation: put the new key first, keep the old ones);
* ``{JWT_KEYS_DIR}/data.keys`` (default ``var/keys``): the same, one per line;
  generated with one key when missing (local runs only; ``shared.sealed.local_key``).

Generate one: ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.sealed import local_key

KEYS_FILE = "data.keys"


class Vault:
    def __init__(self, keys: list[bytes]):
        if not keys:
            raise ValueError("no data keys")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        # one HMAC key per data key, derived so the two uses never share a key
        self._hash_keys = [hmac.new(key, b"workforce recovery codes", hashlib.sha256).digest()
                           for key in keys]

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("a stored secret does not decrypt with any data key") from None

    def code_hash(self, code: str) -> str:
        """What is stored of a recovery code (keyed with the first key)."""
        return hmac.new(self._hash_keys[0], code.encode(), hashlib.sha256).hexdigest()

    def code_hashes(self, code: str) -> list[str]:
        """What a stored code may be: its hash under every key, and the plain
        SHA-256 that codes issued before the keyed hash were stored as."""
        return [*(hmac.new(key, code.encode(), hashlib.sha256).hexdigest()
                  for key in self._hash_keys), hashlib.sha256(code.encode()).hexdigest()]


def _parse(text: str) -> list[bytes]:
    return [part.encode() for part in re.split(r"[\s,]+", text) if part]


def load_vault(config: dict) -> Vault:
    text = config.get("AUTH_DATA_KEYS") or os.environ.get("AUTH_DATA_KEYS") or ""
    if text.strip():
        return Vault(_parse(text))
    return Vault(_parse(local_key(Path(config.get("JWT_KEYS_DIR") or "var/keys"), KEYS_FILE)))
