"""What quorum queues cost on one node, against classic, in the same run.

Starts a private RabbitMQ node (tests/e2e/servers.py PrivateRabbit: own ports and
data directory), and for each queue type declares an event queue with the
arguments shared.events gives it (``queue_arguments``: quorum adds
``x-queue-type``), publishes MESSAGES persistent event-sized messages with
publisher confirms (as shared.events' Publisher does), and consumes them with
manual acks and nameko's prefetch (10), as a handler's queue consumer does.
The handler itself does nothing: its MongoDB work is the same for both types,
so what differs is the broker's. Rounds alternate classic/quorum to spread
machine noise.

Prints msgs/s (publish+consume) and the broker's CPU ms per message (its
beam.smp, user + system, from /proc), and quorum/classic ratios.

    .venv/bin/python bench/quorum_cost.py [--messages 5000] [--rounds 3]
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

from kombu import Connection, Consumer, Exchange, Producer, Queue  # noqa: E402

from bench.common import cpu_seconds  # noqa: E402
from shared.events import queue_arguments  # noqa: E402
from tests.e2e.servers import PrivateRabbit  # noqa: E402

BODY = json.dumps({"id": "x" * 32, "type": "task.assigned", "org_id": "o" * 24,
                   "data": {"task_id": "t" * 24, "assignee_id": "e" * 24,
                            "title": "A task of an ordinary length", "due": None}})


def beam_pid(node: str) -> int:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                program = f.read().split(b"\0", 1)[0].decode(errors="replace")
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if program.endswith("beam.smp") and f"RABBITMQ_NODENAME={node}".encode() in environ:
            return int(entry)
    raise RuntimeError(f"no beam.smp for {node}")


def one_round(uri: str, queue_type: str, messages: int, pid: int) -> tuple[float, float]:
    """(msgs/s, broker CPU ms per message) for one queue of ``queue_type``."""
    exchange = Exchange("bench.events", type="topic", durable=True)
    name = f"bench-{queue_type}-{uuid.uuid4().hex[:6]}"
    queue = Queue(name, exchange=exchange, routing_key="task.#", durable=True,
                  queue_arguments=queue_arguments(queue_type))
    with Connection(uri, transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        queue(channel).declare()
        producer = Producer(channel, exchange=exchange)
        got = 0

        def on_message(body, message):
            nonlocal got
            got += 1
            message.ack()

        consumer_channel = conn.channel()
        consumer_channel.basic_qos(0, 10, False)
        cpu_before, started = cpu_seconds(pid), time.perf_counter()
        for _ in range(messages):
            producer.publish(BODY, routing_key="task.assigned", delivery_mode=2,
                             content_type="application/json")
        with Consumer(consumer_channel, [queue], callbacks=[on_message], accept=["json"]):
            deadline = time.monotonic() + 300
            while got < messages and time.monotonic() < deadline:
                conn.drain_events(timeout=5)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
        if got < messages:
            raise RuntimeError(f"{queue_type}: {got} of {messages} consumed")
        queue(channel).delete()
    return messages / elapsed, cpu * 1000 / messages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rabbit = PrivateRabbit("qcost")
    rabbit.start()
    try:
        pid = beam_pid(rabbit.node)
        one_round(rabbit.uri, "classic", 200, pid)  # warm up both paths
        one_round(rabbit.uri, "quorum", 200, pid)
        results: dict[str, list[tuple[float, float]]] = {"classic": [], "quorum": []}
        for _ in range(args.rounds):
            for queue_type in ("classic", "quorum"):
                results[queue_type].append(one_round(rabbit.uri, queue_type, args.messages, pid))
    finally:
        rabbit.cleanup()
    medians = {}
    for queue_type, rows in results.items():
        rate = statistics.median(r for r, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        medians[queue_type] = (rate, cpu)
        print(f"{queue_type:8s} {rate:8.0f} msgs/s  broker CPU {cpu:.3f} ms/msg  "
              f"(rounds: {', '.join(f'{r:.0f}/s {c:.3f} ms' for r, c in rows)})")
    (c_rate, c_cpu), (q_rate, q_cpu) = medians["classic"], medians["quorum"]
    print(f"quorum/classic: throughput {q_rate / c_rate:.2f}x, broker CPU per message "
          f"{q_cpu / c_cpu:.2f}x ({args.messages} messages x {args.rounds} rounds, "
          "publisher confirms, persistent, prefetch 10)")


if __name__ == "__main__":
    main()
