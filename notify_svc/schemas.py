"""Wire shapes of the notifications service (marshmallow)."""
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from notify_svc import domain
from shared import examples as ex
from shared.pagination import PageArgsSchema, page_schema

TIME = validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", error="Use HH:MM (24 h).")


class Strict(Schema):
    class Meta:
        unknown = RAISE


class ChannelsSchema(Strict):
    email = fields.Boolean(truthy={True}, falsy={False}, metadata={"example": True})
    push = fields.Boolean(truthy={True}, falsy={False}, metadata={"example": False})
    in_app = fields.Boolean(truthy={True}, falsy={False}, metadata={"example": True})


class QuietHoursSchema(Strict):
    start = fields.String(required=True, validate=TIME, metadata={"example": "22:00"})
    end = fields.String(required=True, validate=TIME, metadata={"example": "07:30"})


class PreferencesSchema(Strict):
    channels = fields.Dict(keys=fields.String(validate=validate.OneOf(sorted(domain.KINDS))),
                           values=fields.Nested(ChannelsSchema), metadata={
                               "description": "per notification kind: which channels deliver it",
                               "example": {
                                   "task_assigned": {"email": True, "push": True, "in_app": True},
                                   "task_comment": {"email": False, "push": False, "in_app": True}}})
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True)
    digest = fields.String(validate=validate.OneOf(domain.DIGEST_FREQUENCIES), allow_none=True,
                           metadata={"example": "daily", "description":
                                     "null: the organization's default digest applies"})
    timezone = fields.String(validate=validate.Length(max=64), metadata={"example": "Europe/London"})

    @validates("timezone")
    def _tz(self, value, **_):
        from zoneinfo import ZoneInfo
        try:
            ZoneInfo(value)
        except Exception:
            raise ValidationError("Unknown time zone.") from None


# the task_assigned template (Jinja; the variables are the event's, see templates/en.yaml)
TEMPLATE_SUBJECT = "[Acme] New task: {{ title }}"
TEMPLATE_TEXT = "Hi {{ recipient_name }}, {{ title }} is yours now.\n{{ link }}"
TEMPLATE_HTML = "<p>Hi {{ recipient_name }}, <a href=\"{{ link }}\">{{ title }}</a> is yours now.</p>"


class TemplateSchema(Strict):
    subject = fields.String(required=True, validate=validate.Length(min=1, max=500),
                            metadata={"example": TEMPLATE_SUBJECT})
    text = fields.String(required=True, validate=validate.Length(min=1, max=20_000),
                         metadata={"example": TEMPLATE_TEXT})
    html = fields.String(validate=validate.Length(max=50_000), metadata={"example": TEMPLATE_HTML})
    locale = fields.String(load_default="en", validate=validate.OneOf(["en"]),
                           metadata={"example": "en"})


class PushKeysSchema(Strict):
    p256dh = fields.String(required=True, validate=validate.Length(min=20, max=200),
                           metadata={"example": ex.PUSH_P256DH})
    auth = fields.String(required=True, validate=validate.Length(min=8, max=100),
                         metadata={"example": ex.PUSH_AUTH})


class PushSubscriptionSchema(Strict):
    """A browser's ``PushSubscription.toJSON()``."""
    endpoint = fields.Url(required=True, schemes={"https"},
                          validate=validate.Length(max=2000), require_tld=False,
                          metadata={"example": ex.PUSH_ENDPOINT,
                                    "description": "https, to a public address"})
    keys = fields.Nested(PushKeysSchema, required=True)
    expirationTime = fields.Raw(allow_none=True, metadata={"example": None})


class PushUnsubscribeSchema(Strict):
    endpoint = fields.Url(required=True, schemes={"https", "http"}, require_tld=False,
                          metadata={"example": ex.PUSH_ENDPOINT})


class ListQuerySchema(Strict, PageArgsSchema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    unread = fields.Boolean(load_default=False)


TASK_LINK = f"https://app.example.com/orgs/{ex.ORG_ID}/tasks/{ex.TASK_ID}"


class NotificationSchema(Schema):
    id = fields.String(metadata={"example": ex.NOTIFICATION_ID})
    kind = fields.String(metadata={"example": "task_assigned"})
    title = fields.String(metadata={"example": "New task: Write the release notes"})
    body = fields.String(metadata={"example": "A task was assigned to you: Write the release "
                                              f"notes (due {ex.DUE_AT})\n{TASK_LINK}"})
    link = fields.String(allow_none=True, metadata={"example": TASK_LINK})
    read = fields.Boolean(metadata={"example": False})
    org_id = fields.String(allow_none=True, metadata={"example": ex.ORG_ID})
    data = fields.Dict(metadata={"description": "the event's details",
                                 "example": {"org_id": ex.ORG_ID, "task_id": ex.TASK_ID,
                                             "title": "Write the release notes",
                                             "due_at": ex.DUE_AT}})
    created_at = fields.String(metadata={"example": ex.CREATED_AT})


NotificationPageSchema = page_schema("NotificationPage", NotificationSchema)


class UnreadCountSchema(Schema):
    unread = fields.Integer(metadata={"example": 3})


class ReadAllSchema(Schema):
    marked = fields.Integer(metadata={"description": "how many were unread", "example": 3})


class PushSubscriptionOutSchema(Schema):
    endpoint = fields.String(metadata={"example": ex.PUSH_ENDPOINT})


class TemplateOutSchema(Schema):
    key = fields.String(metadata={"enum": sorted(domain.KINDS), "example": "task_assigned"})
    locale = fields.String(metadata={"example": "en"})
    subject = fields.String(metadata={"example": TEMPLATE_SUBJECT})
    text = fields.String(metadata={"example": TEMPLATE_TEXT})
    html = fields.String(metadata={"example": TEMPLATE_HTML})
    overridden = fields.Boolean(metadata={"description": "false: the built-in template",
                                          "example": True})


def dump_notification(doc: dict) -> dict:
    """A notification as the API shows it."""
    return {"id": doc["_id"], "kind": doc["kind"], "title": doc.get("title"),
            "body": doc.get("body"), "link": doc.get("link"), "read": doc.get("read", False),
            "org_id": doc.get("org_id"),
            "data": {**(doc.get("data") or {}), **({"tasks": doc["tasks"]} if "tasks" in doc else {})},
            "created_at": doc["created_at"].isoformat().replace("+00:00", "Z")}
