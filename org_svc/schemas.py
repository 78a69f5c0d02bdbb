"""Wire shapes of the organizations service (marshmallow). Unknown keys are
refused (marshmallow's RAISE), so a typo in a setting is a 422, not a no-op."""
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import Schema, ValidationError, fields, validate

from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT

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
    email = fields.Boolean()
    in_app = fields.Boolean()
    push = fields.Boolean()
    digest = fields.String(validate=validate.OneOf(("off", "daily", "weekly")))


class SettingsSchema(Schema):
    """An organization's settings; PATCH sends any subset."""
    timezone = fields.String(validate=_timezone)
    default_task_priority = fields.String(validate=validate.OneOf(PRIORITIES))
    working_days = fields.List(fields.String(validate=validate.OneOf(DAYS)),
                               validate=[validate.Length(max=7), _unique])
    week_start = fields.String(validate=validate.OneOf(DAYS))
    locale = fields.String(validate=validate.Regexp(r"^[a-z]{2}(-[A-Z]{2})?$"))
    notification_defaults = fields.Nested(NotificationDefaultsSchema)


DEFAULT_SETTINGS = {
    "timezone": "UTC", "default_task_priority": "medium",
    "working_days": ["mon", "tue", "wed", "thu", "fri"], "week_start": "mon", "locale": "en",
    "notification_defaults": {"email": True, "in_app": True, "push": False, "digest": "off"},
}


class OrgCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    settings = fields.Nested(SettingsSchema)


class OrgUpdateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))


class TransferSchema(Schema):
    user_id = fields.String(required=True, validate=ID)


class SubscriptionUpdateSchema(Schema):
    plan = fields.String(required=True, validate=validate.OneOf(PLANS))


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=DEFAULT_LIMIT,
                           validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(validate=validate.Length(max=200))


class LimitsSchema(Schema):
    employees = fields.Integer(allow_none=True)
    teams = fields.Integer(allow_none=True)


class SubscriptionSchema(Schema):
    plan = fields.String()
    limits = fields.Nested(LimitsSchema)
    usage = fields.Nested(LimitsSchema)


class OrgSchema(Schema):
    org_id = fields.String()
    name = fields.String()
    owner_user_id = fields.String()
    personal = fields.Boolean()
    settings = fields.Nested(SettingsSchema)
    subscription = fields.Nested(SubscriptionSchema)
    counts = fields.Nested(LimitsSchema)
    created_at = fields.String()


class OrgPageSchema(Schema):
    items = fields.List(fields.Nested(OrgSchema))
    next_cursor = fields.String(allow_none=True)
