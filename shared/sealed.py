"""Secrets sealed for the mail they travel to.

A reset, verification or invitation link is a bearer secret: whoever reads it
owns the account or the seat. Producers (auth, employees) put only a *sealed*
link in their events, so the outbox, the broker's queues and dead letters, the
notifications service's ``deliveries`` and anything that logs an envelope hold
an opaque value; notifications unseals it only to render the email.

Sealing is Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``); the
plain text carries the secret's own expiry, so a sealed value is useless after
the token it holds has expired even to someone with the key.

Keys, first match wins:

* ``SEALING_KEYS`` (config, else the environment): Fernet keys separated by
  commas; the first seals, every one unseals (rotation: put the new key first,
  keep the old one for the longest secret's lifetime, 7 days for invitations);
* ``sealing.key`` in ``JWT_KEYS_DIR`` (default ``var/keys``), generated on
  first use for local runs (every service of one checkout shares it).
"""
from __future__ import annotations

import json
import os
import time
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_FILE = "sealing.key"


class Unsealable(ValueError):
    """Not sealed with any of our keys, tampered with, or expired."""


def seal(config: dict, secret: str, ttl_seconds: float) -> str:
    plain = json.dumps({"v": secret, "exp": int(time.time() + ttl_seconds)})
    return _keys(*_source(config)).encrypt(plain.encode()).decode()


def unseal(config: dict, sealed: str) -> str:
    try:
        plain = json.loads(_keys(*_source(config)).decrypt(str(sealed).encode()))
    except (InvalidToken, ValueError, TypeError):
        raise Unsealable("not a value sealed with our keys") from None
    if not isinstance(plain, dict) or plain.get("exp", 0) < time.time():
        raise Unsealable("the sealed secret has expired")
    return plain["v"]


def _source(config: dict) -> tuple[str, str]:
    text = str(config.get("SEALING_KEYS") or os.environ.get("SEALING_KEYS") or "")
    return text, str(config.get("JWT_KEYS_DIR") or "var/keys")


@lru_cache(maxsize=8)
def _keys(text: str, directory: str) -> MultiFernet:
    if not text.strip():
        text = local_key(Path(directory))
    return MultiFernet([Fernet(key.strip()) for key in text.split(",") if key.strip()])


def local_key(directory: Path, name: str = KEY_FILE) -> str:
    """The checkout's Fernet key in ``directory/name``, created once even when
    services start together (local runs; also auth_svc.vault's data key)."""
    path = directory / name
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        draft = directory / f".{name}.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
        try:
            os.link(draft, path)  # atomic: the first process's key wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text()
