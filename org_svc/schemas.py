"""Wire shapes of the organizations service (marshmallow). Unknown keys are
refused (marshmallow's RAISE), so a typo in a setting is a 422, not a no-op."""
from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import Schema, ValidationError, fields, validate

from org_svc.domain import merge_settings
from shared import examples as ex
from shared.pagination import page_schema

PLANS = ("free", "pro", "enterprise")
PRIORITIES = ("low", "medium", "high", "urgent")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ID = validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$", error="Not a valid id.")


def _timezone(value: str) -> None:
    try:
        if len(value) > 64:
            raise ValueError
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("Not a known IANA time zone.") from None


def _unique(values: list) -> None:
    if len(set(values)) != len(values):
        raise ValidationError("Each day once.")


class NotificationDefaultsSchema(Schema):
    email = fields.Boolean(metadata={"example": True})
    in_app = fields.Boolean(metadata={"example": True})
    push = fields.Boolean(metadata={"example": False})
    digest = fields.String(validate=validate.OneOf(("off", "daily", "weekly")),
                           metadata={"example": "daily"})


class SettingsSchema(Schema):
    """An organization's settings; PATCH sends any subset."""
    timezone = fields.String(validate=_timezone, metadata={"example": "Europe/London"})
    default_task_priority = fields.String(validate=validate.OneOf(PRIORITIES),
                                          metadata={"example": "medium"})
    working_days = fields.List(fields.String(validate=validate.OneOf(DAYS)),
                               validate=[validate.Length(max=7), _unique],
                               metadata={"example": ["mon", "tue", "wed", "thu", "fri"]})
    week_start = fields.String(validate=validate.OneOf(DAYS), metadata={"example": "mon"})
    locale = fields.String(validate=validate.Regexp(r"^[a-z]{2}(-[A-Z]{2})?$"),
                           metadata={"example": "en-GB"})
    notification_defaults = fields.Nested(NotificationDefaultsSchema)


ORG_NAME = "Acme Robotics"


class OrgCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100),
                         metadata={"example": ORG_NAME})
    settings = fields.Nested(SettingsSchema)


class OrgUpdateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100),
                         metadata={"example": "Acme Robotics Ltd"})


class TransferSchema(Schema):
    user_id = fields.String(required=True, validate=ID, metadata={
        "example": ex.OTHER_USER_ID, "description": "the new owner; an active employee"})


class SubscriptionUpdateSchema(Schema):
    plan = fields.String(required=True, validate=validate.OneOf(PLANS), metadata={"example": "pro"})


class LimitsSchema(Schema):
    """Employees (pending invitations included) and teams: a plan's limits
    (null: no limit), or the org's counts."""
    employees = fields.Integer(allow_none=True, metadata={"example": 12})
    teams = fields.Integer(allow_none=True, metadata={"example": 3})


class SubscriptionSchema(Schema):
    class Meta:
        # limits and usage share a schema: the example tells them apart
        example = {"plan": "pro", "limits": {"employees": 250, "teams": 50},
                   "usage": {"employees": 12, "teams": 3}}

    plan = fields.String(metadata={"enum": list(PLANS), "example": "pro"})
    limits = fields.Nested(LimitsSchema)
    usage = fields.Nested(LimitsSchema)


class OrgSchema(Schema):
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    name = fields.String(metadata={"example": ORG_NAME})
    owner_user_id = fields.String(metadata={"example": ex.USER_ID})
    personal = fields.Boolean(metadata={"example": False})
    settings = fields.Nested(SettingsSchema)
    subscription = fields.Nested(SubscriptionSchema)
    counts = fields.Nested(LimitsSchema)
    created_at = fields.String(metadata={"example": ex.CREATED_AT})
    version = fields.Integer(metadata={"description": "bumped by every change (settings and "
                                                      "counts included); the ETag derives "
                                                      "from it", "example": 3})


OrgPageSchema = page_schema("OrgPage", OrgSchema)


def dump_org(doc: dict, limits: dict) -> dict:
    """A stored org as OrgSchema shows it; ``limits``: those of its plan."""
    return {"org_id": doc["_id"], "name": doc["name"], "owner_user_id": doc["owner_user_id"],
            "personal": bool(doc.get("personal")),
            "settings": merge_settings(doc.get("settings"), {}),
            "subscription": {"plan": doc.get("plan", "free"), "limits": limits},
            "counts": {"employees": doc.get("employee_count", 0),
                       "teams": doc.get("team_count", 0)},
            "created_at": doc["created_at"].isoformat() if doc.get("created_at") else None,
            "version": doc.get("version") or 0}
