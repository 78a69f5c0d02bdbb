"""Wire shapes of the webhooks service: what comes in (validated here), what
goes out (the gateway's OpenAPI document names these too)."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from shared import examples as ex
from shared.pagination import page_schema

WEBHOOK_ID = "6564a1f0c2b1a3d4e5f60718"
DELIVERY_ID = "6564a1f0c2b1a3d4e5f60799"
EVENT_TYPES_EXAMPLE = ["task.created", "task.status.changed"]


def _event_types(**kw):
    return fields.List(fields.String(validate=validate.Length(min=1, max=64)),
                       validate=validate.Length(min=1, max=50),
                       metadata={"example": EVENT_TYPES_EXAMPLE,
                                 "description": "event names of docs/events.md, or [\"*\"] for all"},
                       **kw)


class WebhookCreateSchema(Schema):
    url = fields.String(required=True, validate=validate.Length(min=9, max=2000),
                        metadata={"example": "https://hooks.example.com/workforce",
                                  "description": "https, on a public address"})
    event_types = _event_types(required=True)
    description = fields.String(load_default="", validate=validate.Length(max=500),
                                metadata={"example": "Our CRM sync"})


class WebhookUpdateSchema(Schema):
    url = fields.String(validate=validate.Length(min=9, max=2000),
                        metadata={"example": "https://hooks.example.com/workforce/v2"})
    event_types = _event_types()
    description = fields.String(validate=validate.Length(max=500), metadata={"example": "CRM sync"})
    enabled = fields.Boolean(metadata={"example": True,
                                       "description": "true re-enables a disabled endpoint"})




class WebhookSchema(Schema):
    webhook_id = fields.String(metadata={"example": WEBHOOK_ID})
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    url = fields.String(metadata={"example": "https://hooks.example.com/workforce"})
    event_types = fields.List(fields.String(), metadata={"example": EVENT_TYPES_EXAMPLE})
    description = fields.String(metadata={"example": "Our CRM sync"})
    enabled = fields.Boolean(metadata={"example": True})
    disabled_reason = fields.String(allow_none=True, metadata={"example": None})
    consecutive_failures = fields.Integer(metadata={"example": 0})
    created_at = fields.String(metadata={"example": ex.CREATED_AT})


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(metadata={"example": "whsec_3q2-Xx8u0mM8yC8sWf1Xr2v6lQ",
                                     "description": "shown once: sign-check deliveries with it"})


class SecretSchema(Schema):
    secret = fields.String(metadata={"example": "whsec_3q2-Xx8u0mM8yC8sWf1Xr2v6lQ"})


WebhookPageSchema = page_schema("WebhookPage", WebhookSchema)


class AttemptSchema(Schema):
    at = fields.String(metadata={"example": ex.CREATED_AT})
    status_code = fields.Integer(allow_none=True, metadata={"example": 500})
    latency_ms = fields.Float(metadata={"example": 84.2})
    response = fields.String(metadata={"example": "upstream unavailable",
                                       "description": "the first 500 characters of the answer"})
    error = fields.String(allow_none=True, metadata={"example": None})


class DeliverySchema(Schema):
    delivery_id = fields.String(metadata={"example": DELIVERY_ID})
    webhook_id = fields.String(metadata={"example": WEBHOOK_ID})
    event_id = fields.String(metadata={"example": "7f2c" * 8})
    event_type = fields.String(metadata={"example": "task.created"})
    state = fields.String(metadata={"example": "retrying",
                                    "description": "pending, sending, retrying, succeeded, failed"})
    attempts = fields.Integer(metadata={"example": 1})
    next_attempt_at = fields.String(allow_none=True, metadata={"example": ex.CREATED_AT})
    last = fields.Nested(AttemptSchema, allow_none=True)
    log = fields.List(fields.Nested(AttemptSchema))
    created_at = fields.String(metadata={"example": ex.CREATED_AT})


DeliveryPageSchema = page_schema("DeliveryPage", DeliverySchema)


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


def dump_webhook(doc: dict, secret: bool = False) -> dict:
    out = {"webhook_id": doc["_id"], "org_id": doc["org_id"], "url": doc["url"],
           "event_types": doc["event_types"], "description": doc["description"],
           "enabled": doc["enabled"], "disabled_reason": doc.get("disabled_reason"),
           "consecutive_failures": doc.get("consecutive_failures", 0),
           "created_at": _iso(doc["created_at"])}
    if secret:
        out["secret"] = doc["secret"]
    return out


def _attempt(attempt: dict | None) -> dict | None:
    return None if attempt is None else {**attempt, "at": _iso(attempt["at"])}


def dump_delivery(doc: dict) -> dict:
    return {"delivery_id": doc["_id"], "webhook_id": doc["endpoint_id"],
            "event_id": doc["event_id"], "event_type": doc["event_type"], "state": doc["state"],
            "attempts": doc.get("attempts", 0),
            "next_attempt_at": _iso(doc["next_attempt_at"]) if doc["state"] in
            ("pending", "retrying") else None,
            "last": _attempt(doc.get("last")), "log": [_attempt(a) for a in doc.get("log", [])],
            "created_at": _iso(doc["created_at"])}
