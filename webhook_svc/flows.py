"""The webhooks service's work of several steps (checking an endpoint's
settings, recording the deliveries of an event, sending what is due with its
retry and disable rules), on one worker's dependencies: the entrypoints in
``service.py`` authorize, then call one of these. Rules come from
:mod:`webhook_svc.domain`, queries from the store; the signed POST itself is
the ``sender`` dependency's."""
from __future__ import annotations

import logging

import eventlet
from marshmallow import Schema, ValidationError

from shared.errors import NotFound, ValidationFailed, validation_error
from shared.event_catalogue import CATALOGUE
from shared.mongo import utcnow
from shared.outbound import UnsafeUrl
from shared.redis import org_version_key
from shared.service import Flows
from webhook_svc import domain
from webhook_svc.sender import Sender
from webhook_svc.store import new_id

log = logging.getLogger(__name__)

# every event of the catalogue that may leave the mesh (domain.deliverable)
DELIVERABLE = sorted(spec.name for spec in CATALOGUE
                     if domain.deliverable(spec.name, spec.producer, list(spec.schema().fields)))

# an org's subscriptions stay cached until one of its endpoints changes (a version
# bump); the TTL only bounds an entry whose bump was lost with Redis
SUBSCRIPTIONS_TTL = 300


def subscriptions_key(org_id: str) -> str:
    return f"webhooks:subscriptions:{org_id}"


class WebhookFlows(Flows):
    uses = ("sender",)
    sender: Sender

    # --- endpoints: every change makes the org's cached subscriptions stale ----------
    def create(self, org_id: str, data: dict, actor: str) -> dict:
        endpoint = self.store.create_endpoint(org_id, data, domain.new_secret(), actor)
        self.changed(org_id)
        return endpoint

    def update(self, org_id: str, webhook_id: str, changes: dict) -> dict:
        self.endpoint(org_id, webhook_id)
        endpoint = self.store.update_endpoint(org_id, webhook_id, changes)
        if endpoint is None:
            raise NotFound("Webhook not found.")
        self.changed(org_id)
        return endpoint

    def delete(self, org_id: str, webhook_id: str) -> None:
        if not self.store.delete_endpoint(org_id, webhook_id):
            raise NotFound("Webhook not found.")
        self.changed(org_id)

    def changed(self, org_id: str) -> None:
        """After a write to the org's endpoints (never before: a list read meanwhile
        would be stored under the new version)."""
        self.redis.cache.bump_versions([org_version_key(self.name, org_id)])

    def subscriptions(self, org_id: str) -> list[dict]:
        """The org's enabled endpoints as recording needs them (id, event types; no
        secret in the cache), from the one cache: an org without endpoints costs
        no MongoDB read per event."""
        return self.redis.cache.get_or_set(
            subscriptions_key(org_id),
            lambda: [{"_id": e["_id"], "enabled": True, "event_types": e["event_types"]}
                     for e in self.store.enabled_endpoints(org_id)],
            SUBSCRIPTIONS_TTL, versions=[org_version_key(self.name, org_id)])

    def endpoint(self, org_id: str, webhook_id: str) -> dict:
        endpoint = self.store.get_endpoint(org_id, webhook_id)
        if endpoint is None:
            raise NotFound("Webhook not found.")
        return endpoint

    def valid(self, schema: Schema, body: dict) -> dict:
        """``body`` loaded with ``schema``; 422 for event types webhooks do not deliver
        and for a URL the sender would refuse to call (the SSRF check)."""
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

    def record_deliveries(self, events: list[dict]) -> int:
        """One delivery per enabled endpoint of each event's org that wants it, in
        one write (idempotent: an (endpoint, event) pair recorded already is skipped)."""
        subs = {org: self.subscriptions(org) for org in {e.get("org_id") for e in events} if org}
        docs = [{"_id": new_id(),
                 "endpoint_id": endpoint["_id"], "org_id": event["org_id"],
                 "event_id": event["event_id"], "event_type": event["event_type"],
                 "payload": domain.payload(event), "state": "pending", "attempts": 0,
                 "next_attempt_at": utcnow(), "log": [], "created_at": utcnow()}
                for event in events if event.get("org_id")
                for endpoint in subs[event["org_id"]]
                if domain.wants(endpoint, event["event_type"])]
        self.store.add_deliveries(docs)
        return len(docs)

    def deliver_due(self) -> int:
        """Send what is due, a batch at a time, several at once."""
        config = self.config
        due = self.store.claim_due(int(config.get("WEBHOOK_BATCH", 50)),
                                   lease_s=float(config.get("WEBHOOK_TIMEOUT_SECONDS", 5)) * 3)
        pool = eventlet.GreenPool(int(config.get("WEBHOOK_CONCURRENCY", 10)))
        for delivery in due:
            pool.spawn_n(self.send, delivery)
        pool.waitall()
        return len(due)

    def send(self, delivery: dict) -> None:
        endpoint = self.store.endpoints.find_one({"_id": delivery["endpoint_id"]})
        if endpoint is None or not endpoint["enabled"]:
            attempt: dict = {"at": utcnow(), "status_code": None, "latency_ms": 0.0,
                             "response": "", "error": "the endpoint is disabled or deleted"}
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
            self._disable(endpoint, f"{limit} failed attempts in a row; last: "
                                    f"{attempt['error'] or attempt['status_code']}")

    def _disable(self, endpoint: dict, reason: str) -> None:
        if self.store.disable_endpoint(endpoint["_id"], reason):
            self.changed(endpoint["org_id"])
            self.events.publish("webhook.endpoint.disabled", {
                "org_id": endpoint["org_id"], "webhook_id": endpoint["_id"],
                "url": endpoint["url"], "reason": reason,
                "created_by_user_id": endpoint["created_by"]}, org_id=endpoint["org_id"])
            log.warning("webhook %s disabled: %s", endpoint["_id"], reason)
