"""The audit service: entrypoints only. Every event of the catalogue becomes
one append-only record of its org's hash chain (who did what to which object,
when, from which request); owners and admins list and export them
(``audit.read``), operators verify a chain (``ops.cli audit-verify``), and a
sweep removes what is older than ``AUDIT_RETENTION_DAYS``. Kept in MongoDB
only, never cached (the design: audit logs stay in the database)."""
from __future__ import annotations

import logging

from audit_svc import domain, schemas
from audit_svc.store import AuditStore
from shared import service as base
from shared.event_catalogue import CATALOGUE
from shared.events import handle_each
from shared.mongo import Mongo, utcnow
from shared.pagination import decode_cursor, page
from shared.rpc import ServiceRpc, rpc
from shared.tenancy import require_member
from shared.timers import periodic

log = logging.getLogger(__name__)

BATCH = 50  # events appended to their chains together (shared.events' batches)
# each event's data fields in the catalogue's order (domain.object_of reads them)
FIELD_ORDER = {spec.name: tuple(spec.schema().fields) for spec in CATALOGUE}


class AuditService(base.ServiceBase):
    name = "audit"

    store = Mongo(AuditStore)
    employees = ServiceRpc("employees", methods=("get_membership",))

    @rpc
    def list_records(self, user_id: str, org_id: str, args: dict) -> dict:
        """An org's records, newest first, filtered (actor, object, event type, time)."""
        require_member(self.redis, self.employees, org_id, user_id, "audit.read")
        f = schemas.ListArgsSchema().load(args if isinstance(args, dict) else {})
        docs = self.store.list_records(org_id, f, f["limit"], decode_cursor(f["cursor"]))
        return page(docs, f["limit"], schemas.dump_record)

    @rpc
    def verify_chain(self, org_id: str | None) -> dict:
        """Operators (ops.cli audit-verify): walk an org's chain from its anchor and
        name the first break; ``None`` checks the chain of events without an org."""
        chain = self.store.chain(org_id)
        records = self.store.chain_records(org_id, int((chain or {}).get("anchor_seq") or 1))
        result = domain.verify(records, chain)
        if not result["ok"]:
            log.error("audit chain of %r broken: %s", org_id, result["break"])
        return schemas.dump_verify(org_id, result, chain)

    @periodic(interval=3600, config_key="AUDIT_SWEEP_SECONDS")
    def sweep_expired(self) -> int:
        """Delete records older than AUDIT_RETENTION_DAYS, oldest first per chain."""
        cutoff = domain.retention_cutoff(utcnow(), float(self.config.get("AUDIT_RETENTION_DAYS")
                                                         or 0))
        if cutoff is None:
            return 0
        return sum(self.store.sweep(org_id, cutoff)
                   for org_id in self.store.chains_with_records_before(cutoff))

    def record(self, events: list[dict]) -> None:
        """Append the events that arrived together, in order (a duplicate, by
        event id, is left out)."""
        now = utcnow()
        self.store.append_many([domain.entry(event, now, FIELD_ORDER.get(
            event.get("event_type") or "", ())) for event in events])


# one durable queue per event: a new event is audited from its first day; in batches
# (a bulk job's thousands of notification.sent: one insert and one head update each).
# Idempotent (no ledger): a record's event id is unique, so an event is recorded once.
handle_each(AuditService, [(spec.producer, spec.name) for spec in CATALOGUE], "record", "Audit",
            batch=BATCH, idempotent=True)
