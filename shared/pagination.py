"""The one way to page a list (api.md ``{items, next_cursor}``).

- A store fetches ``limit + 1`` rows past the cursor's key; ``page`` keeps
  ``limit`` and hands out a next cursor only when that extra row came back,
  so an exactly full last page ends the list.
- The cursor is opaque: base64url of a small JSON list, the sort key of the
  last row given out (``[id]`` for lists in id order, ``[value, id]`` for
  sorted ones; datetimes survive the round trip). Clients never build one.
- Any cursor this API did not give out is one error: ``ValidationFailed``
  (422) naming the ``cursor`` field.
- ``PageArgsSchema`` is the ``limit``/``cursor`` input and ``page_schema``
  builds the ``{items, next_cursor}`` output schema of an item schema."""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from marshmallow import Schema, fields, validate

from shared import examples as ex
from shared.errors import ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
CURSOR_MAX = 300  # characters: a datetime and an id, encoded, with room
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,96}")


def _bad() -> ValidationFailed:
    return ValidationFailed("Bad cursor.", errors={"cursor": ["Not a valid cursor."]})


def encode_cursor(*key: str | int | datetime) -> str:
    """The opaque cursor of a sort key: the last row's id, or its (value, id)."""
    parts = [{"$dt": k.astimezone(timezone.utc).isoformat()} if isinstance(k, datetime) else k
             for k in key]
    raw = json.dumps(parts, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_key(cursor: str | None, size: int = 1) -> tuple | None:
    """The sort key of ``size`` parts (the last one an id) a cursor was made of;
    None for no cursor; ValidationFailed (422) for one this API did not give out."""
    if not cursor:
        return None
    if len(cursor) > CURSOR_MAX:
        raise _bad()
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        key = tuple(datetime.fromisoformat(p["$dt"]) if isinstance(p, dict) else p
                    for p in parts)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, KeyError):
        raise _bad() from None
    if len(key) != size or not isinstance(key[-1], str) or not _ID.fullmatch(key[-1]) or \
            not all(isinstance(v, (str, int, datetime)) and not isinstance(v, bool)
                    for v in key[:-1]):
        raise _bad()
    return key


def decode_cursor(cursor: str | None) -> str | None:
    """The last id of a list in id order (None for the first page)."""
    key = decode_key(cursor)
    return key[0] if key else None


def page(docs: Sequence[dict], limit: int, shape: Callable[[dict], Any],
         key: Callable[[dict], tuple] = lambda d: (d["_id"],)) -> dict:
    """``docs`` fetched with ``limit + 1``: the page's items (each ``shape(doc)``)
    and the cursor of the last one, given only when another row came back."""
    more = len(docs) > limit
    docs = docs[:limit]
    return {"items": [shape(d) for d in docs],
            "next_cursor": encode_cursor(*key(docs[-1])) if more and docs else None}


def whole(items: Iterable) -> dict:
    """A list small enough to be answered whole, in the page shape."""
    return {"items": list(items), "next_cursor": None}


class PageArgsSchema(Schema):
    """``limit`` and ``cursor``: subclass to add a list's filters."""
    limit = fields.Integer(load_default=DEFAULT_LIMIT,
                           validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(load_default=None, validate=validate.Length(max=CURSOR_MAX))


def page_schema(name: str, item: type[Schema]) -> type[Schema]:
    """The ``{items, next_cursor}`` schema of ``item``, as class ``<name>Schema``
    (so OpenAPI names its component ``<name>``)."""
    return type(f"{name}Schema", (Schema,), {
        "items": fields.List(fields.Nested(item)),
        "next_cursor": fields.String(allow_none=True, metadata=ex.next_cursor_meta()),
        "__module__": item.__module__, "__qualname__": f"{name}Schema"})
