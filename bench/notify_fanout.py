"""Notification fan-out: N ``task.assigned`` events published at once.

Starts SecantusDB (in memory), a RabbitMQ vhost of its own, the real Redis, a
local SMTP sink (aiosmtpd, tests/smtp_sink.py) and the notifications service
(in this process), puts USERS people in its recipient directory, publishes
EVENTS ``task.assigned`` envelopes on ``tasks.events`` in one go, and times
until every in-app notification is stored and every email accepted by the
sink. The floor, measured in the same run against the same sink: 1,000 of the
same multipart emails sent from one plain smtplib loop on one connection.

Prints rates and the ratio per message to the floor (target: within 2x), and
how many SMTP connections the service opened (it reuses them: a small pool).
Beside the rates, figures this shared machine's load moves less: CPU
milliseconds per email of this process (the service; the floor's loop), the
sink and SecantusDB (from /proc), and SecantusDB's commands per email by
collection (its ``top``).

    .venv/bin/python bench/notify_fanout.py [--events 10000] [--users 1000]
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()  # noqa: E402

import argparse  # noqa: E402
import os  # noqa: E402
import smtplib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import requests  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kombu import Connection  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.events import get_event_exchange  # noqa: E402

from bench.common import CpuMeter  # noqa: E402
from notify_svc.channels import build_message  # noqa: E402
from notify_svc.service import NotificationService  # noqa: E402
from ops import mesh  # noqa: E402
from shared.events import make_envelope  # noqa: E402
from shared.mongo import Mongo  # noqa: E402
from tests.smtp_sink import SmtpSink  # noqa: E402

MGMT = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
AUTH = ("guest", "guest")
DEADLINE_S = 150


def emails_in(sink: SmtpSink) -> int:
    """Messages the sink has written (a cheap count: this loop shares the
    service's process, so a slow poll would be charged to the service)."""
    with os.scandir(sink.dir) as entries:
        return sum(1 for entry in entries if entry.name.endswith(".eml"))


def floor(sink: SmtpSink, count: int) -> float:
    """Seconds for ``count`` emails from one plain smtplib loop, one connection."""
    conn = smtplib.SMTP("127.0.0.1", sink.port)
    started = time.perf_counter()
    for i in range(count):
        to = f"floor{i}@example.com"  # the service's own message builder, as it sends
        conn.sendmail("bench@workforce.local", [to], build_message(
            "bench@workforce.local", to, f"New task: floor {i}", "A task was assigned.\n",
            "<p>A task was assigned.</p>"))
    elapsed = time.perf_counter() - started
    conn.quit()
    return elapsed


def top(client) -> dict[str, int]:
    """SecantusDB's commands so far per collection (``top``'s totals)."""
    return {name: c["total"]["count"] for name, c in client.admin.command("top")["totals"].items()
            if isinstance(c, dict) and "total" in c}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--floor", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8, help="EVENT_CONCURRENCY (config.yaml: 8)")
    parser.add_argument("--prefetch", type=int, default=200,
                        help="EVENT_BATCH_PREFETCH (config.yaml: 200): what a batch can find waiting")
    args = parser.parse_args()

    secantus, mongo_uri = mesh.start_secantus(":memory:")
    vhost = f"bench-{uuid.uuid4().hex[:8]}"
    requests.put(f"{MGMT}/api/vhosts/{vhost}", auth=AUTH, timeout=10).raise_for_status()
    requests.put(f"{MGMT}/api/permissions/{vhost}/guest", auth=AUTH, timeout=10,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    sink = SmtpSink().start()
    container = None
    pids = {"service": [os.getpid()], "sink": [sink.proc.pid], "SecantusDB": [secantus.pid]}
    try:
        meter = CpuMeter(pids).start()
        floor_s = floor(sink, args.floor)
        floor_ms = meter.per_request(args.floor)  # per email of the floor
        floor_conns = sink.connections()
        floor_files = len(sink.messages())
        config = {"AMQP_URI": f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}",
                  "REDIS_URI": os.environ.get("REDIS_URI", "redis://127.0.0.1:6379/9"),
                  "MONGODB_URI": mongo_uri, "MONGODB_DB_PREFIX": f"b{uuid.uuid4().hex[:8]}",
                  "SMTP_URL": sink.url, "SMTP_POOL_SIZE": 4, "max_workers": args.workers,
                  "EVENT_CONCURRENCY": args.concurrency, "EVENT_BATCH_PREFETCH": args.prefetch,
                  "RPC_TIMEOUT": 2, "PUBLIC_URL": "https://app.bench"}
        container = ServiceContainer(NotificationService, config)
        container.start()
        store = next(d for d in container.dependencies if isinstance(d, Mongo)).store
        db = store.db
        # in-app items counted as the store writes them: a `count` is a scan of the
        # whole collection on SecantusDB, under its storage lock (polled twice a
        # second, it took 7% of SecantusDB's CPU and held up the service's writes)
        stored_ids: set[str] = set()
        add_notifications = store.add_notifications

        def counting(docs):
            new = add_notifications(docs)
            stored_ids.update(new)
            return new

        store.add_notifications = counting
        users = [f"u{i}-{uuid.uuid4().hex[:6]}" for i in range(args.users)]
        db.recipients.insert_many([{"_id": u, "email": f"{u}@example.com", "name": u}
                                   for u in users])
        exchange = get_event_exchange("tasks", config)
        connection = Connection(config["AMQP_URI"])
        producer = connection.Producer(serializer="json")
        envelopes = []
        for i in range(args.events):
            envelope = make_envelope("task.assigned", {
                "org_id": "bench", "task_id": f"t{i}", "title": f"Task {i}", "assignee_id": "e",
                "assignee_user_id": users[i % len(users)], "assigned_by_user_id": "boss",
                "due_at": None, "priority": "normal", "job_id": None},
                producer="tasks", org_id="bench")
            envelopes.append(envelope)
        top_before, meter = top(db.client), CpuMeter(pids).start()
        started = time.perf_counter()
        for envelope in envelopes:
            producer.publish(envelope, exchange=exchange, routing_key="task.assigned",
                             declare=[exchange], delivery_mode=2)
        connection.release()
        published_s = time.perf_counter() - started
        stored_s = sent_s = None
        target_files = floor_files + args.events
        while time.perf_counter() - started < DEADLINE_S and (stored_s is None or sent_s is None):
            eventlet.sleep(0.5)
            if stored_s is None and len(stored_ids) >= args.events:
                stored_s = time.perf_counter() - started
            if sent_s is None and emails_in(sink) >= target_files:
                sent_s = time.perf_counter() - started
        top_after = top(db.client)
        stored = db.notifications.estimated_document_count()
        emails = emails_in(sink) - floor_files
        per = max(1, emails)
        run_ms = meter.per_request(per)
        elapsed_in_app = stored_s or (time.perf_counter() - started)
        elapsed_mail = sent_s or (time.perf_counter() - started)
        floor_rate = args.floor / floor_s
        mail_rate = emails / elapsed_mail
        print(f"events published:          {args.events} in {published_s:.2f} s "
              f"({args.events / published_s:,.0f}/s)")
        print(f"in-app stored:             {stored} in {elapsed_in_app:.2f} s "
              f"({stored / elapsed_in_app:,.0f}/s)")
        print(f"emails accepted by sink:   {emails} in {elapsed_mail:.2f} s ({mail_rate:,.0f}/s)")
        print(f"floor (plain smtplib loop): {args.floor} in {floor_s:.2f} s ({floor_rate:,.0f}/s), "
              f"{floor_conns} connection")
        print(f"per-message time vs floor: {floor_rate / mail_rate:.2f}x (target <= 2x)")
        print(f"SMTP connections opened by the service: {sink.connections() - floor_conns} "
              f"for {emails} emails")
        print("CPU ms per email:          " + ", ".join(
            f"{name} {ms:.2f}" for name, ms in run_ms.items())
            + f" (floor: its loop {floor_ms['service']:.2f}, sink {floor_ms['sink']:.2f})")
        ops = sorted(((name, count - top_before.get(name, 0)) for name, count in top_after.items()
                      if count > top_before.get(name, 0)), key=lambda r: -r[1])
        print("SecantusDB commands per 100 emails: " + ", ".join(
            f"{name.rpartition('.')[2]} {100 * n / per:.1f}" for name, n in ops[:8]))
        if sent_s is None or stored_s is None:
            print(f"NOT COMPLETE within {DEADLINE_S} s")
    finally:
        if container is not None:
            container.stop()
        sink.stop()
        requests.delete(f"{MGMT}/api/vhosts/{vhost}", auth=AUTH, timeout=10)
        mesh.stop_process(secantus)


if __name__ == "__main__":
    main()
