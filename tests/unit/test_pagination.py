"""shared.pagination: the one cursor, its one error, the page and its schema."""
from datetime import datetime, timezone

import marshmallow
import pytest
from marshmallow import Schema, fields

from shared.errors import ValidationFailed
from shared.pagination import (
    PageArgsSchema,
    decode_cursor,
    decode_key,
    encode_cursor,
    page,
    page_schema,
    whole,
)


def test_id_cursors_round_trip_and_refuse_what_the_api_did_not_give_out():
    assert decode_cursor(encode_cursor("abc123")) == "abc123"
    assert decode_cursor(encode_cursor("t1-created")) == "t1-created"
    assert decode_cursor(None) is None and decode_cursor("") is None
    forged = ("%%%", "forged", "not-a-cursor", encode_cursor('a"b'), "x" * 301,
              encode_cursor(3, "t9"), encode_cursor(True), encode_cursor(""))
    for bad in forged:
        with pytest.raises(ValidationFailed) as caught:
            decode_cursor(bad)
        assert caught.value.errors == {"cursor": ["Not a valid cursor."]}


def test_sort_key_cursors_keep_datetimes_and_numbers():
    at = datetime(2026, 11, 25, 6, 0, 0, 123000, tzinfo=timezone.utc)
    assert decode_key(encode_cursor(at, "t9"), 2) == (at, "t9")
    assert decode_key(encode_cursor(3, "t9"), 2) == (3, "t9")
    assert decode_key(None, 2) is None
    for bad in (encode_cursor("t9"), encode_cursor(at, 3), encode_cursor([1], "t9")):
        with pytest.raises(ValidationFailed):
            decode_key(bad, 2)


def test_a_next_cursor_only_when_another_row_came_back():
    docs = [{"_id": "a"}, {"_id": "b"}, {"_id": "c"}]
    got = page(docs, 2, lambda d: d["_id"])
    assert got["items"] == ["a", "b"] and decode_cursor(got["next_cursor"]) == "b"
    # an exactly full last page (limit rows, no extra one) ends the list
    assert page(docs[:2], 2, lambda d: d["_id"]) == {"items": ["a", "b"], "next_cursor": None}
    assert page([], 2, dict) == {"items": [], "next_cursor": None}
    keyed = page([{"_id": "a", "n": 5}, {"_id": "b", "n": 4}], 1, dict,
                 key=lambda d: (d["n"], d["_id"]))
    assert decode_key(keyed["next_cursor"], 2) == (5, "a")
    assert whole(iter([1, 2])) == {"items": [1, 2], "next_cursor": None}


def test_page_args_and_the_page_schema_factory():
    assert PageArgsSchema().load({}) == {"limit": 50, "cursor": None}
    with pytest.raises(marshmallow.ValidationError):
        PageArgsSchema().load({"limit": "0"})

    class ThingSchema(Schema):
        name = fields.String()

    ThingPageSchema = page_schema("ThingPage", ThingSchema)
    assert ThingPageSchema.__name__ == "ThingPageSchema"
    assert ThingPageSchema().dump({"items": [{"name": "x", "other": 1}], "next_cursor": None}) == \
        {"items": [{"name": "x"}], "next_cursor": None}
