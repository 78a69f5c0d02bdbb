"""Login storm: does bcrypt starve the auth service's event loop?

Starts SecantusDB (in memory), the auth service and the gateway (two
``nameko run`` processes, own RabbitMQ vhost, real Redis), registers a few
users, then:

  (idle)  one client polls a cheap route for IDLE seconds, nothing else running;
  (storm) 50 clients log in as fast as they can for STORM seconds at the
          configured bcrypt cost, while the same client polls the same route.

The probe is ``GET /api/v1/auth/jwks.json``: one RPC answered by the auth
service itself (where bcrypt runs), through the gateway. ``/health`` needs all
seven services; with only auth + gateway up it would measure the time-outs of
the missing ones, not the hub. Prints logins/s and the probe's p50/p99 idle and
under the storm, and their ratio (target: storm p99 <= 5x idle p99).

    .venv/bin/python bench/auth_login.py [--clients 50] [--storm 20] [--idle 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ops import mesh  # noqa: E402

MGMT = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")
PASSWORD = "bench password 123"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def probe(url: str, stop: threading.Event, out: list[float]) -> None:
    session = requests.Session()
    while not stop.is_set():
        started = time.perf_counter()
        answer = session.get(url, timeout=30)
        out.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
        time.sleep(0.02)


def storm(base: str, emails: list[str], stop: threading.Event, counts: list[int], i: int,
          errors: list[int]) -> None:
    session = requests.Session()
    while not stop.is_set():
        answer = session.post(f"{base}/auth/login", timeout=60,
                              json={"email": emails[i % len(emails)], "password": PASSWORD})
        if answer.status_code == 200:
            counts[i] += 1
        else:
            errors.append(answer.status_code)
            if "Retry-After" in answer.headers:    # a well-behaved client backs off
                time.sleep(float(answer.headers["Retry-After"]))


def run_probe(url: str, seconds: float, during=None) -> list[float]:
    stop, samples = threading.Event(), []
    thread = threading.Thread(target=probe, args=(url, stop, samples))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return samples


def report(name: str, samples: list[float]) -> tuple[float, float]:
    p50, p99 = statistics.median(samples) * 1000, percentile(samples, 0.99) * 1000
    print(f"{name:<34} {len(samples):5d} probes   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    return p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--storm", type=float, default=20)
    parser.add_argument("--idle", type=float, default=5)
    parser.add_argument("--users", type=int, default=5)
    args = parser.parse_args()

    vhost = f"bench-auth-{uuid.uuid4().hex[:8]}"
    requests.put(f"{MGMT}/api/vhosts/{vhost}", timeout=10).raise_for_status()
    requests.put(f"{MGMT}/api/permissions/{vhost}/guest", timeout=10,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    mongo, mongo_uri = mesh.start_secantus(":memory:")
    port = mesh.free_port()
    env = mesh.base_env(mongo_uri, AMQP_URI=f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}",
                        GATEWAY_ADDRESS=f"127.0.0.1:{port}", LOG_LEVEL="WARNING",
                        RATE_LIMIT_AUTH="1000000/60",
                        RATE_LIMIT_PUBLIC="1000000/60", MONGODB_DB_PREFIX=f"bench{vhost[-8:]}")
    rounds = int(env.get("BCRYPT_ROUNDS", 12))
    procs = [subprocess.Popen([str(mesh.VENV_BIN / "nameko"), "run", "--config",
                               str(ROOT / "config.yaml"), module], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
             for module in ("auth_svc.service", "gateway_svc.service")]
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        mesh.wait_for(lambda: mesh.port_open("127.0.0.1", port), 60, "gateway")
        mesh.wait_for(lambda: requests.get(f"{base}/auth/jwks.json", timeout=5).status_code
                      == 200, 60, "auth service")
        emails = [f"bench{i}.{uuid.uuid4().hex[:6]}@example.com" for i in range(args.users)]
        for email in emails:
            answer = requests.post(f"{base}/auth/register", timeout=60, json={
                "email": email, "password": PASSWORD, "name": "Bench"})
            assert answer.status_code == 201, answer.text

        print(f"bcrypt cost {rounds}; {args.clients} login clients for {args.storm:g} s; "
              f"probe GET /auth/jwks.json; 2-core machine shared by clients and servers\n")
        run_probe(f"{base}/auth/jwks.json", 1)                      # warm up
        _, idle_p99 = report("(idle)  probe, no load", run_probe(f"{base}/auth/jwks.json",
                                                                 args.idle))
        stop, counts, errors = threading.Event(), [0] * args.clients, []
        threads = [threading.Thread(target=storm, args=(base, emails, stop, counts, i, errors))
                   for i in range(args.clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        samples = run_probe(f"{base}/auth/jwks.json", args.storm)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        _, storm_p99 = report("(storm) probe, during logins", samples)
        print(f"\nlogins: {sum(counts)} in {elapsed:.1f} s = {sum(counts) / elapsed:.1f}/s "
              f"({len(errors)} non-200 answers: {sorted(set(errors))})")
        print(f"storm p99 / idle p99 = {storm_p99 / idle_p99:.2f} (target <= 5)")
    finally:
        for proc in procs:
            mesh.stop_process(proc)
        mesh.stop_process(mongo)
        requests.delete(f"{MGMT}/api/vhosts/{vhost}", timeout=10)


if __name__ == "__main__":
    main()
