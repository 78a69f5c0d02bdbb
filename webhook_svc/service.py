"""The webhooks service: entrypoints only. Org admins register https
endpoints for chosen event types; every event of the catalogue that may leave
the mesh (``domain.deliverable``) becomes one delivery per subscribed endpoint,
sent signed by the ``deliver_due`` timer, retried with back-off over hours and
logged; an endpoint that keeps failing is disabled (``webhook.endpoint.disabled``,
which notifies the org's admins). Consuming is never blocked by a slow receiver:
handlers only record deliveries."""
from __future__ import annotations

import logging

import eventlet
from marshmallow import ValidationError

from shared import service as base
from shared.errors import NotFound, ValidationFailed, validation_error
from shared.event_catalogue import CATALOGUE
from shared.events import handle_each
from shared.mongo import Mongo, utcnow
from shared.outbound import UnsafeUrl
from shared.pagination import PageArgsSchema, decode_cursor, page
from shared.rpc import ServiceRpc, rpc
from shared.tenancy import require_member
from shared.timers import periodic
from webhook_svc import domain, schemas
from webhook_svc.sender import WebhookSender
from webhook_svc.store import WebhookStore, new_id

log = logging.getLogger(__name__)

DELIVERABLE = sorted(spec.name for spec in CATALOGUE
                     if domain.deliverable(spec.name, spec.producer, list(spec.schema().fields)))


class WebhookService(base.ServiceBase):
    name = "webhooks"

    store = Mongo(WebhookStore)
    sender = WebhookSender()
    employees = ServiceRpc("employees", methods=("get_membership",))

    # --- endpoints (org admins) ----------------------------------------------
    @rpc
    def create_webhook(self, user_id: str, org_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        data = self._valid(schemas.WebhookCreateSchema(), body)
        endpoint = self.store.create_endpoint(org_id, data, domain.new_secret(), user_id)
        return schemas.dump_webhook(endpoint, secret=True)

    @rpc
    def list_webhooks(self, user_id: str, org_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        args = PageArgsSchema().load(args)
        docs = self.store.list_endpoints(org_id, args["limit"], decode_cursor(args["cursor"]))
        return page(docs, args["limit"], schemas.dump_webhook)

    @rpc
    def get_webhook(self, user_id: str, org_id: str, webhook_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        return schemas.dump_webhook(self._endpoint(org_id, webhook_id))

    @rpc
    def update_webhook(self, user_id: str, org_id: str, webhook_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        changes = self._valid(schemas.WebhookUpdateSchema(), body)
        self._endpoint(org_id, webhook_id)
        endpoint = self.store.update_endpoint(org_id, webhook_id, changes)
        if endpoint is None:
            raise NotFound("Webhook not found.")
        return schemas.dump_webhook(endpoint)

    @rpc
    def delete_webhook(self, user_id: str, org_id: str, webhook_id: str) -> None:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        if not self.store.delete_endpoint(org_id, webhook_id):
            raise NotFound("Webhook not found.")

    @rpc
    def rotate_secret(self, user_id: str, org_id: str, webhook_id: str) -> dict:
        """A new signing secret, shown once; the old one stops signing at once."""
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        self._endpoint(org_id, webhook_id)
        secret = domain.new_secret()
        self.store.update_endpoint(org_id, webhook_id, {"secret": secret})
        return {"secret": secret}

    @rpc
    def list_deliveries(self, user_id: str, org_id: str, webhook_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        args = PageArgsSchema().load(args)
        self._endpoint(org_id, webhook_id)
        docs = self.store.list_deliveries(webhook_id, args["limit"], decode_cursor(args["cursor"]))
        return page(docs, args["limit"], schemas.dump_delivery)

    @rpc
    def redeliver(self, user_id: str, org_id: str, webhook_id: str, delivery_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "webhook.manage")
        self._endpoint(org_id, webhook_id)
        delivery = self.store.redeliver(webhook_id, delivery_id)
        if delivery is None:
            raise NotFound("Delivery not found.")
        return schemas.dump_delivery(delivery)

    # --- sending -------------------------------------------------------------
    @periodic(interval=1, config_key="WEBHOOK_TICK_SECONDS")
    def deliver_due(self) -> int:
        """Send what is due, a batch at a time, several at once."""
        config = self.config
        due = self.store.claim_due(int(config.get("WEBHOOK_BATCH", 50)),
                                   lease_s=float(config.get("WEBHOOK_TIMEOUT_SECONDS", 5)) * 3)
        pool = eventlet.GreenPool(int(config.get("WEBHOOK_CONCURRENCY", 10)))
        for delivery in due:
            pool.spawn_n(self._send, delivery)
        pool.waitall()
        return len(due)

    def _send(self, delivery: dict) -> None:
        endpoint = self.store.endpoints.find_one({"_id": delivery["endpoint_id"]})
        if endpoint is None or not endpoint["enabled"]:
            attempt = {"at": utcnow(), "status_code": None, "latency_ms": 0.0, "response": "",
                       "error": "the endpoint is disabled or deleted"}
            self.store.record_attempt(delivery["_id"], attempt, "failed", None)
            return
        attempt = self.sender.send(endpoint, delivery)
        ok = domain.succeeded(attempt["status_code"])
        schedule = domain.parse_schedule(self.config.get("WEBHOOK_RETRY_SCHEDULE_S")
                                         or "60,300,1800,7200,21600,43200")
        next_at = None if ok else domain.next_attempt(delivery.get("attempts", 0) + 1, schedule,
                                                      utcnow())
        state = "succeeded" if ok else ("retrying" if next_at else "failed")
        self.store.record_attempt(delivery["_id"], attempt, state, next_at)
        after = self.store.endpoint_result(endpoint["_id"], ok)
        limit = int(self.config.get("WEBHOOK_DISABLE_AFTER_FAILURES", 50))
        if after and not ok and after["consecutive_failures"] >= limit:
            reason = f"{limit} failed attempts in a row; last: {attempt['error'] or attempt['status_code']}"
            if self.store.disable_endpoint(endpoint["_id"], reason):
                self.events.publish("webhook.endpoint.disabled", {
                    "org_id": endpoint["org_id"], "webhook_id": endpoint["_id"],
                    "url": endpoint["url"], "reason": reason,
                    "created_by_user_id": endpoint["created_by"]}, org_id=endpoint["org_id"])
                log.warning("webhook %s disabled: %s", endpoint["_id"], reason)

    def record_deliveries(self, event: dict) -> int:
        """One delivery per enabled endpoint of the event's org that wants it."""
        org_id = event.get("org_id")
        if not org_id:
            return 0
        docs = [{"_id": new_id(),
                 "endpoint_id": endpoint["_id"], "org_id": org_id, "event_id": event["event_id"],
                 "event_type": event["event_type"], "payload": domain.payload(event),
                 "state": "pending", "attempts": 0, "next_attempt_at": utcnow(), "log": [],
                 "created_at": utcnow()}
                for endpoint in self.store.enabled_endpoints(org_id)
                if domain.wants(endpoint, event["event_type"])]
        self.store.add_deliveries(docs)
        return len(docs)

    # --- helpers -------------------------------------------------------------
    def _valid(self, schema, body: dict) -> dict:
        try:
            data = schema.load(body if isinstance(body, dict) else {})
        except ValidationError as exc:
            raise validation_error(exc) from None
        unknown = sorted(set(data.get("event_types", [])) - set(DELIVERABLE) - {domain.ALL_EVENTS})
        if unknown:
            raise ValidationFailed("Unknown event types.", errors={
                "event_types": [f"Not an event that webhooks deliver: {', '.join(unknown)}."]})
        if "url" in data:
            try:
                self.sender.check(data["url"])
            except UnsafeUrl as exc:
                raise ValidationFailed("The URL is not allowed.", errors={"url": [str(exc)]}) from None
        return data

    def _endpoint(self, org_id: str, webhook_id: str) -> dict:
        endpoint = self.store.get_endpoint(org_id, webhook_id)
        if endpoint is None:
            raise NotFound("Webhook not found.")
        return endpoint


# one durable queue per deliverable event: nothing published is missed
handle_each(WebhookService, [(spec.producer, spec.name) for spec in CATALOGUE
                             if spec.name in DELIVERABLE], "record_deliveries", "Record the deliveries of")
