"""Bulk task fan-out through the gateway: one ``POST /orgs/{org}/tasks/bulk``
of N assignees (default 10,000) with a real access token; time until the job
is ``done`` (polled at its ``status_url``), until every task is counted
(employees' task counts sum to N), notified in-app (N feed items) and by email
(N messages accepted by the SMTP sink), and tasks/s. Beside it, in the same
run, the floor: one ``insert_many`` of N task documents into the same
SecantusDB, into a collection with the same indexes.

What runs, each as its own ``nameko run`` process, on a private SecantusDB
and RabbitMQ vhost: the gateway (verifying a token signed with the tests' fixed
keys, tests/tokens.py), and the real tasks, employees and notifications
services; an aiosmtpd sink (tests/smtp_sink.py) takes the emails. The N
employees and their recipient entries are written straight into the
services' databases (one ``insert_many`` each) before the request. Emails of
a bulk job wait ``NOTIFY_BULK_WINDOW_SECONDS`` (5 s) to gather a person's
tasks of the job into one message; that wait is part of the figure.

    .venv/bin/python -m bench.bulk_tasks [--n 10000] [--chunk 500] [--deadline 170]
        [--bulk-concurrency 1]

When something is not complete by the deadline it says where the missing
ones are: the notifications service's deliveries by status, its claims of the
chunk events, and every queue of the run's vhost that still holds messages
(handler, retry tiers, dead letters): missing or only late.
"""
import eventlet

eventlet.monkey_patch()  # noqa: E402

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import pymongo  # noqa: E402
import requests  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.common import AUTH, MGMT, environment, wait  # noqa: E402
from ops import mesh  # noqa: E402
from shared.mongo import database_name  # noqa: E402
from task_svc.store import TaskStore  # noqa: E402
from tests.smtp_sink import SmtpSink  # noqa: E402
from tests.tokens import TEST_PRIVATE_KEYS_PEM, auth_headers  # noqa: E402

ORG, BOSS = "bench-org", "bench-boss"
TASK = {"title": "Complete the security training", "description": "Annual, mandatory",
        "priority": "high", "due_at": "2030-01-31T17:00:00Z", "labels": ["training"]}
DEADLINE_S = 170
BULK_HANDLER = "notifications.on_task_bulk_assigned"


def employee(i: int | str, role: str = "member") -> dict:
    """An employee document as employee_svc stores it."""
    user = BOSS if i == "boss" else f"user-{i}"
    return {"_id": f"emp-{i}", "org_id": ORG, "user_id": user, "email": f"{user}@example.com",
            "name": f"Person {i}", "role": role, "job_title": "bench", "status": "active",
            "email_verified": True, "teams": {}, "team_ids": [],
            "keywords": [], "org_name": "Bench"}


def floor(client: pymongo.MongoClient, n: int) -> float:
    db = client["bench_floor"]
    TaskStore(db).ensure_indexes()
    data = {**TASK, "due_at": None, "team_id": None}
    docs = [TaskStore.task_document(ORG, data, {"employee_id": "emp-boss", "user_id": BOSS},
                                    {"employee_id": f"emp-{i}", "user_id": f"user-{i}"},
                                    task_id=f"floor-{i}", job_id="floor")
            for i in range(n)]
    started = time.perf_counter()
    db.tasks.insert_many(docs, ordered=False)
    return time.perf_counter() - started


def seed(employees_db, notifications_db, n: int) -> None:
    people = [employee(i) for i in range(n)]
    employees_db.employees.insert_many([employee("boss", "manager"), *people])
    notifications_db.recipients.insert_many([{"_id": p["user_id"], "email": p["email"],
                                              "name": p["name"]} for p in people])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--deadline", type=float, default=DEADLINE_S,
                        help="seconds to wait for everything (default %(default)s)")
    parser.add_argument("--bulk-concurrency", type=int, default=None,
                        help="EVENT_BULK_CONCURRENCY of every service (config.yaml's default: 1)")
    args = parser.parse_args()
    services = ["gateway_svc.service", "task_svc.service", "employee_svc.service",
                "notify_svc.service"]
    address = f"127.0.0.1:{mesh.free_port()}"
    sink = SmtpSink().start()
    try:
        extra = ({"EVENT_BULK_CONCURRENCY": str(args.bulk_concurrency)}
                 if args.bulk_concurrency is not None else {})
        with environment(services, TASK_BULK_CHUNK=str(args.chunk), GATEWAY_ADDRESS=address,
                         SMTP_URL=sink.url, **extra) as (config, mongo_uri):
            figures = run(args, config, mongo_uri, address, sink)
    finally:
        sink.stop()
    report(args, **figures)


def run(args, config: dict, mongo_uri: str, address: str, sink: SmtpSink) -> dict:
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    floor_s = floor(client, args.n)
    employees_db = client[database_name(config, "employees")]
    notifications_db = client[database_name(config, "notifications")]
    http = requests.Session()
    # the tests' fixed keys: their public halves go where the gateway looks (Redis)
    http.headers.update(auth_headers({**config, "JWT_PRIVATE_KEYS": TEST_PRIVATE_KEYS_PEM}, BOSS,
                                     ttl=600))
    base = f"http://{address}"
    with ClusterRpcProxy(config, timeout=30) as rpc:
        for name in ("tasks", "employees", "notifications"):
            wait(lambda name=name: _up(rpc, name), 60, f"the {name} service")
    seed(employees_db, notifications_db, args.n)
    wait(lambda: _http_up(http, base), 60, "the gateway")
    body = {"assignee_ids": [f"emp-{i}" for i in range(args.n)], "task": TASK}
    started = time.perf_counter()
    answer = http.post(f"{base}/api/v1/orgs/{ORG}/tasks/bulk", json=body)
    accepted = time.perf_counter() - started
    if answer.status_code != 202:
        raise SystemExit(f"bulk request answered {answer.status_code}: {answer.text[:500]}")
    status_url = base + answer.json()["status_url"]
    times: dict[str, float] = {}
    final: dict = {}
    checks = {
        "job": lambda: (j := http.get(status_url).json())["status"] == "done" and final.update(j)
        is None,
        "counted": lambda: employees_db.employee_tasks.estimated_document_count() >= args.n
        and _counted(employees_db) >= args.n,
        "in_app": lambda: notifications_db.notifications.estimated_document_count() >= args.n,
        "emails": lambda: sum(1 for e in os.scandir(sink.dir) if e.name.endswith(".eml")) >= args.n,
    }
    while checks and time.perf_counter() - started < args.deadline:
        for name, check in list(checks.items()):
            if check():
                times[name] = time.perf_counter() - started
                del checks[name]
        eventlet.sleep(2)  # a count costs SecantusDB ~0.5 s per 10,000 documents
    if checks:
        where_missing(config, notifications_db, sorted(checks))
    return {"floor_s": floor_s, "accepted": accepted, "times": times, "final": final,
            "counted": _counted(employees_db),
            "in_app": notifications_db.notifications.count_documents({"kind": "task_assigned"}),
            "emails": sum(1 for e in os.scandir(sink.dir) if e.name.endswith(".eml")),
            "connections": sink.connections()}


def where_missing(config: dict, notifications_db, missing: list[str]) -> None:
    """What the notifications service holds when something is missing at the deadline."""
    print(f"NOT COMPLETE: {', '.join(missing)}; where they are:")
    statuses = {row["_id"]: row["n"] for row in notifications_db.deliveries.aggregate(
        [{"$group": {"_id": "$status", "n": {"$sum": 1}}}])}
    print(f"  notifications' email deliveries by status: {statuses}")
    claims = {row["_id"]: row["n"] for row in notifications_db.handled_events.aggregate([
        {"$match": {"_id": {"$regex": f"^{BULK_HANDLER}:"}}},
        {"$group": {"_id": "$state", "n": {"$sum": 1}}}])}
    print(f"  {BULK_HANDLER} claims by state: {claims}")
    vhost = config["AMQP_URI"].rpartition("/")[2]
    queues = requests.get(f"{MGMT}/api/queues/{vhost}", auth=AUTH, timeout=10).json()
    for queue in queues:
        if queue.get("messages") or queue.get("messages_unacknowledged"):
            print(f"  queue {queue['name']}: {queue.get('messages_ready', 0)} ready, "
                  f"{queue.get('messages_unacknowledged', 0)} unacked")


def report(args, floor_s, accepted, times, final, counted, in_app, emails, connections) -> None:
    def line(what: str, key: str) -> str:
        if key not in times:
            return f"  {what:<44} NOT within {args.deadline:g} s"
        t = times[key]
        return (f"  {what:<44} {t:7.2f} s = {t / floor_s:5.1f}x the floor, "
                f"{args.n / t:,.0f} tasks/s")

    print(f"bulk of {args.n} assignees, chunks of {args.chunk}")
    print(f"  floor: insert_many of {args.n} task documents{'':<9} {floor_s:7.2f} s "
          f"({args.n / floor_s:,.0f} docs/s)")
    print(f"  202 from the gateway (job + {len(range(0, args.n, args.chunk))} chunk events)"
          f"{'':<8} {accepted:7.2f} s")
    print(line(f"job done ({final.get('done')} created, {final.get('failed')} failed)", "job"))
    print(line(f"counted (employee task counts sum to {counted})", "counted"))
    print(line(f"in-app ({in_app} feed items)", "in_app"))
    print(line(f"emails ({emails} accepted, {connections} SMTP connections)", "emails"))
    total = max(times.values()) if len(times) == 4 else None
    print("  every task created, counted and notified: "
          + (f"{total:.2f} s (target <= 30 s)" if total else "NOT COMPLETE"))


def _counted(employees_db) -> int:
    # the counts employee_svc serves (its task_counts collection, "<org>:<employee>")
    rows = list(employees_db.task_counts.aggregate([
        {"$match": {"_id": {"$regex": f"^{ORG}:"}}}, {"$group": {"_id": None, "n": {"$sum": "$open"}}}]))
    return rows[0]["n"] if rows else 0


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
