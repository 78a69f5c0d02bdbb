"""The webhooks service: entrypoints only. Org admins register https
endpoints for chosen event types; every event of the catalogue that may leave
the mesh (``domain.deliverable``) becomes one delivery per subscribed endpoint,
sent signed by the ``deliver_due`` timer, retried with back-off over hours and
logged; an endpoint that keeps failing is disabled (``webhook.endpoint.disabled``,
which notifies the org's admins). Consuming is never blocked by a slow receiver:
handlers only record deliveries. Entrypoints only: the work of several steps
is in ``webhook_svc.flows``, the rules in ``webhook_svc.domain``."""
from __future__ import annotations

from shared import service as base
from shared.errors import NotFound
from shared.event_catalogue import CATALOGUE
from shared.events import handle_each
from shared.mongo import Mongo
from shared.pagination import PageArgsSchema, decode_cursor, page
from shared.rpc import ServiceRpc, rpc
from shared.tenancy import require_member
from shared.timers import periodic
from webhook_svc import domain, schemas
from webhook_svc.flows import DELIVERABLE, WebhookFlows
from webhook_svc.sender import WebhookSender
from webhook_svc.store import WebhookStore

BATCH = 50  # events handled together: one deliveries insert, subscriptions read once per org


class WebhookService(base.ServiceBase):
    name = "webhooks"

    store = Mongo(WebhookStore)
    sender = WebhookSender()
    employees = ServiceRpc("employees", methods=("get_membership",))

    @property
    def flows(self) -> WebhookFlows:
        return WebhookFlows(self)

    # --- endpoints (org admins) ----------------------------------------------
    @rpc
    def create_webhook(self, user_id: str, org_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        data = self.flows.valid(schemas.WebhookCreateSchema(), body)
        return schemas.dump_webhook(self.flows.create(org_id, data, user_id), secret=True)

    @rpc
    def list_webhooks(self, user_id: str, org_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        args = PageArgsSchema().load(args)
        docs = self.store.list_endpoints(org_id, args["limit"], decode_cursor(args["cursor"]))
        return page(docs, args["limit"], schemas.dump_webhook)

    @rpc
    def get_webhook(self, user_id: str, org_id: str, webhook_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        return schemas.dump_webhook(self.flows.endpoint(org_id, webhook_id))

    @rpc
    def update_webhook(self, user_id: str, org_id: str, webhook_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        changes = self.flows.valid(schemas.WebhookUpdateSchema(), body)
        return schemas.dump_webhook(self.flows.update(org_id, webhook_id, changes))

    @rpc
    def delete_webhook(self, user_id: str, org_id: str, webhook_id: str) -> None:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        self.flows.delete(org_id, webhook_id)

    @rpc
    def rotate_secret(self, user_id: str, org_id: str, webhook_id: str) -> dict:
        """A new signing secret, shown once; the old one stops signing at once."""
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        self.flows.endpoint(org_id, webhook_id)
        secret = domain.new_secret()
        self.store.update_endpoint(org_id, webhook_id, {"secret": secret})
        return {"secret": secret}

    @rpc
    def list_deliveries(self, user_id: str, org_id: str, webhook_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        args = PageArgsSchema().load(args)
        self.flows.endpoint(org_id, webhook_id)
        docs = self.store.list_deliveries(webhook_id, args["limit"], decode_cursor(args["cursor"]))
        return page(docs, args["limit"], schemas.dump_delivery)

    @rpc
    def redeliver(self, user_id: str, org_id: str, webhook_id: str, delivery_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        self.flows.endpoint(org_id, webhook_id)
        delivery = self.store.redeliver(webhook_id, delivery_id)
        if delivery is None:
            raise NotFound("Delivery not found.")
        return schemas.dump_delivery(delivery)

    # --- sending -------------------------------------------------------------
    @periodic(interval=1, config_key="WEBHOOK_TICK_SECONDS")
    def deliver_due(self) -> int:
        """Send what is due, a batch at a time, several at once."""
        return self.flows.deliver_due()

    def record_deliveries(self, events: list[dict]) -> int:
        """One delivery per enabled endpoint of each event's org that wants it (the
        handler of every deliverable event, below, in batches)."""
        return self.flows.record_deliveries(events)


# one durable queue per deliverable event: nothing published is missed; in batches of
# up to 50 that arrived together (one deliveries write for them). Idempotent (no
# ledger): a delivery is unique per endpoint and event.
handle_each(WebhookService, [(spec.producer, spec.name) for spec in CATALOGUE
                             if spec.name in DELIVERABLE], "record_deliveries",
            "Record the deliveries of", batch=BATCH, idempotent=True)
