"""Listing employees of a 5,000-employee org: a role filter and a prefix
search, cold (the employees service's query on SecantusDB) and cached (the
gateway's versioned response cache in Redis, what GET /orgs/{id}/employees
answers from while nothing in the org changed), against a bare baseline
measured in the same run: one indexed find_one by _id.

Prints p50/p99 per case, each as a ratio to the baseline p50, and the query
plans (explain()) to show the lists use indexes, not a collection scan.

    .venv/bin/python bench/employees_list.py [--employees 5000] [--calls 50]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pymongo  # noqa: E402

from employee_svc import domain  # noqa: E402
from employee_svc.schemas import dump_employee  # noqa: E402
from employee_svc.store import EmployeeStore  # noqa: E402
from ops import mesh  # noqa: E402
from shared.mongo import utcnow  # noqa: E402
from shared.pagination import page  # noqa: E402
from shared.redis import RedisTools, make_client, org_version_key  # noqa: E402

FIRST = ["Alice", "Albert", "Bianca", "Cyril", "Dora", "Emil", "Fatima", "Gus", "Hana", "Ivo"]
LAST = ["Archer", "Stone", "Alvarez", "Cole", "Nguyen", "Smith", "Okafor", "Berg", "Ito", "Kim"]
TITLES = ["Backend Engineer", "Designer", "Accountant", "Sales Lead", "Support Agent"]
ROLES = ["member"] * 16 + ["manager"] * 3 + ["admin"]


def employees(org_id: str, count: int) -> list[dict]:
    docs = []
    for i in range(count):
        name = f"{FIRST[i % 10]} {LAST[(i // 10) % 10]}{i}"
        email = f"{name.split()[0].lower()}.{i}@example.com"
        title = TITLES[i % len(TITLES)]
        docs.append({"_id": uuid.uuid4().hex, "org_id": org_id, "user_id": uuid.uuid4().hex,
                     "email": email, "name": name, "role": ROLES[i % len(ROLES)],
                     "status": "active", "job_title": title, "teams": {}, "team_ids": [],
                     "keywords": domain.keywords(name, email, title),
                     "created_at": utcnow()})
    return docs


def timed(fn, calls: int) -> list[float]:
    fn()  # warm the connection
    out = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def plan_of(explain: dict) -> str:
    stage, parts = explain["queryPlanner"]["winningPlan"], []
    while stage:
        parts.append(stage["stage"] + (f"({stage['indexName']})" if stage.get("indexName") else ""))
        stage = stage.get("inputStage")
    stats = explain.get("executionStats") or {}
    return (f"{' <- '.join(parts)}; keys examined {stats.get('totalKeysExamined')}, "
            f"docs examined {stats.get('totalDocsExamined')}, returned {stats.get('nReturned')}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--employees", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()

    proc, uri = mesh.start_secantus(":memory:")
    redis_client = make_client({"REDIS_URI": os.environ.get("REDIS_URI",
                                                            "redis://127.0.0.1:6379/0")})
    tools = RedisTools(redis_client, "bench", 300)
    try:
        db = pymongo.MongoClient(uri, tz_aware=True)[f"bench_{uuid.uuid4().hex[:8]}"]
        store = EmployeeStore(db)
        store.ensure_indexes()
        org_id, other = uuid.uuid4().hex, uuid.uuid4().hex
        for org, count in ((org_id, args.employees), (other, args.employees // 5)):
            docs = employees(org, count)
            for start in range(0, len(docs), 1000):
                db.employees.insert_many(docs[start:start + 1000])
        some_id = docs[0]["_id"]
        cases = {"role=manager": {"role": "manager"}, "q=ali (prefix)": {"terms": ["ali"]},
                 "q=backend eng": {"terms": ["backend", "eng"]}}

        def cold(query):
            return lambda: page(store.list_employees(org_id, limit=50, **query), 50,
                                dump_employee)

        cache = tools.cache
        version = [org_version_key("employees", f"bench-{org_id}")]

        def cached(name, query):
            key = f"bench:employees:{org_id}:{name}"
            return lambda: cache.get_or_set(key, cold(query), ttl=300, versions=version)

        rows = [("baseline: find_one by _id", timed(
            lambda: db.employees.find_one({"_id": some_id}), args.calls))]
        for name, query in cases.items():
            rows.append((f"{name} cold", timed(cold(query), args.calls)))
            rows.append((f"{name} cached", timed(cached(name, query), args.calls)))
        base = statistics.median(rows[0][1])
        print(f"{args.employees} employees in the org (+{args.employees // 5} in another), "
              f"{args.calls} calls each, pages of 50")
        print(f"{'case':32} {'p50 ms':>8} {'p99 ms':>8} {'p50/baseline':>13}")
        for name, values in rows:
            print(f"{name:32} {statistics.median(values):8.2f} {p(values, 99):8.2f} "
                  f"{statistics.median(values) / base:12.1f}x")
        print("\nquery plans (explain):")
        for name, query in cases.items():
            cursor = store.list_cursor(org_id, **query).limit(51)
            print(f"  {name}: {plan_of(cursor.explain())}")
        sample = store.list_employees(org_id, terms=["ali"], limit=50)
        assert all(d["org_id"] == org_id for d in sample)
        print("\nfirst prefix hit:", json.dumps(dump_employee(sample[0]))[:120])
    finally:
        redis_client.delete(f"bench:ver:org:bench-{org_id}")
        for key in redis_client.scan_iter(f"gateway:cache:bench:employees:{org_id}:*"):
            redis_client.delete(key)
        mesh.stop_process(proc)


if __name__ == "__main__":
    main()
