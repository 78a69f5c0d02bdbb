"""The analytics service: entrypoints only. Task events feed a read model of
per-task facts (``store``: each event's entry kept once per event id, the
facts derived from the whole log: replays and late events change nothing
twice); the figures are folded from those facts (``domain``) per period in
the org's time zone, cached in Redis until an event of the org changes them.
Docs: docs/analytics.md."""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Callable

from marshmallow import Schema

from analytics_svc import domain, schemas
from analytics_svc.store import AnalyticsStore, now
from shared import service as base
from shared.errors import ValidationFailed
from shared.events import handle_each, handles
from shared.mongo import Mongo
from shared.rpc import ServiceRpc, rpc
from shared.tenancy import require_member

log = logging.getLogger(__name__)

BATCH = 50  # a task's events handled together: one write of each kind per org per batch
PERMISSION = "task.stats"  # whoever may read the task stats may read these


class AnalyticsService(base.ServiceBase):
    name = "analytics"

    store = Mongo(AnalyticsStore)
    employees = ServiceRpc("employees", methods=("get_membership",))
    organizations = ServiceRpc("organizations", methods=("get_org",))

    # --- figures -------------------------------------------------------------------
    @rpc
    def summary(self, user_id: str, org_id: str, args: dict) -> dict:
        """Tasks created, completed and overdue per period."""
        def compute(zone: str, r: domain.Range, f: dict) -> dict:
            at = now()
            rows = domain.summary(r, self.store.created_between(org_id, r.since, r.until),
                                  self.store.done_between(org_id, r.since, r.until),
                                  self.store.due_between(org_id, r.since, min(r.until, at)), at)
            return schemas.dump_summary(org_id, zone, r, rows)

        return self._ranged("summary", user_id, org_id, args, schemas.RangeArgsSchema(), compute)

    @rpc
    def times(self, user_id: str, org_id: str, args: dict) -> dict:
        """Lead and cycle time percentiles of the tasks completed, per period and overall."""
        def compute(zone: str, r: domain.Range, f: dict) -> dict:
            overall, rows = domain.times(r, self.store.done_between(org_id, r.since, r.until))
            return schemas.dump_times(org_id, zone, r, overall, rows)

        return self._ranged("times", user_id, org_id, args, schemas.RangeArgsSchema(), compute)

    @rpc
    def throughput(self, user_id: str, org_id: str, args: dict) -> dict:
        """Tasks completed per team or per assignee, per period."""
        def compute(zone: str, r: domain.Range, f: dict) -> dict:
            rows = domain.throughput(r, self.store.done_between(org_id, r.since, r.until), f["by"])
            return schemas.dump_throughput(org_id, zone, r, f["by"], rows)

        return self._ranged("throughput", user_id, org_id, args, schemas.ThroughputArgsSchema(),
                            compute)

    @rpc
    def workload(self, user_id: str, org_id: str, args: dict) -> dict:
        """Open tasks per employee now (todo, in progress, overdue among them)."""
        require_member(self.redis, self.employees, org_id, user_id, PERMISSION)

        def compute() -> dict:
            at = now()
            rows, nobody = domain.workload(self.store.open_tasks(org_id), at)
            return schemas.dump_workload(org_id, at, rows, nobody)

        return self.redis.cache.get_or_set(f"analytics:workload:{org_id}", compute,
                                           ttl=self._ttl(), tags=[f"org:{org_id}"])

    # --- the read model, fed by events ------------------------------------------------
    @handles("tasks", "task.bulk.assigned", idempotent=True)
    def on_task_bulk_assigned(self, event: dict) -> None:  # a chunk: hundreds of tasks already
        self._record([event])

    @handles("organizations", "organization.settings.updated")
    def on_org_settings_updated(self, event: dict) -> None:
        d = event["data"]
        self.store.save_org_settings(d["org_id"], d.get("settings") or {},
                                     domain.parse_time(event["occurred_at"]) or now())
        self.redis.cache.invalidate_tags(f"org:{d['org_id']}")

    @handles("organizations", "organization.deleted")
    def on_org_deleted(self, event: dict) -> None:
        self.store.forget_org(event["data"]["org_id"])
        self.redis.cache.invalidate_tags(f"org:{event['data']['org_id']}")

    # === helpers (not entrypoints) ============================================================
    def _record(self, events: list[dict]) -> None:
        """The events' log entries, one write of each kind per org of them."""
        for org_id, found in domain.entries_by_org(events).items():
            self.store.record(org_id, found)
            self.redis.cache.invalidate_tags(f"org:{org_id}")

    def _ranged(self, kind: str, user_id: str, org_id: str, args: dict, schema: Schema,
                compute: Callable[[str, domain.Range, dict], dict]) -> dict:
        """Authorize, validate, resolve the range in the org's zone, then the cached figures."""
        require_member(self.redis, self.employees, org_id, user_id, PERMISSION)
        f = schema.load(args or {})
        zone_name, week_start = self._zone(org_id)
        try:
            r = domain.make_range(f["period"], f["from_"], f["to"], domain.zone(zone_name),
                                  domain.week_start_index(week_start), now())
        except domain.BadRange as exc:
            raise ValidationFailed(str(exc), errors={exc.field: [str(exc)]}) from None
        key = json.dumps({**f, "from_": r.first, "to": r.last, "tz": zone_name}, sort_keys=True,
                         default=str)
        return self.redis.cache.get_or_set(
            f"analytics:{kind}:{org_id}:{hashlib.sha1(key.encode()).hexdigest()[:20]}",
            lambda: compute(zone_name, r, f), ttl=self._ttl(), tags=[f"org:{org_id}"])

    def _zone(self, org_id: str) -> tuple[str, str]:
        """The org's time zone and week start: from its settings events, or asked of
        organizations once (an org whose settings never changed since we started)."""
        doc = self.store.org_settings(org_id)
        if doc is None:
            settings = (self.organizations.get_org(org_id) or {}).get("settings") or {}
            self.store.save_org_settings(org_id, settings, now())
            doc = {"timezone": settings.get("timezone"), "week_start": settings.get("week_start")}
        return doc.get("timezone") or "UTC", doc.get("week_start") or "mon"

    def _ttl(self) -> int:
        return int(self.config.get("ANALYTICS_CACHE_TTL", 60))


# one durable queue per task event it folds (on_task_created, ...), in batches.
# Idempotent (no ledger): a task's log keeps each event id once (domain.with_entries).
handle_each(AnalyticsService, [("tasks", event_type) for event_type in (
    "task.created", "task.assigned", "task.reassigned", "task.updated", "task.status.changed",
    "task.deleted")], "_record", "Fold into the read model", batch=BATCH, idempotent=True)
