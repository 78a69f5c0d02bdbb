"""Bulk task fan-out through the gateway: one ``POST /orgs/{org}/tasks/bulk``
of N assignees (default 10,000) with a real access token; time until the job
is ``done`` (polled at its ``status_url``), until every ``task.assigned`` has
been handled by both consumers (employees' task counts and notifications'
in-app entries match), and tasks/s. Beside it, in the same run, the floor: one
``insert_many`` of N task documents into the same SecantusDB, into a collection
with the same indexes.

What runs, each as its own ``nameko run`` process: the gateway (verifying the
token against a bench key given as static JWKS), the real tasks service, and
stand-ins for employees and notifications (bench/neighbours.py: memberships,
the batch look-up, and one idempotent write per ``task.assigned`` each, as the
real handlers do), on a private SecantusDB and RabbitMQ vhost.

    .venv/bin/python -m bench.bulk_tasks [--n 10000] [--chunk 500]
"""
import eventlet

eventlet.monkey_patch()  # noqa: E402

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import pymongo  # noqa: E402
import requests  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from auth_svc.keys import jwks, key_from_seed  # noqa: E402
from auth_svc.tokens import mint_access_token  # noqa: E402
from bench.common import environment, wait  # noqa: E402
from bench.neighbours import BOSS, ORG, employee  # noqa: E402
from ops import mesh  # noqa: E402
from shared.mongo import database_name  # noqa: E402
from task_svc.store import TaskStore  # noqa: E402

TASK = {"title": "Complete the security training", "description": "Annual, mandatory",
        "priority": "high", "due_at": "2030-01-31T17:00:00Z", "labels": ["training"]}


def floor(client: pymongo.MongoClient, n: int) -> float:
    db = client["bench_floor"]
    TaskStore(db).ensure_indexes()
    data = {**TASK, "due_at": None, "team_id": None}
    docs = [TaskStore.task_document(ORG, data, {"employee_id": "emp-boss", "user_id": BOSS},
                                    employee(f"emp-{i}"), task_id=f"floor-{i}", job_id="floor")
            for i in range(n)]
    started = time.perf_counter()
    db.tasks.insert_many(docs, ordered=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=500)
    args = parser.parse_args()
    services = ["gateway_svc.service", "task_svc.service", "bench.neighbours:BenchEmployees",
                "bench.neighbours:BenchNotifications"]
    key = key_from_seed(b"workforce-bench-signing-key")
    address = f"127.0.0.1:{mesh.free_port()}"
    with environment(services, TASK_BULK_CHUNK=str(args.chunk), JWT_JWKS=json.dumps(jwks([key])),
                     GATEWAY_ADDRESS=address) as (config, mongo_uri):
        client = pymongo.MongoClient(mongo_uri, tz_aware=True)
        floor_s = floor(client, args.n)
        employees_db = client[database_name(config, "employees")]
        notifications_db = client[database_name(config, "notifications")]
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {mint_access_token(key, BOSS, ttl=600)[0]}"
        base = f"http://{address}"
        with ClusterRpcProxy(config, timeout=30) as rpc:
            for name in ("tasks", "employees", "notifications"):
                wait(lambda name=name: _up(rpc, name), 60, f"the {name} service")
        wait(lambda: _http_up(http, base), 60, "the gateway")
        body = {"assignee_ids": [f"emp-{i}" for i in range(args.n)], "task": TASK}
        started = time.perf_counter()
        answer = http.post(f"{base}/api/v1/orgs/{ORG}/tasks/bulk", json=body)
        accepted = time.perf_counter() - started
        if answer.status_code != 202:
            raise SystemExit(f"bulk request answered {answer.status_code}: {answer.text[:500]}")
        status_url = base + answer.json()["status_url"]
        final = wait(lambda: (j := http.get(status_url).json())["status"] == "done" and j,
                     170, "the job", interval=0.1)
        done = time.perf_counter() - started
        wait(lambda: employees_db.counted.estimated_document_count() >= args.n
             and notifications_db.notifications.estimated_document_count() >= args.n,
             170, "every task.assigned handled", interval=0.1)
        handled = time.perf_counter() - started
        counts = sum(d["task_count"] for d in employees_db.employees.find({}, {"task_count": 1}))
    print(f"bulk of {args.n} assignees, chunks of {args.chunk}")
    print(f"  floor: insert_many of {args.n} task documents      {floor_s:7.2f} s "
          f"({args.n / floor_s:,.0f} docs/s)")
    print(f"  202 from the gateway (job + {len(range(0, args.n, args.chunk))} chunk events) "
          f"{accepted:7.2f} s")
    print(f"  job done ({final['done']} created, {final['failed']} failed)   {done:7.2f} s  "
          f"= {done / floor_s:.1f}x the floor, {args.n / done:,.0f} tasks/s")
    print(f"  every task.assigned handled by both consumers {handled:7.2f} s  "
          f"= {handled / floor_s:.1f}x the floor, {args.n / handled:,.0f} tasks/s "
          f"(employee task counts sum to {counts})")


def _http_up(http, base: str) -> bool:
    try:
        return http.get(f"{base}/api/v1/orgs/{ORG}/tasks/bulk/none").status_code == 404
    except requests.RequestException:
        return False


def _up(rpc, name: str) -> bool:
    try:
        return getattr(rpc, name).health()["ok"]
    except Exception:
        return False


if __name__ == "__main__":
    main()
