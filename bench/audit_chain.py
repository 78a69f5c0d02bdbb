"""What the audit hash chain costs on SecantusDB, against baselines measured in
the same run: appending a record (read the tip, hash, insert, advance the head)
against a bare ``insert_one`` of the same document; appends of concurrent
writers (green threads, as a service's workers are) to ONE org's chain and to
8 orgs; a handler's batches of 50 (``append_many``: one tip read, one ordered
insert and one head update per batch), alone and raced by a second writer;
verifying a chain against merely reading the same records.

Prints per-record times and ratios to the baselines, and how many insert
attempts lost the race (each costs one more tip read and insert). "Racing"
cases leave out the per-process turns (``AuditStore._stripes``), as writers in
separate replicas are.

    .venv/bin/python bench/audit_chain.py [--records 2000]
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()  # noqa: E402  green writers, as nameko's workers are

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pymongo  # noqa: E402

from audit_svc import domain  # noqa: E402
from audit_svc.store import AuditStore  # noqa: E402
from ops import mesh  # noqa: E402
from shared.events import make_envelope  # noqa: E402
from shared.mongo import utcnow  # noqa: E402


def entries(org_id: str, count: int) -> list[dict]:
    return [domain.entry(make_envelope("task.updated", {
        "org_id": org_id, "task_id": uuid.uuid4().hex[:24], "title": f"Task {i}",
        "changes": {"priority": "high", "due_at": "2030-03-13T17:00:00Z"}},
        producer="tasks", org_id=org_id, actor_id=uuid.uuid4().hex,
        correlation_id=uuid.uuid4().hex, client_ip="203.0.113.7"), utcnow())
        for i in range(count)]


class CountingStore(AuditStore):
    """Counts the tip reads: one per record, one more per insert that lost the race."""
    reads = 0

    def chain(self, org_id):
        self.reads += 1
        return super().chain(org_id)


def per_record(seconds: float, count: int) -> float:
    return seconds / count * 1000


def racing(store: AuditStore) -> AuditStore:
    """The same store without its per-process turns: only the database orders writers
    (what two replicas appending to one org amount to)."""
    import contextlib

    store._stripes = [contextlib.nullcontext() for _ in store._stripes]
    return store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=800)
    n = parser.parse_args().records
    proc, uri = mesh.start_secantus(":memory:")
    try:
        client = pymongo.MongoClient(uri, tz_aware=True)
        db = client[f"bench{uuid.uuid4().hex[:6]}_audit"]
        store = CountingStore(db)
        store.ensure_indexes()
        db.baseline.create_index("event_id", unique=True)

        plain = [domain.seal(e, i + 1, domain.GENESIS) for i, e in enumerate(entries("b", n))]
        started = time.perf_counter()
        for doc in plain:
            db.baseline.insert_one(doc)
        base_insert = per_record(time.perf_counter() - started, n)

        org = uuid.uuid4().hex
        work = entries(org, n)
        started = time.perf_counter()
        for entry in work:
            store.append(entry)
        one_writer = per_record(time.perf_counter() - started, n)

        def concurrent(target: AuditStore, orgs: list[str], writers: int = 8) -> tuple[float, int]:
            per_org = [entries(o, n // len(orgs)) for o in orgs]
            work = [e for batch in zip(*per_org, strict=True) for e in batch]  # interleaved
            target.reads = 0
            started = time.perf_counter()
            list(eventlet.GreenPool(writers).imap(target.append, work))
            return per_record(time.perf_counter() - started, len(work)), target.reads - len(work)

        def batched(target: AuditStore, writers: int, size: int = 50) -> tuple[float, float]:
            """A handler's batches (``append_many``): ms and tip reads per record."""
            work = entries(uuid.uuid4().hex, n)
            target.reads = 0
            started = time.perf_counter()
            list(eventlet.GreenPool(writers).imap(
                target.append_many, [work[i:i + size] for i in range(0, n, size)]))
            return per_record(time.perf_counter() - started, n), target.reads / n

        in_batches, batch_reads = batched(store, writers=1)
        batches_raced, raced_reads = batched(racing(CountingStore(db)), writers=2)
        one_org, lost_one = concurrent(store, [uuid.uuid4().hex])
        eight_orgs, lost_eight = concurrent(store, [uuid.uuid4().hex for _ in range(8)])
        raced, lost_raced = concurrent(racing(CountingStore(db)), [uuid.uuid4().hex])
        two, lost_two = concurrent(racing(CountingStore(db)), [uuid.uuid4().hex], writers=2)

        started = time.perf_counter()
        list(db.records.find({"_id": {"$gte": domain.record_id(org, 0),
                                      "$lte": domain.record_id(org, domain.MAX_SEQ)}}).sort("_id"))
        read = per_record(time.perf_counter() - started, n)
        started = time.perf_counter()
        result = domain.verify(store.chain_records(org), store.chain(org))
        verify = per_record(time.perf_counter() - started, n)
        assert result["ok"] and result["checked"] == n, result

        def row(what: str, value: float, base: float, extra: str = "") -> None:
            print(f"  {what:<48} {value:8.3f} ms/record  {value / base:5.2f}x{extra}")

        print(f"audit chain on SecantusDB, {n} records per case (shared cores: read the ratios)")
        row("baseline: insert_one", base_insert, base_insert)
        row("append, 1 writer", one_writer, base_insert)
        row("append, 8 writers, one org (turns per org)", one_org, base_insert,
            f"; {lost_one} lost races")
        row("append, 8 writers, one org, racing (8 replicas)", raced, base_insert,
            f"; {lost_raced} lost races ({lost_raced / n:.2f} per record)")
        row("append, 2 writers, one org, racing (2 replicas)", two, base_insert,
            f"; {lost_two} lost races ({lost_two / n:.2f} per record)")
        row("append, 8 writers, 8 orgs", eight_orgs, base_insert, f"; {lost_eight} lost races")
        row("append_many, batches of 50, 1 writer", in_batches, base_insert,
            f"; {batch_reads:.2f} tip reads per record")
        row("append_many, batches of 50, racing (2 replicas)", batches_raced, base_insert,
            f"; {raced_reads:.2f} tip reads per record")
        row("baseline: read the chain", read, read)
        row("verify (read + hash + links)", verify, read, f"; {1000 / verify:,.0f} records/s")
        client.close()
    finally:
        mesh.stop_process(proc)


if __name__ == "__main__":
    main()
