"""How a task list's cost grows with the org: every filter and every sort the
list route takes, on orgs of 1,000, 10,000 and 100,000 tasks (all three in one
collection, seeded once with bulk inserts), p50 cold (cache dropped before each
call: the store path) per size and the 100k/1k ratio (target: within 3x), beside
the same query straight to SecantusDB (``TaskStore.page`` over pymongo: the floor
of a cold list) and the cached p50 at 100k.

What runs: SecantusDB, the real tasks service as its own ``nameko run``
process and the employees stand-in (bench/neighbours.py). Calls enter by RPC
(``tasks.list_tasks``), as the gateway forwards them; the gateway hop is not
in the figures.

    .venv/bin/python -m bench.task_list [--sizes 1000,10000,100000] [--cold 3] [--cached 50]
                                        [--only SUBSTRING]

The machine's load average is printed before and after: compare the ratios,
which are measured in the same run.
"""
import eventlet

eventlet.monkey_patch()  # noqa: E402

import argparse  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

import pymongo  # noqa: E402
import redis  # noqa: E402
from bson import ObjectId  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.common import environment, pct, running, wait  # noqa: E402
from bench.neighbours import BOSS, ORG, employee  # noqa: E402
from shared.mongo import database_name  # noqa: E402
from task_svc import domain, schemas  # noqa: E402
from task_svc.store import TaskStore  # noqa: E402

WORDS = ("deploy report review invoice audit onboarding release survey backup migrate "
         "security training budget hiring roadmap").split()
NOW = datetime.now(timezone.utc)
SOON, LATER = (NOW + timedelta(days=7)).isoformat(), (NOW + timedelta(days=60)).isoformat()
# every filter alone (newest first, the default), every sort alone, and combined filters
QUERIES = {
    "everything, newest first": {},
    "sort=-created (oldest first)": {"sort": "-created"},
    "sort=due": {"sort": "due"},
    "sort=-due": {"sort": "-due"},
    "sort=priority": {"sort": "priority"},
    "sort=-priority": {"sort": "-priority"},
    "assignee (0.5%)": {"assignee_id": "emp-7"},
    "team (3%)": {"team_id": "team-3"},
    "status (33%)": {"status": "todo"},
    "priority (25%)": {"priority": "high"},
    "labels=ops (25%)": {"labels": "ops"},
    "due_before +7d (~31%)": {"due_before": SOON},
    "due_after +60d (~25%)": {"due_after": LATER},
    "overdue=true (~17%)": {"overdue": True},
    "overdue=false (~83%)": {"overdue": False},
    "q=deploy (~13%)": {"q": "deploy"},
    "team+status (~1%)": {"team_id": "team-3", "status": "todo"},
    "assignee+status, by due": {"assignee_id": "emp-7", "status": "todo", "sort": "due"},
    "status+priority, by due (~8%)": {"status": "in_progress", "priority": "urgent", "sort": "due"},
}


def org_of(size: int) -> str:
    return f"{ORG}-{size}"


def seed(db, sizes: list[int]) -> None:
    """Tasks created one a second up to now, ids minted at their creation time
    (as a live org's are), due dates from 30 days past to 90 days ahead."""
    rng = random.Random(7)
    for n in sizes:
        org, docs = org_of(n), []
        for i in range(n):
            words = rng.sample(WORDS, 2)
            data = {"title": f"{words[0].title()} {words[1]} #{i}", "description": "",
                    "team_id": f"team-{i % 30}", "priority": rng.choice(domain.PRIORITIES),
                    "due_at": NOW + timedelta(hours=rng.randint(-24 * 30, 24 * 90)),
                    "labels": [rng.choice(["ops", "hr", "eng", "sales"])]}
            created = NOW - timedelta(seconds=n - i)
            oid = ObjectId.from_datetime(created).binary[:4] + os.urandom(8)
            doc = TaskStore.task_document(org, data, {"employee_id": "emp-boss", "user_id": BOSS},
                                          employee(f"emp-{i % 200}", org), task_id=str(ObjectId(oid)))
            doc["status"] = rng.choice(domain.STATUSES)
            doc["created_at"] = doc["updated_at"] = created
            docs.append(doc)
        for start in range(0, n, 20_000):
            db.tasks.insert_many(docs[start:start + 20_000], ordered=False)
    store = TaskStore(db)
    store.ensure_indexes()  # built once over the data: faster than per insert
    for n in sizes:  # the org's bounds, kept by every insert in service (here: once)
        store.bounds(org_of(n))


def timed(call, times: int, before=None) -> list[float]:
    samples = []
    for _ in range(times):
        if before:
            before()
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--cold", type=int, default=3)
    parser.add_argument("--cached", type=int, default=50)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with environment(["bench.neighbours:BenchEmployees"]) as (config, mongo_uri):
        client = pymongo.MongoClient(mongo_uri, tz_aware=True)
        db = client[database_name(config, "tasks")]
        started = time.perf_counter()
        seed(db, sizes)
        print(f"seeded {' + '.join(f'{n:,}' for n in sizes)} tasks (one org each) with indexes"
              f" in {time.perf_counter() - started:.1f} s")
        with running(config, ["task_svc.service"]), ClusterRpcProxy(config, timeout=120) as rpc:
            wait(lambda: _up(rpc), 90, "the tasks service")
            cache = redis.Redis.from_url(config["REDIS_URI"], decode_responses=True)
            cols = "".join(f"{f'cold {n // 1000}k':>10}" for n in sizes)
            print(f"{'query':32}{cols} {'big/small':>9} {'direct big':>11} {'cached big':>11}")
            for name, query in QUERIES.items():
                if args.only in name:
                    measure(name, query, rpc, TaskStore(db), cache, sizes, args)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def measure(name: str, query: dict, rpc, store: TaskStore, cache, sizes: list[int], args) -> None:
    cold = {}
    for n in sizes:
        org = org_of(n)

        def drop_cache(org=org):
            members = cache.smembers(f"tasks:tag:org:{org}")
            cache.delete(f"tasks:tag:org:{org}", *members)

        cold[n] = pct(timed(lambda org=org: rpc.tasks.list_tasks(BOSS, org, query), args.cold,
                            drop_cache), 50)
    big = org_of(sizes[-1])
    f = schemas.ListArgsSchema().load(query)
    q = store.list_query({"org_id": big}, f, datetime.now(timezone.utc))
    direct = pct(timed(lambda: store.page(dict(q), f["sort"], f["limit"] + 1, None),
                       max(1, args.cold - 1)), 50)
    rpc.tasks.list_tasks(BOSS, big, query)
    cached = pct(timed(lambda: rpc.tasks.list_tasks(BOSS, big, query), args.cached), 50)
    cols = "".join(f"{cold[n] * 1000:>7.1f} ms" for n in sizes)
    print(f"{name:32}{cols} {cold[sizes[-1]] / cold[sizes[0]]:>8.1f}x {direct * 1000:>8.1f} ms"
          f" {cached * 1000:>8.1f} ms", flush=True)


def _up(rpc) -> bool:
    try:
        return rpc.tasks.health()["ok"]
    except Exception:
        return False


if __name__ == "__main__":
    main()
