"""Load: N concurrent authenticated clients for a fixed time on a realistic mix
(list tasks 50%, get task 20%, update status 15%, comment 10%, bulk of 50 5%),
against a mesh started here the way `make run` starts it (its own test
SecantusDB, vhost and database prefix). Prints requests/s, p50/p99 per
route, errors (any status >= 500, and 4xx other than the designed 429s),
then checks consistency: every comment a client got a 2xx for is stored
exactly once; every acknowledged status change is in its task's history
exactly once and each task ends in the last acknowledged status; every bulk
job finished with exactly one task per assignee; and every event was handled
(within a bounded wait every queue of the bench's vhost drains, no dead
letters, no event waiting to be sent in any service's database, one in-app
notification per bulk-assigned task). Prints the CPU milliseconds each
request cost every process (read from /proc over the run: gateways, services,
RabbitMQ, Redis, SecantusDB), the time SecantusDB's operations took per
collection and operation (its ``top``), each service's peak RSS, and exits 1 when there
were errors or a check failed.

    .venv/bin/python bench/load.py [--clients 100] [--seconds 60]

``--idle SECONDS`` sends no requests: after the mesh has settled (its start-up reads
done), it counts the MongoDB reads the idle mesh makes over SECONDS (SecantusDB's
``top``: per collection, reads of any kind and the ``find``s among them) and prints
them per minute, busiest collections first. ``--stalls DIR`` watches SecantusDB
for stalls (bench/stall_watch.py) and names what it was running in each.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import eventlet

eventlet.monkey_patch()

import pymongo  # noqa: E402
import requests  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.capacity import COSTS_FILE  # noqa: E402
from bench.common import CpuMeter, server_pids  # noqa: E402
from bench.stall_watch import StallWatch  # noqa: E402
from ops import cli  # noqa: E402
from ops import mesh as mesh_mod  # noqa: E402
from shared import deadletters  # noqa: E402
from shared.mongo import database_name  # noqa: E402
from task_svc.domain import bulk_task_id  # noqa: E402
from tests.conftest import _create_vhost, _delete_vhost  # noqa: E402

PASSWORD = "correct horse battery staple 9"
MIX = [("list_tasks", 50), ("get_task", 20), ("update_status", 15), ("comment", 10), ("bulk", 5)]
# how long the background may take after the run to finish what it caused (bulk jobs, their
# events): the fan-out runs at EVENT_CONCURRENCY per process, behind the users' requests
DRAIN_S = 300
NEXT_STATUS = {"todo": "in_progress", "in_progress": "done", "done": "in_progress"}


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class Client:
    def __init__(self, api, session, user, org_id, employee_id):
        self.api, self.session = api, session
        self.headers = {"Authorization": f"Bearer {user['access_token']}"}
        self.user_id = user["user"]["user_id"]
        self.org_id, self.employee_id = org_id, employee_id
        self.tasks: list[str] = []

    def call(self, method, path, **kwargs):
        return self.session.request(method, f"{self.api}{path}", headers=self.headers, timeout=30,
                                    **kwargs)


def setup(api, amqp: str, clients: int):
    """One org (enterprise plan), its owner, and `clients` managers with a task each
    (the plan and the managers' verified addresses set by operator RPC)."""
    session = requests.Session()

    def register(prefix):
        email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
        for _ in range(20):  # auth sheds sign-ups beyond its bcrypt slots: 503, Retry-After
            r = session.post(f"{api}/auth/register", json={"email": email, "password": PASSWORD,
                                                           "name": prefix}, timeout=30)
            if r.status_code != 503:
                break
            time.sleep(float(r.headers.get("Retry-After", 1)))
        r.raise_for_status()
        cli.rpc_call({"AMQP_URI": amqp}, "auth", "confirm_email", r.json()["user"]["user_id"])
        return {**r.json(), "email": email}

    owner = register("owner")
    auth = {"Authorization": f"Bearer {owner['access_token']}"}
    deadline = time.time() + 30
    while True:
        items = session.get(f"{api}/orgs", headers=auth, timeout=30).json().get("items")
        if items or time.time() > deadline:
            break
        time.sleep(0.1)
    org_id = items[0]["org_id"]
    cli.rpc_call({"AMQP_URI": amqp}, "organizations", "set_plan", org_id, "enterprise")
    pool = eventlet.GreenPool(20)
    users = list(pool.imap(lambda _: register("loader"), range(clients)))
    out = []
    for user in users:
        r = session.post(f"{api}/orgs/{org_id}/employees", headers=auth, timeout=30,
                         json={"email": user["email"], "role": "manager"})
        r.raise_for_status()
        client = Client(api, requests.Session(), user, org_id, r.json()["employee_id"])
        task = client.call("POST", f"/orgs/{org_id}/tasks",
                           json={"title": "warm-up", "assignee_id": client.employee_id}).json()
        client.tasks.append(task["task_id"])
        out.append(client)
    return org_id, owner, out


def run(clients, seconds, org_id):
    stats = defaultdict(list)
    errors = defaultdict(int)
    limited = defaultdict(int)
    error_kinds = Counter()  # (route, status or exception): how they failed
    writes = {"comments": [], "status": [], "bulk": []}
    assignees = [c.employee_id for c in clients]
    stop = time.monotonic() + seconds

    def act(client, kind):
        task_id = random.choice(client.tasks)
        if kind == "list_tasks":
            return client.call("GET", f"/orgs/{org_id}/tasks", params={"limit": 50}), None
        if kind == "get_task":
            return client.call("GET", f"/orgs/{org_id}/tasks/{task_id}"), None
        if kind == "update_status":
            got = client.call("GET", f"/orgs/{org_id}/tasks/{task_id}")
            if got.status_code != 200:  # the change's error (its problem's "status" is 504...)
                return got, None
            current = got.json()["status"]
            r = client.call("POST", f"/orgs/{org_id}/tasks/{task_id}/status",
                            json={"status": NEXT_STATUS[current]})
            return r, ("status", (task_id, current, NEXT_STATUS[current]))
        if kind == "comment":
            body = f"load {uuid.uuid4().hex}"
            r = client.call("POST", f"/orgs/{org_id}/tasks/{task_id}/comments", json={"body": body})
            return r, ("comments", (task_id, body))
        chosen = random.sample(assignees, min(50, len(assignees)))
        r = client.call("POST", f"/orgs/{org_id}/tasks/bulk", json={
            "assignee_ids": chosen, "task": {"title": f"bulk {uuid.uuid4().hex[:6]}"}})
        return r, ("bulk", chosen)

    def worker(client):
        kinds = [k for k, w in MIX for _ in range(w)]
        while time.monotonic() < stop:
            kind = random.choice(kinds)
            started = time.perf_counter()
            try:
                response, write = act(client, kind)
            except requests.RequestException as exc:
                errors[kind] += 1
                error_kinds[(kind, type(exc).__name__)] += 1
                continue
            stats[kind].append(time.perf_counter() - started)
            if response.status_code == 429:
                limited[kind] += 1
            elif response.status_code >= 400:
                errors[kind] += 1
                error_kinds[(kind, response.status_code)] += 1
            elif write:
                what, value = write
                writes[what].append({**response.json(), "assignee_ids": value} if what == "bulk"
                                    else value)

    started = time.monotonic()
    pool = eventlet.GreenPool(len(clients))
    for client in clients:
        pool.spawn(worker, client)
    pool.waitall()
    return stats, errors, error_kinds, limited, writes, time.monotonic() - started


def peak_rss(mesh) -> dict[str, int]:
    out = {}
    for name, procs in mesh.procs.items():
        for i, proc in enumerate(procs):
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM"):
                    out[f"{name}{'-' + str(i) if i else ''}"] = int(line.split()[1]) // 1024
    return out


def cpu_meter(mesh, db_proc) -> CpuMeter:
    """CPU of every process of the mesh, RabbitMQ, Redis and this run's SecantusDB."""
    shared = {k: v for k, v in server_pids().items() if k in ("rabbitmq", "redis")}
    return CpuMeter({**{name: [p.pid for p in procs] for name, procs in mesh.procs.items()},
                     **shared, "secantusdb": [db_proc.pid]}).start()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--idle", type=float, default=0,
                        help="no load: count an idle mesh's MongoDB reads over this many seconds")
    parser.add_argument("--stalls", type=Path, default=None, metavar="DIR",
                        help="watch SecantusDB for stalls over 2 s; py-spy dumps of them "
                             "into DIR (bench/stall_watch.py)")
    args = parser.parse_args()
    db_proc, mongo_uri = mesh_mod.start_secantus(":memory:")
    vhost = f"load-{uuid.uuid4().hex[:8]}"
    amqp = _create_vhost(vhost)
    port = mesh_mod.free_port()
    api = f"http://127.0.0.1:{port}/api/v1"
    tmp = Path(tempfile.mkdtemp(prefix="load-"))
    env = mesh_mod.base_env(mongo_uri, AMQP_URI=amqp, REDIS_URI="redis://127.0.0.1:6379/8",
                            GATEWAY_ADDRESS=f"127.0.0.1:{port}", MONGODB_DB_PREFIX="load",
                            BCRYPT_ROUNDS="4", RATE_LIMIT_AUTH="100000/60",
                            RATE_LIMIT_DEFAULT="100000/60", RATE_LIMIT_BULK="30/60",
                            RATE_LIMIT_PUBLIC="100000/60",
                            JWT_KEYS_DIR=str(tmp / "keys"), TASK_FILES_DIR=str(tmp / "files"),
                            SEARCH_INDEX_DIR=str(tmp / "search"),  # not a running mesh's
                            LOG_LEVEL="WARNING")
    mesh = mesh_mod.Mesh(env, tmp / "logs", gateways=int(os.environ.get("GATEWAYS", "2")))
    try:
        mesh.start()
        mesh_mod.wait_for(lambda: _healthy(api), 90, "the mesh")
        if args.idle:
            idle_reads(mongo_uri, args.idle)
            return
        org_id, owner, clients = setup(api, amqp, args.clients)
        print(f"{args.clients} clients, {args.seconds:g} s, mix {MIX}", flush=True)
        meter = cpu_meter(mesh, db_proc)
        db_top = DbTop(mongo_uri)
        watch = StallWatch(mongo_uri, db_proc.pid, args.stalls).start() if args.stalls else None
        stats, errors, error_kinds, limited, writes, elapsed = run(clients, args.seconds, org_id)
        total = sum(len(v) for v in stats.values())
        cpu = meter.per_request(total)  # the background work the run left is not counted
        print(f"\n{total} requests in {elapsed:.1f} s = {total / elapsed:.0f} req/s")
        print(CpuMeter.format(cpu), "(RabbitMQ and Redis are shared with other sessions)")
        COSTS_FILE.write_text(json.dumps({k: round(v, 3) for k, v in cpu.items()}, indent=1) + "\n")
        print(f"(written to {COSTS_FILE.relative_to(ROOT)} for bench/capacity.py)")
        for kind, _ in MIX:
            values = stats.get(kind, [])
            p50 = statistics.median(values) * 1000 if values else 0
            p99 = percentile(values, 0.99) * 1000
            print(f"  {kind:<14} n={len(values):>6}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"
                  f"  errors {errors[kind]}  429s {limited[kind]}")
        print(f"errors (not counting designed 429s): {sum(errors.values())}",
              dict(error_kinds) if error_kinds else "")
        failures = ["errors"] if sum(errors.values()) else []
        config = {"AMQP_URI": amqp, "MONGODB_URI": mongo_uri, "MONGODB_DB_PREFIX": "load"}
        failures += check_consistency(api, owner, org_id, writes, clients, config)
        # the background work a run leaves (fan-out, indexing, audit) counted too: batching
        # it moves CPU into the run's own window, which the figure above then charges
        print(CpuMeter.format(meter.per_request(total)),
              "(over the run, its drain and the checks' reads)")
        db_top.report(total)
        if watch is not None:
            watch.stop()
            watch.report()
        print("peak RSS (MiB):", peak_rss(mesh))
    finally:
        mesh.stop()
        mesh_mod.stop_process(db_proc)
        _delete_vhost(vhost)
    print(f"FAILED: {', '.join(failures)}" if failures else "all checks passed")
    sys.exit(1 if failures else 0)


class DbTop:
    """SecantusDB's own time (``top``) per collection and operation from here on,
    printed once the run's background work has drained. It is the time from an
    operation's start to its end, waits for the server's locks included: where
    operations queue, not only where its CPU goes (py-spy on its process says that)."""
    OPS = ("queries", "getmore", "insert", "update", "remove", "commands")

    def __init__(self, mongo_uri: str) -> None:
        self.client = pymongo.MongoClient(mongo_uri)
        self.before = self.read()

    def read(self) -> dict[tuple[str, str], tuple[int, int]]:
        return {(name, op): (c[op]["time"], c[op]["count"])
                for name, c in self.client.admin.command("top")["totals"].items()
                if isinstance(c, dict) for op in self.OPS if op in c}

    def report(self, requests_made: int, rows: int = 15) -> None:
        spent = []
        for key, (time_us, count) in self.read().items():
            t0, c0 = self.before.get(key, (0, 0))
            if count > c0:
                spent.append((time_us - t0, count - c0, key))
        total = sum(t for t, _, _ in spent) or 1
        spent.sort(reverse=True)
        print(f"SecantusDB operations' time (its top: lock waits included) over the run and "
              f"its drain: {total / 1e6:.1f} s, "
              f"{total / 1e3 / max(1, requests_made):.1f} ms per request; busiest:")
        for time_us, count, (name, op) in spent[:rows]:
            print(f"  {name + ' ' + op:<48} {100 * time_us / total:5.1f}%  {count:7d} ops"
                  f"  {time_us / 1e3 / count:7.2f} ms/op  {count / max(1, requests_made):6.2f}/request")
        by_name: Counter = Counter()  # a collection every service has (handled_events, outbox)
        for time_us, _, (name, _) in spent:
            by_name[name.partition(".")[2]] += time_us
        print("  per collection name, all services together: " + ", ".join(
            f"{name} {100 * t / total:.1f}%" for name, t in by_name.most_common(6)))
        self.client.close()


IDLE_SETTLE_S = 40  # past every service's start-up window (the outbox relay reads then)


def idle_reads(mongo_uri: str, seconds: float) -> None:
    """Print the MongoDB reads per minute of a mesh that serves nothing."""
    client = pymongo.MongoClient(mongo_uri)

    def top() -> dict[str, tuple[int, int]]:
        return {name: (c["readLock"]["count"], c["queries"]["count"])
                for name, c in client.admin.command("top")["totals"].items()
                if isinstance(c, dict) and "readLock" in c}

    time.sleep(IDLE_SETTLE_S)
    before = top()
    time.sleep(seconds)
    after = top()
    per_min = 60 / seconds
    rows = sorted(((name, (reads - before.get(name, (0, 0))[0]) * per_min,
                    (finds - before.get(name, (0, 0))[1]) * per_min)
                   for name, (reads, finds) in after.items()), key=lambda r: -r[1])
    total_reads, total_finds = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"idle mesh over {seconds:g} s (after {IDLE_SETTLE_S} s to settle): "
          f"{total_reads:.1f} MongoDB reads/min, {total_finds:.1f} of them finds")
    for name, reads, finds in rows:
        if reads:
            print(f"  {name:<40} {reads:7.1f} reads/min  {finds:7.1f} finds/min")
    client.close()


def _healthy(api):
    try:
        return requests.get(f"{api}/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def pages(api, path, headers, **params):
    """Every item of a paginated GET (``items`` / ``next_cursor``); a page answered
    503/504 (the mesh still busy with the run's background work) is asked again, a
    few times, as a client would."""
    while True:
        for _ in range(10):
            r = requests.get(f"{api}{path}", params=params, headers=headers, timeout=30)
            if r.status_code not in (503, 504):
                break
            time.sleep(1)
        r.raise_for_status()
        body = r.json()
        yield from body["items"]
        if not body.get("next_cursor"):
            return
        params = {**params, "cursor": body["next_cursor"]}


def settle(measure, ok, timeout, interval=1.0):
    """``measure()`` until ``ok`` of it, at most ``timeout`` s; the last measure."""
    deadline = time.monotonic() + timeout
    while not ok(value := measure()) and time.monotonic() < deadline:
        time.sleep(interval)
    return value


def check_consistency(api, owner, org_id, writes, clients, config) -> list[str]:
    """Print each figure; return the names of the checks that failed."""
    headers = {"Authorization": f"Bearer {owner['access_token']}"}
    org = f"/orgs/{org_id}"
    failed = []

    def report(name, ok, text):
        print(f"  [{'ok' if ok else 'FAIL'}] {text}")
        if not ok:
            failed.append(name)

    print("consistency:")
    # comments: each acknowledged body stored exactly once
    comments_ok = 0
    by_task = defaultdict(list)
    for task_id, body in writes["comments"]:
        by_task[task_id].append(body)
    for task_id, bodies in by_task.items():
        stored = [c["body"] for c in pages(api, f"{org}/tasks/{task_id}/comments", headers, limit=200)]
        comments_ok += sum(stored.count(b) == 1 for b in bodies)
    report("comments", comments_ok == len(writes["comments"]),
           f"comments acknowledged {len(writes['comments'])}, stored exactly once {comments_ok}")

    # status changes: each task's status history is exactly its acknowledged changes, in
    # order (one client changes one task, one request at a time), and it ends there
    acked = defaultdict(list)
    for task_id, old, new in writes["status"]:
        acked[task_id].append([old, new])
    history_ok = final_ok = in_history = 0
    for task_id, changes in acked.items():
        history = [[h["old"], h["new"]] for h in pages(api, f"{org}/tasks/{task_id}/history",
                                                       headers, limit=200) if h["field"] == "status"]
        in_history += len(history)
        history_ok += history == changes
        final = requests.get(f"{api}{org}/tasks/{task_id}", headers=headers, timeout=30).json()
        final_ok += final["status"] == changes[-1][1]
    report("status", history_ok == final_ok == len(acked),
           f"status changes acknowledged {len(writes['status'])} on {len(acked)} tasks, "
           f"{in_history} in their histories; tasks whose history is exactly the acknowledged "
           f"changes {history_ok}/{len(acked)}, ending in the last acknowledged status "
           f"{final_ok}/{len(acked)}")

    # bulk jobs: all finished, none with failed items
    def job_states():
        return {job["job_id"]: requests.get(f"{api}{org}/tasks/bulk/{job['job_id']}",
                                            headers=headers, timeout=30).json()
                for job in writes["bulk"]}
    jobs = settle(job_states, lambda states: all(j["status"] == "done" for j in states.values()),
                  DRAIN_S)
    pending = [job_id for job_id, j in jobs.items() if j["status"] != "done"]
    failed_items = sum(j["failed"] for j in jobs.values())
    report("bulk jobs", not pending and not failed_items,
           f"bulk jobs acknowledged {len(writes['bulk'])}, finished {len(jobs) - len(pending)}, "
           f"failed items {failed_items}")

    # every event handled: queues drained, no outbox entry pending, one in-app
    # notification per bulk-assigned task (grouped per job and person)
    expected = {(job["job_id"], employee_id) for job in writes["bulk"]
                for employee_id in job["assignee_ids"]}
    user_of = {c.employee_id: c.user_id for c in clients}
    mongo = pymongo.MongoClient(config["MONGODB_URI"])

    def backlog():
        queues = {q["name"]: q.get("messages", 0) for q in cli.list_queues(config)
                  if not q["name"].endswith(".dlq") and q.get("messages", 0)}
        # as each service's health counts it: its outbox and the events its documents carry
        outbox = {s: n for s in cli.SERVICES
                  if (n := cli.rpc_call(config, s, "health", timeout=30)
                      .get("outbox", {}).get("pending", "unknown"))}
        notified = defaultdict(list)
        for doc in mongo[database_name(config, "notifications")].notifications.find(
                {"kind": "task_assigned", "data.job_id": {"$in": list(jobs)}},
                {"user_id": 1, "tasks": 1}):
            for task in doc.get("tasks", []):
                notified[task["task_id"]].append(doc["user_id"])
        once = sum(notified.get(bulk_task_id(j, e)) == [user_of[e]] for j, e in expected)
        return queues, outbox, once

    def drained(value):
        return not value[0] and not value[1] and value[2] == len(expected)

    def steady():  # the management API's counts lag by up to 5 s: drained now and 6 s on
        value = backlog()
        if drained(value):
            time.sleep(6)
            value = backlog()
        return value

    started = time.monotonic()
    value = settle(steady, drained, DRAIN_S)
    queues, outbox, once = value
    waited = time.monotonic() - started
    report("queues", not queues, f"queues with messages after {waited:.0f} s: {len(queues)}"
           + (f" {queues}" if queues else ""))
    report("outbox", not outbox, "events waiting to be sent: "
           f"{sum(n for n in outbox.values() if isinstance(n, int))}"
           + (f" {outbox}" if outbox else ""))
    report("notifications", once == len(expected),
           f"bulk-assigned tasks {len(expected)}, with exactly one in-app notification for "
           f"their assignee {once}")
    mongo.close()

    dead = deadletters.list_dead_letters(config["AMQP_URI"], cli.dlq_handler_queues(config, None))
    report("dead letters", not dead, f"dead letters: {len(dead)}" + "".join(
        f"\n      {d['handler']} {d['event_type']} {d['error']}" for d in dead[:10]))

    # bulk tasks: per assignee, exactly one task per job that named them (after the
    # queues drained, so no cached list predates the last bulk chunk)
    counts = defaultdict(int)
    for employee_id in {e for _, e in expected}:
        for task in pages(api, f"{org}/tasks", headers, assignee_id=employee_id, limit=200):
            if task.get("job_id") in jobs:
                counts[(task["job_id"], employee_id)] += 1
    exactly_once = sum(counts.get(pair) == 1 for pair in expected)
    extra = sum(n for pair, n in counts.items() if pair not in expected)
    report("bulk tasks", exactly_once == len(expected) and not extra,
           f"bulk tasks expected {len(expected)}, stored exactly once {exactly_once}, "
           f"missing {sum(pair not in counts for pair in expected)}, duplicated "
           f"{sum(counts.get(pair, 0) > 1 for pair in expected)}, for someone not named {extra}")
    return failed


if __name__ == "__main__":
    main()
