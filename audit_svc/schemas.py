"""Wire shapes of the audit service: the list filters (validated here), a
record as the API answers it, the CSV export's columns, and a chain check.
The gateway's OpenAPI document names these too."""
from __future__ import annotations

import json

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from audit_svc import domain
from shared import csvtext
from shared import examples as ex
from shared.pagination import PageArgsSchema, page_schema

RECORD_ID = "5a4f1e0c9b8d7e6f5a4b000000000042"
HASH = "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca7"
PREV_HASH = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
MAX_EXPORT_ROWS = 100_000  # one CSV export; narrow the filters for more
_ID = validate.Length(min=1, max=128)


class FilterSchema(Schema):
    """The filters of a list and of the CSV export, combined with AND."""

    actor = fields.String(load_default=None, validate=_ID,
                          metadata={"example": ex.USER_ID, "description": "the actor's user id"})
    object_type = fields.String(load_default=None, validate=validate.Length(min=1, max=64),
                                metadata={"example": "task",
                                          "description": "task, team, employee, invitation, "
                                                         "organization, user, job, notification, "
                                                         "webhook"})
    object_id = fields.String(load_default=None, validate=_ID, metadata={"example": ex.TASK_ID})
    event_type = fields.String(load_default=None, validate=validate.Length(min=1, max=64),
                               metadata={"example": "task.created"})
    since = fields.AwareDateTime(data_key="from", load_default=None,
                                 metadata={"example": ex.CREATED_AT,
                                           "description": "when the event happened, from "
                                                          "(inclusive; ISO 8601 with a zone)"})
    until = fields.AwareDateTime(data_key="to", load_default=None,
                                 metadata={"example": ex.UPDATED_AT,
                                           "description": "to (exclusive)"})

    @validates_schema
    def _range(self, data, **kwargs):
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ValidationError("Must be later than from.", "to")


class ListArgsSchema(FilterSchema, PageArgsSchema):
    """The filters, ``limit`` and ``cursor`` (shared.pagination)."""


class ObjectSchema(Schema):
    type = fields.String(allow_none=True, metadata={"example": "task"})
    id = fields.String(allow_none=True, metadata={"example": ex.TASK_ID})


class RecordSchema(Schema):
    record_id = fields.String(metadata={"example": RECORD_ID})
    seq = fields.Integer(metadata={"example": 42, "description": "place in the org's chain"})
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    event_id = fields.String(metadata={"example": "7f2c" * 8})
    event_type = fields.String(metadata={"example": "task.created"})
    producer = fields.String(allow_none=True, metadata={"example": "tasks"})
    at = fields.String(metadata={"example": ex.CREATED_AT, "description": "when it happened"})
    recorded_at = fields.String(metadata={"example": ex.CREATED_AT})
    actor_id = fields.String(allow_none=True, metadata={"example": ex.USER_ID,
                                                        "description": "who did it (user id)"})
    object = fields.Nested(ObjectSchema)
    correlation_id = fields.String(allow_none=True, metadata={
        "example": "b1946ac92492d2347c6235b4d2611184",
        "description": "the X-Request-ID of the request that caused it"})
    client_ip = fields.String(allow_none=True, metadata={"example": "203.0.113.7"})
    data = fields.Dict(metadata={"example": {"org_id": ex.ORG_ID, "task_id": ex.TASK_ID,
                                             "title": "Ship it"},
                                 "description": "the event's data (secrets masked)"})
    prev_hash = fields.String(metadata={"example": PREV_HASH})
    hash = fields.String(metadata={"example": HASH})


RecordPageSchema = page_schema("RecordPage", RecordSchema)


class BreakSchema(Schema):
    seq = fields.Integer()
    reason = fields.String(metadata={"description": "altered, missing, link or truncated"})
    detail = fields.String()
    record_id = fields.String(allow_none=True)
    event_id = fields.String(allow_none=True)


class VerifySchema(Schema):
    org_id = fields.String(allow_none=True)
    ok = fields.Boolean()
    checked = fields.Integer()
    first_seq = fields.Integer(allow_none=True)
    last_seq = fields.Integer(allow_none=True)
    head_hash = fields.String(allow_none=True)
    anchored = fields.Boolean(metadata={"description": "older records were swept by retention"})
    break_ = fields.Nested(BreakSchema, data_key="break", allow_none=True)


def dump_record(doc: dict) -> dict:
    return {"record_id": doc["_id"], "seq": doc["seq"], "org_id": doc["org_id"],
            "event_id": doc["event_id"], "event_type": doc["event_type"],
            "producer": doc.get("producer"), "at": domain.iso(doc["at"]),
            "recorded_at": domain.iso(doc["recorded_at"]), "actor_id": doc.get("actor_id"),
            "object": {"type": doc.get("object_type"), "id": doc.get("object_id")},
            "correlation_id": doc.get("correlation_id"), "client_ip": doc.get("client_ip"),
            "data": json.loads(doc.get("data") or "{}"), "prev_hash": doc["prev_hash"],
            "hash": doc["hash"]}


def dump_verify(org_id: str | None, result: dict, chain: dict | None) -> dict:
    return {"org_id": org_id, **result, "anchored": bool((chain or {}).get("anchor_seq"))}


# --- the CSV export --------------------------------------------------------------
CSV_COLUMNS = ("seq", "at", "event_type", "actor_id", "object_type", "object_id", "correlation_id",
               "client_ip", "producer", "event_id", "record_id", "data", "prev_hash", "hash")


def _csv_value(item: dict, column: str) -> object:
    if column in ("object_type", "object_id"):
        return item["object"][column.split("_", 1)[1]]
    if column == "data":
        return json.dumps(item["data"], sort_keys=True, separators=(",", ":"))
    return item.get(column)


def csv_text(items: list[dict], header: bool = False) -> str:
    """Rows (answers of ``dump_record``) as CSV text, with the header line if asked
    (cells a spreadsheet would run as formulas are quoted: ``shared.csvtext``)."""
    return csvtext.csv_text(([_csv_value(item, column) for column in CSV_COLUMNS] for item in items),
                            header=CSV_COLUMNS if header else None)
