"""What one hop costs, measured in one run on the same broker:

  (a) a raw kombu request/reply round trip (the floor)
  (b) a nameko RPC call (standalone client -> service)
  (c) an HTTP GET through a gateway built on gateway_svc.http that makes one RPC
  (d) an HTTP GET answered from the gateway's Redis cache (no RPC), the way the
      real cached routes are (``cached=CachedRoute``, as GET /orgs/<org_id>/tasks):
      a real access token, its blacklist keys, the rate limit, the caller's cached
      membership and the answer in the one Redis call of gateway_svc.checks, and
      the hit answered before any worker starts (bench/bench_services.py). (c) is
      anonymous and has no rate limit, so (d) does more checks than (c).
  (e) the floor of (c) and (d): an HTTP GET that eventlet's WSGI server, as the
      gateway runs it (gateway_svc.http.NoDelayProtocol), answers with a constant
      from a bare WSGI function (no nameko, no werkzeug, no Redis). Each gateway
      process serves on one core, so (e)/(c) is as high as d/c can go.

Prints p50/p99 latency (sequential calls), throughput (CONCURRENCY client
threads) and the CPU milliseconds each call cost the serving processes (read
from /proc over the throughput run: the echo server or the nameko services
process, RabbitMQ, Redis; the clients are not counted; what each spends
idle in the 2 s before, as a shared broker serves others too, is taken
off) for each, and the
ratios b/a, c/a (p50), d/c and e/c (throughput). Targets: c/a <= 2.5 at p50;
d >= 4x the throughput of c.

    .venv/bin/python bench/rpc_roundtrip.py [--calls 1000] [--seconds 5]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from kombu import Connection, Consumer, Exchange, Producer, Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import CpuMeter, server_pids  # noqa: E402
from employee_svc.contract import membership_key  # noqa: E402
from ops import mesh  # noqa: E402
from shared.redis import make_cache_client  # noqa: E402
from tests.tokens import TEST_PRIVATE_KEYS_PEM, access_token  # noqa: E402

AMQP = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672//").replace("pyamqp", "amqp")
REDIS_URI = os.environ.get("REDIS_URI", "redis://127.0.0.1:6379/0")
CONCURRENCY = 16
IDLE_SECONDS = 2.0

KOMBU_SERVER = r"""
import sys
from kombu import Connection, Consumer, Producer, Queue
conn = Connection(sys.argv[1])
queue = Queue("bench-kombu-rpc", auto_delete=True)
producer = Producer(conn.channel())
def on_request(body, message):
    producer.publish(body, routing_key=message.properties["reply_to"],
                     correlation_id=message.properties["correlation_id"], serializer="json")
    message.ack()
with Consumer(conn.channel(), queues=[queue], callbacks=[on_request], accept=["json"]):
    print("ready", flush=True)
    while True:
        conn.drain_events()
"""

WSGI_SERVER = r"""
import sys
import eventlet
eventlet.monkey_patch()
from eventlet import wsgi
sys.path.insert(0, sys.argv[2])
from gateway_svc.http import NoDelayProtocol
BODY = b'{"value": "pong"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
sock = eventlet.listen(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
wsgi.server(sock, app, protocol=NoDelayProtocol, log_output=False)
"""


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(name: str, latencies: list[float], run: tuple[float, dict[str, float]]) -> dict:
    rate, cpu = run
    row = {"name": name, "p50": statistics.median(latencies) * 1000,
           "p99": percentile(latencies, 0.99) * 1000, "rps": rate, "cpu": cpu}
    print(f"{name:<44} p50 {row['p50']:7.2f} ms   p99 {row['p99']:7.2f} ms   "
          f"{row['rps']:8.0f} calls/s", flush=True)
    print(f"{'':<44} {CpuMeter.format(cpu)}", flush=True)
    return row


def timed(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def throughput(make_caller, seconds: float, meter: CpuMeter) -> tuple[float, dict[str, float]]:
    """Calls/s with CONCURRENCY threads, each with its own client, and the CPU ms
    per call of the metered processes."""
    counts = [0] * CONCURRENCY

    def work(i):
        call = make_caller()
        while time.monotonic() < stop:
            call()
            counts[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(CONCURRENCY)]
    meter.start()  # what the processes spend idle (RabbitMQ and Redis serve others too)
    time.sleep(IDLE_SECONDS)
    idle = meter.per_request(1)
    meter.start()
    started = time.monotonic()
    stop = started + seconds
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    n = sum(counts)
    return n / elapsed, {k: max(0.0, v - idle[k] * elapsed / IDLE_SECONDS / n)
                         for k, v in meter.per_request(n).items()}


class KombuClient:
    def __init__(self):
        self.conn = Connection(AMQP)
        self.channel = self.conn.channel()
        self.reply_queue = Queue(f"bench-reply-{uuid.uuid4().hex}", exclusive=True,
                                 auto_delete=True)
        self.producer = Producer(self.channel)
        self.replies: dict = {}
        self.consumer = Consumer(self.channel, queues=[self.reply_queue], accept=["json"],
                                 callbacks=[self._on_reply], no_ack=True)
        self.consumer.consume()

    def _on_reply(self, body, message):
        self.replies[message.properties["correlation_id"]] = body

    def __call__(self):
        cid = uuid.uuid4().hex
        self.producer.publish({"value": "ping"}, routing_key="bench-kombu-rpc",
                              exchange=Exchange(""), reply_to=self.reply_queue.name,
                              correlation_id=cid, serializer="json")
        while cid not in self.replies:
            self.conn.drain_events(timeout=5)
        return self.replies.pop(cid)


def nameko_client():
    from nameko.standalone.rpc import ServiceRpcProxy

    proxy = ServiceRpcProxy("bench_echo", {"AMQP_URI": AMQP}).start()
    return lambda: proxy.echo("pong")


def http_client(port: int, path: str, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call():
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body
        return body

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    port, floor_port = mesh.free_port(), mesh.free_port()
    # (d)'s caller: a real access token and the active membership the employees service
    # caches, and a default rate limit no run reaches (every call is counted, none refused;
    # the limit over an hour: GCRA needs an emission interval of at least 1 ms)
    run = uuid.uuid4().hex[:8]
    user_id, org_id = f"bench-user-{run}", f"bench-org-{run}"
    token_config = {"REDIS_URI": REDIS_URI, "JWT_PRIVATE_KEYS": TEST_PRIVATE_KEYS_PEM}
    token, _ = access_token(token_config, user_id, ttl=3600)
    cache = make_cache_client({"REDIS_URI": REDIS_URI,
                               "REDIS_CACHE_URI": os.environ.get("REDIS_CACHE_URI", "")})
    member = membership_key(org_id, user_id)
    cache.set(member, json.dumps({"org_id": org_id, "user_id": user_id, "employee_id": "bench",
                                  "role": "member", "status": "active", "permissions": [],
                                  "teams": {}}), ex=3600)
    cached_path, auth = f"/api/v1/orgs/{org_id}/bench/cached", {"Authorization": f"Bearer {token}"}
    env = mesh.base_env("mongodb://unused", AMQP_URI=AMQP, GATEWAY_ADDRESS=f"127.0.0.1:{port}",
                        LOG_LEVEL="WARNING", MAX_WORKERS="40", REDIS_URI=REDIS_URI,
                        RATE_LIMIT_DEFAULT="1000000/3600")
    procs = [
        subprocess.Popen([sys.executable, "-c", KOMBU_SERVER, AMQP], stdout=subprocess.PIPE,
                         start_new_session=True),
        subprocess.Popen([str(mesh.VENV_BIN / "nameko"), "run", "--config",
                          str(ROOT / "config.yaml"), "bench.bench_services"], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True),
        subprocess.Popen([sys.executable, "-c", WSGI_SERVER, str(floor_port), str(ROOT)],
                         stdout=subprocess.PIPE, start_new_session=True),
    ]
    try:
        procs[0].stdout.readline()
        procs[2].stdout.readline()
        mesh.wait_for(lambda: mesh.port_open("127.0.0.1", port), 30, "bench gateway")
        time.sleep(1)  # let the RPC consumers attach
        for warm in (KombuClient(), nameko_client(), http_client(port, "/api/v1/bench/rpc"),
                     http_client(port, cached_path, auth), http_client(floor_port, "/")):
            timed(warm, 50)
        print(f"{args.calls} sequential calls each; throughput with {CONCURRENCY} client "
              f"threads for {args.seconds:g} s; 2-core machine shared by client and servers\n")
        shared = {k: v for k, v in server_pids().items() if k in ("rabbitmq", "redis")}
        kombu_meter = CpuMeter({"echo server": [procs[0].pid], **shared})
        nameko_meter = CpuMeter({"services": [procs[1].pid], **shared})
        a = summarise("(a) raw kombu request/reply", timed(KombuClient(), args.calls),
                      throughput(KombuClient, args.seconds, kombu_meter))
        b = summarise("(b) nameko RPC", timed(nameko_client(), args.calls),
                      throughput(nameko_client, args.seconds, nameko_meter))
        c = summarise("(c) HTTP GET via gateway, one RPC",
                      timed(http_client(port, "/api/v1/bench/rpc"), args.calls),
                      throughput(lambda: http_client(port, "/api/v1/bench/rpc"), args.seconds,
                                 nameko_meter))
        d = summarise("(d) HTTP GET via gateway, Redis cache",
                      timed(http_client(port, cached_path, auth), args.calls),
                      throughput(lambda: http_client(port, cached_path, auth), args.seconds,
                                 nameko_meter))
        e = summarise("(e) HTTP GET, eventlet's WSGI server alone",
                      timed(http_client(floor_port, "/"), args.calls),
                      throughput(lambda: http_client(floor_port, "/"), args.seconds,
                                 CpuMeter({"wsgi server": [procs[2].pid], **shared})))
        print(f"\nb/a p50 {b['p50'] / a['p50']:.2f}   c/a p50 {c['p50'] / a['p50']:.2f} "
              f"(target <= 2.5)   d/c throughput {d['rps'] / c['rps']:.2f} (target >= 4; "
              f"e/c {e['rps'] / c['rps']:.2f}: as high as d/c can go)")
    finally:
        for proc in procs:
            mesh.stop_process(proc)
        cache.delete(member)


if __name__ == "__main__":
    main()
