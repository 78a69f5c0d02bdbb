"""Filtered task lists on an org of 100,000 tasks: p50/p99 cold (cache
dropped before each call: the store path) and cached (Redis), each beside a
bare baseline measured in the same run: the same query straight to
SecantusDB with pymongo (the floor of a cold list) and a trivial RPC round
trip (the floor of a cached one).

What runs: SecantusDB, the real tasks service as its own ``nameko run``
process and the employees stand-in (bench/neighbours.py). Calls enter by RPC
(``tasks.list_tasks``), as the gateway forwards them; the gateway hop is not
in the figures until the whole mesh is merged.

    .venv/bin/python -m bench.task_list [--tasks 100000] [--cold 3] [--cached 200]

With 3 cold samples per query, the cold p99 is the slowest of the three.
"""
import eventlet

eventlet.monkey_patch()  # noqa: E402

import argparse  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

import pymongo  # noqa: E402
import redis  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.common import environment, ms, pct, running, wait  # noqa: E402
from bench.neighbours import BOSS, ORG, employee  # noqa: E402
from shared.mongo import database_name  # noqa: E402
from task_svc import domain, schemas  # noqa: E402
from task_svc.store import TaskStore  # noqa: E402

WORDS = ("deploy report review invoice audit onboarding release survey backup migrate "
         "security training budget hiring roadmap").split()
QUERIES = {
    "assignee (0.5%)": {"assignee_id": "emp-7"},
    "team+status (~3%)": {"team_id": "team-3", "status": "todo"},
    "status+priority, by due (~8%)": {"status": "in_progress", "priority": "urgent", "sort": "due"},
    "search q=deploy (~13%)": {"q": "deploy"},
    "everything, newest first": {},
}


def seed(db, n: int) -> None:
    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    docs = []
    for i in range(n):
        words = rng.sample(WORDS, 2)
        data = {"title": f"{words[0].title()} {words[1]} #{i}", "description": "",
                "team_id": f"team-{i % 30}", "priority": rng.choice(domain.PRIORITIES),
                "due_at": now + timedelta(hours=rng.randint(-24 * 30, 24 * 90)),
                "labels": [rng.choice(["ops", "hr", "eng", "sales"])]}
        doc = TaskStore.task_document(ORG, data, {"employee_id": "emp-boss", "user_id": BOSS},
                                      employee(f"emp-{i % 200}"))
        doc["status"] = rng.choice(domain.STATUSES)
        doc["created_at"] = now - timedelta(seconds=n - i)
        docs.append(doc)
    for start in range(0, n, 20_000):
        db.tasks.insert_many(docs[start:start + 20_000], ordered=False)
    TaskStore(db).ensure_indexes()  # built once over the data: faster than per insert


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
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--cold", type=int, default=3)
    parser.add_argument("--cached", type=int, default=200)
    args = parser.parse_args()
    with environment(["bench.neighbours:BenchEmployees"]) as (config, mongo_uri):
        client = pymongo.MongoClient(mongo_uri, tz_aware=True)
        db = client[database_name(config, "tasks")]
        started = time.perf_counter()
        seed(db, args.tasks)
        print(f"seeded {args.tasks} tasks with indexes in {time.perf_counter() - started:.1f} s")
        with running(config, ["task_svc.service"]), ClusterRpcProxy(config, timeout=60) as rpc:
            wait(lambda: _up(rpc), 90, "the tasks service")
            bare_rpc = timed(lambda: rpc.employees.get_membership(ORG, BOSS), args.cached)
            print(f"bare RPC round trip: p50 {ms(pct(bare_rpc, 50))}, p99 {ms(pct(bare_rpc, 99))}")
            print(f"{'query':32} {'direct p50':>11} {'cold p50':>10} {'cold p99':>10} {'x direct':>9}"
                  f" {'cached p50':>11} {'cached p99':>11} {'x bare RPC':>11}")
            cache = redis.Redis.from_url(config["REDIS_URI"], decode_responses=True)
            for name, query in QUERIES.items():
                measure(name, query, rpc, TaskStore(db), cache, bare_rpc, args)


def measure(name: str, query: dict, rpc, store: TaskStore, cache, bare_rpc: list[float], args) -> None:
    def drop_cache():
        members = cache.smembers(f"tasks:tag:org:{ORG}")
        cache.delete(f"tasks:tag:org:{ORG}", *members)

    f = schemas.ListArgsSchema().load(query)
    q = store.list_query({"org_id": ORG}, f, datetime.now(timezone.utc))
    direct = timed(lambda: store.page(dict(q), f["sort"], f["limit"] + 1, None), max(1, args.cold - 1))
    cold = timed(lambda: rpc.tasks.list_tasks(BOSS, ORG, query), args.cold, drop_cache)
    rpc.tasks.list_tasks(BOSS, ORG, query)
    cached = timed(lambda: rpc.tasks.list_tasks(BOSS, ORG, query), args.cached)
    print(f"{name:32} {ms(pct(direct, 50)):>11} {ms(pct(cold, 50)):>10} "
          f"{ms(pct(cold, 99)):>10} {pct(cold, 50) / pct(direct, 50):>8.2f}x "
          f"{ms(pct(cached, 50)):>11} {ms(pct(cached, 99)):>11} "
          f"{pct(cached, 50) / pct(bare_rpc, 50):>10.2f}x")


def _up(rpc) -> bool:
    try:
        return rpc.tasks.health()["ok"]
    except Exception:
        return False


if __name__ == "__main__":
    main()
