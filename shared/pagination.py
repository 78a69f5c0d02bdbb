"""Opaque cursors for ``{items, next_cursor}`` lists (api.md): the cursor is
the last ``_id`` seen, base64-encoded so clients do not build their own."""
from __future__ import annotations

import base64
import binascii

from shared.errors import ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed("Bad cursor.", errors={"cursor": ["Not a valid cursor."]}) from None
    if not text.isalnum() or len(text) > 64:
        raise ValidationFailed("Bad cursor.", errors={"cursor": ["Not a valid cursor."]})
    return text


def page(docs: list[dict], limit: int, shape) -> dict:
    """``docs`` fetched with ``limit + 1``: the items and the next cursor."""
    more = len(docs) > limit
    docs = docs[:limit]
    return {"items": [shape(d) for d in docs],
            "next_cursor": encode_cursor(docs[-1]["_id"]) if more and docs else None}
