"""The notifications service: entrypoints only (the workflow is in
``notify_svc.flows``, the rules in ``notify_svc.domain``)."""
from __future__ import annotations

from marshmallow import ValidationError

from notify_svc import domain
from notify_svc.channels import Mailer, Pusher
from notify_svc.flows import Notifier
from notify_svc.schemas import (
    ListQuerySchema,
    PreferencesSchema,
    PushSubscriptionSchema,
    TemplateSchema,
    dump_notification,
)
from notify_svc.store import NotificationStore
from shared import service as base
from shared.errors import NotFound, ValidationFailed, validation_error
from shared.events import handles
from shared.mongo import Mongo
from shared.pagination import decode_key, page
from shared.rpc import ServiceRpc, rpc
from shared.tenancy import require_member
from shared.timers import periodic

TICK_SECONDS = 1
# task.assigned arrives by the thousand when many tasks are created at once:
# handled in batches of up to this many (shared.events), one write per collection.
# The task handlers are idempotent (no ledger): an item and an email are unique per
# event and person (domain.notification_id), and only new ones are announced, sent
# or pushed.
BATCH = 50


def load(schema, data):
    """Validate RPC input: 422 with per-field messages."""
    try:
        return schema.load(data if isinstance(data, dict) else {})
    except ValidationError as exc:
        raise validation_error(exc) from None


class NotificationService(base.ServiceBase):
    name = "notifications"

    store = Mongo(NotificationStore)
    mailer = Mailer()
    pusher = Pusher()
    organizations = ServiceRpc("organizations", timeout=2, methods=("get_org",))
    employees = ServiceRpc("employees", methods=("get_membership",))

    @property
    def notifier(self) -> Notifier:
        return Notifier(self)

    # recipient directory --------------------------------------------------
    @handles("auth", "user.registered")
    def on_user_registered(self, event):
        d = event["data"]
        self.store.upsert_recipient(d["user_id"], {"email": d.get("email"), "name": d.get("name")})
        self.notifier.handle(event)

    @handles("auth", "user.updated")
    def on_user_updated(self, event):
        d = event["data"]
        self.store.upsert_recipient(d["user_id"], {"email": d.get("email"), "name": d.get("name")})

    @handles("auth", "user.deleted")
    def on_user_deleted(self, event):
        self.store.forget_user(event["data"]["user_id"])

    @handles("organizations", "organization.settings.updated")
    def on_org_settings(self, event):
        self.notifier.forget_org_defaults(event["data"]["org_id"])

    # events a person hears about -------------------------------------------
    @handles("auth", "user.password.reset")
    def on_password_reset(self, event):
        self.notifier.handle(event)

    @handles("auth", "user.unlock.requested")
    def on_unlock_requested(self, event):
        self.notifier.handle(event)

    @handles("auth", "user.email.verification.requested")
    def on_verification_requested(self, event):
        self.notifier.handle(event)

    @handles("auth", "user.password.changed")
    def on_password_changed(self, event):
        self.notifier.handle(event)

    @handles("auth", "user.email.verified")
    def on_email_verified(self, event):
        self.notifier.handle(event)

    @handles("organizations", "organization.created")
    def on_org_created(self, event):
        self.notifier.handle(event)

    @handles("employees", "employee.added")
    def on_employee_added(self, event):
        self.notifier.handle(event)

    @handles("employees", "employee.invited")
    def on_employee_invited(self, event):
        self.notifier.handle(event)

    @handles("employees", "employee.removed")
    def on_employee_removed(self, event):
        self.notifier.handle(event)

    @handles("teams", "team.member.added")
    def on_team_member_added(self, event):
        self.notifier.handle(event)

    @handles("tasks", "task.assigned", batch=BATCH, idempotent=True)
    def on_task_assigned(self, events):
        self.notifier.handle_many(events)

    @handles("tasks", "task.bulk.assigned", bulk=True)
    def on_task_bulk_assigned(self, event):
        self.notifier.handle_bulk(event)

    @handles("webhooks", "webhook.endpoint.disabled")
    def on_webhook_disabled(self, event):
        self.notifier.handle(event)

    @handles("tasks", "task.reassigned", batch=BATCH, idempotent=True)
    def on_task_reassigned(self, events):
        self.notifier.handle_many(events)

    @handles("tasks", "task.completed", batch=BATCH, idempotent=True)
    def on_task_completed(self, events):
        self.notifier.handle_many(events)

    @handles("tasks", "task.overdue", batch=BATCH, idempotent=True)
    def on_task_overdue(self, events):
        self.notifier.handle_many(events)

    @handles("tasks", "task.status.changed", batch=BATCH, idempotent=True)
    def on_task_status_changed(self, events):
        self.notifier.handle_many(events)

    @handles("tasks", "task.comment.added", batch=BATCH, idempotent=True)
    def on_task_comment(self, events):
        self.notifier.handle_many(events)

    # timers -----------------------------------------------------------------
    @periodic(interval=TICK_SECONDS)
    def deliver_due(self):
        """Retries (back-off), held bulk messages and quiet-hour holds that are due."""
        self.notifier.deliver_due()

    @periodic(interval=TICK_SECONDS)
    def send_digests(self):
        """One email per user whose digest window closed (one instance at a time)."""
        self.notifier.send_digests()

    # the in-app feed --------------------------------------------------------
    @rpc
    def list_notifications(self, user_id: str, query: dict | None = None) -> dict:
        args = load(ListQuerySchema(), query or {})
        docs = self.store.list_notifications(user_id, args["limit"] + 1,
                                             decode_key(args["cursor"], 2), args["unread"])
        return page(docs, args["limit"], dump_notification, key=lambda d: (d["created_at"], d["_id"]))

    @rpc
    def missed(self, user_id: str, last_id: str) -> list[dict]:
        """What a reconnecting websocket missed since ``last_id`` (oldest first)."""
        return [dump_notification(d) for d in self.store.since(user_id, str(last_id))]

    @rpc
    def unread_count(self, user_id: str) -> int:
        return self.notifier.unread_count(user_id)

    @rpc
    def mark_read(self, user_id: str, notification_id: str) -> None:
        if self.notifier.mark_read(user_id, str(notification_id)) is None:
            raise NotFound("Notification not found.")

    @rpc
    def mark_all_read(self, user_id: str) -> int:
        return self.notifier.mark_all_read(user_id)

    @rpc
    def delete_notification(self, user_id: str, notification_id: str) -> None:
        if self.notifier.delete(user_id, str(notification_id)) is None:
            raise NotFound("Notification not found.")

    # preferences ------------------------------------------------------------
    @rpc
    def get_preferences(self, user_id: str) -> dict:
        return self.notifier.preferences(user_id)

    @rpc
    def set_preferences(self, user_id: str, prefs: dict) -> dict:
        return self.notifier.save_preferences(user_id, load(PreferencesSchema(), prefs))

    # templates (org admins) ---------------------------------------------------
    @rpc
    def get_template(self, user_id: str, org_id: str, key: str, locale: str = "en") -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "notification_templates.manage")
        if key not in domain.KINDS:
            raise NotFound("No such template.")
        doc = self.store.template(org_id, key, locale)
        template = self.notifier.template(org_id, key, locale)
        return {"key": key, "locale": locale, **template, "overridden": doc is not None}

    @rpc
    def put_template(self, user_id: str, org_id: str, key: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "notification_templates.manage")
        if key not in domain.KINDS:
            raise NotFound("No such template.")
        data = load(TemplateSchema(), body)
        locale = data.pop("locale")
        try:
            self.notifier.save_template(org_id, key, locale, data)
        except domain.TemplateInvalid as exc:
            raise ValidationFailed(f"The template does not render: {exc}",
                                   {exc.part: [f"line {exc.line}: {exc.message}"]}) from None
        return {"key": key, "locale": locale, **data, "overridden": True}

    # push subscriptions --------------------------------------------------------
    @rpc
    def add_push_subscription(self, user_id: str, subscription: dict) -> dict:
        sub = load(PushSubscriptionSchema(), subscription)
        self.notifier.add_push_subscription(user_id, sub)
        return {"endpoint": sub["endpoint"]}

    @rpc
    def remove_push_subscription(self, user_id: str, endpoint: str) -> None:
        if not self.store.remove_push_subscription(user_id, str(endpoint)):
            raise NotFound("No such subscription.")

    # operators ----------------------------------------------------------------
    @rpc
    def failures(self, limit: int = 100) -> list[dict]:
        """Deliveries that failed for good (nameko shell: n.rpc.notifications.failures())."""
        return self.store.failures(int(limit))

    @rpc
    def deliveries(self, notification_id: str) -> list[dict]:
        return self.store.deliveries_of(str(notification_id))


__all__ = ["NotificationService"]
