"""The analytics read model on SecantusDB: how fast task events go in, and how long
an uncached answer takes on an org of N tasks spread over the last 12 weeks, each
beside a baseline measured in the same run:

* ingest: ``AnalyticsStore.record`` per event (what a handler does: one read of
  the log, then one insert or one conditional write), against a bare
  ``insert_one`` per event (the floor of any handler that writes);
* cold answers: the store reads plus the fold (``domain``) of summary, times,
  throughput and workload, against the bare ``find`` of the same documents with
  the same projection (what no fold can go below).

The handlers' ledger (``handled_events``), RabbitMQ and the Redis cache are not
in these figures (the cache makes a warm answer one Redis GET).

    .venv/bin/python -m bench.analytics [--tasks 10000] [--events 2000] [--runs 3]
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from datetime import datetime, timedelta, timezone

import pymongo

from analytics_svc import domain
from analytics_svc.store import AnalyticsStore
from ops import mesh

ORG = "org-bench"


def event(kind: str, task_id: str, at: datetime, **data) -> dict:
    return {"event_id": uuid.uuid4().hex, "event_type": kind,
            "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "data": {"org_id": ORG, "task_id": task_id, **data}}


def history(rng: random.Random, i: int, now: datetime) -> list[dict]:
    """A task's events: created in the last 12 weeks; 70% started, 60% done."""
    task_id = f"t{i}"
    created = now - timedelta(seconds=rng.randint(3600, 84 * 86400))
    out = [event("task.created", task_id, created, status="todo", assignee_id=f"emp-{i % 200}",
                 team_id=f"team-{i % 12}", due_at=(created + timedelta(days=rng.randint(1, 20)))
                 .strftime("%Y-%m-%dT%H:%M:%SZ"))]
    if rng.random() < 0.7:
        started = created + timedelta(seconds=rng.randint(60, 5 * 86400))
        out.append(event("task.status.changed", task_id, started, new_status="in_progress"))
        if rng.random() < 0.85:
            done = started + timedelta(seconds=rng.randint(60, 10 * 86400))
            if done < now:
                out.append(event("task.status.changed", task_id, done, new_status="done"))
    return out


def timed(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=2000, help="events timed one by one")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    proc, uri = mesh.start_secantus(":memory:")
    try:
        client = pymongo.MongoClient(uri, tz_aware=True)
        db = client[f"bench_analytics_{uuid.uuid4().hex[:6]}"]
        store = AnalyticsStore(db)
        store.ensure_indexes()
        rng, now = random.Random(16), datetime.now(timezone.utc)
        events = [e for i in range(args.tasks) for e in history(rng, i, now)]

        # ingest, one event at a time, as the handlers do
        timed_events = events[:args.events]
        started = time.perf_counter()
        for e in timed_events:
            store.record(ORG, domain.entries(e))
        per_event = (time.perf_counter() - started) / len(timed_events)
        floor = db.floor
        started = time.perf_counter()
        for e in timed_events:
            floor.insert_one({"_id": e["event_id"], "e": e})
        per_insert = (time.perf_counter() - started) / len(timed_events)
        print(f"ingest: {per_event * 1000:.2f} ms/event ({1 / per_event:.0f} events/s) vs bare "
              f"insert_one {per_insert * 1000:.2f} ms: x{per_event / per_insert:.1f}")

        # the rest in bulk (a chunk's worth per write), then the facts of every task
        rest: dict[str, list[dict]] = {}
        for e in events[args.events:]:
            for task_id, found in domain.entries(e).items():
                rest.setdefault(task_id, []).extend(found)
        items = list(rest.items())
        started = time.perf_counter()
        for k in range(0, len(items), 500):
            store.record(ORG, dict(items[k:k + 500]))
        print(f"ingest in batches of 500 tasks: "
              f"{(time.perf_counter() - started) * 1000 / len(items):.2f} ms/task")
        print(f"org: {args.tasks} tasks, {len(events)} events, "
              f"{db.tasks.count_documents({'done_at': {'$ne': None}})} done")

        tz = domain.zone("Europe/London")
        r = domain.make_range("week", None, None, tz, 0, now)
        cases = {
            "summary (12 weeks)": (
                lambda: domain.summary(r, store.created_between(ORG, r.since, r.until),
                                       store.done_between(ORG, r.since, r.until),
                                       store.due_between(ORG, r.since, now), now),
                lambda: [list(db.tasks.find({"org_id": ORG, f: {"$gte": r.since, "$lt": r.until},
                                             "deleted": False}, dict.fromkeys(
                                                 ("created_at", "done_at", "due_at"), 1)))
                         for f in ("created_at", "done_at", "due_at")]),
            "times (12 weeks)": (
                lambda: domain.times(r, store.done_between(ORG, r.since, r.until)),
                lambda: list(db.tasks.find({"org_id": ORG, "done_at": {"$gte": r.since,
                                                                       "$lt": r.until},
                                            "deleted": False},
                                           {"created_at": 1, "started_at": 1, "done_at": 1}))),
            "throughput by team": (
                lambda: domain.throughput(r, store.done_between(ORG, r.since, r.until), "team"),
                lambda: list(db.tasks.find({"org_id": ORG, "done_at": {"$gte": r.since,
                                                                       "$lt": r.until},
                                            "deleted": False}, {"team_id": 1, "done_at": 1}))),
            "workload": (
                lambda: domain.workload(store.open_tasks(ORG), now),
                lambda: list(db.tasks.find({"org_id": ORG, "status": {"$in": ["todo", "in_progress"]},
                                            "deleted": False},
                                           {"assignee_id": 1, "status": 1, "due_at": 1}))),
        }
        for name, (answer, baseline) in cases.items():
            a, b = timed(answer, args.runs), timed(baseline, args.runs)
            print(f"cold {name}: {a * 1000:.0f} ms vs bare find {b * 1000:.0f} ms: x{a / b:.2f}")
    finally:
        mesh.stop_process(proc)


if __name__ == "__main__":
    main()
