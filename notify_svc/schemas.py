"""Wire shapes of the notifications service (marshmallow)."""
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from notify_svc import domain

TIME = validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", error="Use HH:MM (24 h).")


class Strict(Schema):
    class Meta:
        unknown = RAISE


class ChannelsSchema(Strict):
    email = fields.Boolean(truthy={True}, falsy={False})
    push = fields.Boolean(truthy={True}, falsy={False})
    in_app = fields.Boolean(truthy={True}, falsy={False})


class QuietHoursSchema(Strict):
    start = fields.String(required=True, validate=TIME)
    end = fields.String(required=True, validate=TIME)


class PreferencesSchema(Strict):
    channels = fields.Dict(keys=fields.String(validate=validate.OneOf(sorted(domain.KINDS))),
                           values=fields.Nested(ChannelsSchema))
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True)
    digest = fields.String(validate=validate.OneOf(domain.DIGEST_FREQUENCIES))
    timezone = fields.String(validate=validate.Length(max=64))

    @validates("timezone")
    def _tz(self, value, **_):
        from zoneinfo import ZoneInfo
        try:
            ZoneInfo(value)
        except Exception:
            raise ValidationError("Unknown time zone.") from None


class TemplateSchema(Strict):
    subject = fields.String(required=True, validate=validate.Length(min=1, max=500))
    text = fields.String(required=True, validate=validate.Length(min=1, max=20_000))
    html = fields.String(validate=validate.Length(max=50_000))
    locale = fields.String(load_default="en", validate=validate.OneOf(["en"]))


class PushKeysSchema(Strict):
    p256dh = fields.String(required=True, validate=validate.Length(min=20, max=200))
    auth = fields.String(required=True, validate=validate.Length(min=8, max=100))


class PushSubscriptionSchema(Strict):
    endpoint = fields.Url(required=True, schemes={"https", "http"},
                          validate=validate.Length(max=2000), require_tld=False)
    keys = fields.Nested(PushKeysSchema, required=True)
    expirationTime = fields.Raw(allow_none=True)


class PushUnsubscribeSchema(Strict):
    endpoint = fields.Url(required=True, schemes={"https", "http"}, require_tld=False)


class ListQuerySchema(Strict):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(load_default=None, validate=validate.Length(max=300))
    unread = fields.Boolean(load_default=False)


class NotificationSchema(Schema):
    id = fields.String()
    kind = fields.String()
    title = fields.String()
    body = fields.String()
    link = fields.String(allow_none=True)
    read = fields.Boolean()
    org_id = fields.String(allow_none=True)
    data = fields.Dict()
    created_at = fields.String()


class NotificationPageSchema(Schema):
    items = fields.List(fields.Nested(NotificationSchema))
    next_cursor = fields.String(allow_none=True)


class UnreadCountSchema(Schema):
    unread = fields.Integer()


class ReadAllSchema(Schema):
    marked = fields.Integer(metadata={"description": "how many were unread"})


class PushSubscriptionOutSchema(Schema):
    endpoint = fields.String()


class TemplateOutSchema(Schema):
    key = fields.String()
    locale = fields.String()
    subject = fields.String()
    text = fields.String()
    html = fields.String()
    overridden = fields.Boolean()
