"""CPU milliseconds per request, per process, of the two routes the
side-by-side comparison measures, for the running mesh (``make run``, with the
rate limits that comparison names) and a Flask peer on the same requests, in
one run. The peer and its seeder are not part of this repository: point
``SIDE_BY_SIDE_DIR`` at a copy (``seed_api.py`` and ``peer:app``).

Seeds a user, their org and a few tasks through the API (the side-by-side
seeder), starts the peer (gunicorn -w 2, the side-by-side venv), then for each
route runs wrk (-t2 -c20) for ``--seconds`` while reading every serving
process's CPU from /proc: the mesh's gateways and services (``shared.run``
processes, grouped by service), the peer's gunicorn processes, and the shared
RabbitMQ, Redis and SecantusDB. What each group spends idle (timers, other
work on the shared servers), measured for 3 s before each run, is subtracted.
Prints ms per request per group, the sum over the processes each side runs
itself (mesh: gateways + services + RabbitMQ; peer: its workers) and the
ratio mesh/peer, plus the sum with Redis and SecantusDB. Targets:
cached list <= 1.0x, one task <= 1.5x.

    .venv/bin/python bench/route_cpu.py [--seconds 8] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import CpuMeter, server_pids  # noqa: E402

SHARED_BENCH = Path(os.environ.get("SIDE_BY_SIDE_DIR", ROOT.parent / "shared" / "bench"))
PEER_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "peer-bench" / "venv"
PEER_PORT = 8101


def cmdlines() -> dict[int, str]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return found


def mesh_groups(cwd: Path) -> dict[str, list[int]]:
    """The service processes (``shared.run`` / ``nameko run``) started from this
    checkout, by service."""
    groups: dict[str, list[int]] = {}
    for pid, args in cmdlines().items():
        match = re.search(r"(?:shared\.run|nameko run) .*?([a-z_]+_svc)\.service", args)
        if not match:
            continue
        try:
            if Path(os.readlink(f"/proc/{pid}/cwd")) != cwd:
                continue
        except OSError:
            continue
        name = match.group(1).removesuffix("_svc")
        groups.setdefault("gateway" if name == "gateway" else name, []).append(pid)
    return groups


def idle_rate(meter: CpuMeter, seconds: float = 3.0) -> dict[str, float]:
    """CPU ms per second each group spends with no requests of ours (timers,
    and other work on the shared servers), subtracted from the figures."""
    meter.start()
    time.sleep(seconds)
    return {k: v / seconds for k, v in meter.per_request(1).items()}


def metered(meter: CpuMeter, url: str, token: str, seconds: float) -> tuple[int, dict]:
    idle = idle_rate(meter)
    meter.start()
    started = time.monotonic()
    n = wrk(url, token, seconds)
    elapsed = time.monotonic() - started
    return n, {k: max(0.0, v - idle[k] * elapsed / n) for k, v in meter.per_request(n).items()}


def wrk(url: str, token: str, seconds: float) -> int:
    out = subprocess.run(["wrk", "-t2", "-c20", f"-d{seconds:g}s", "-H",
                          f"Authorization: Bearer {token}", url],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"{url} answered non-2xx:\n{out}")
    return int(re.search(r"(\d+) requests in", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--url", default=os.environ.get("MESH_URL", "http://127.0.0.1:8000/api/v1"))
    args = parser.parse_args()
    seeded = subprocess.run([str(PEER_VENV / "bin" / "python"), str(SHARED_BENCH / "seed_api.py"),
                             args.url, "20"], capture_output=True, text=True, check=True).stdout
    env = dict(line.split("=", 1) for line in seeded.split())
    token, org, task = env["TOKEN"], env["ORG"], env["TASK"]
    peer = subprocess.Popen([str(PEER_VENV / "bin" / "gunicorn"), "-w", "2", "-b",
                             f"127.0.0.1:{PEER_PORT}", "peer:app"], cwd=SHARED_BENCH,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{PEER_PORT}/", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.2)
        peer_pids = [pid for pid, line in cmdlines().items()
                     if "gunicorn" in line and "peer:app" in line]
        servers = server_pids(int(os.environ.get("SECANTUS_PORT", "27017")))
        mesh = CpuMeter({**mesh_groups(ROOT), "rabbitmq": servers["rabbitmq"],
                         "redis": servers["redis"], "secantusdb": servers["secantusdb"]})
        peer_meter = CpuMeter({"peer": peer_pids, "redis": servers["redis"],
                               "secantusdb": servers["secantusdb"]})
        routes = {"cached list": f"/orgs/{org}/tasks?limit=50",
                  "one task": f"/orgs/{org}/tasks/{task}"}
        for path in routes.values():  # both sides warm (the caches filled) before measuring
            for base in (f"http://127.0.0.1:{PEER_PORT}/peer", args.url):
                requests.get(f"{base}{path}", headers={"Authorization": f"Bearer {token}"},
                             timeout=30).raise_for_status()
        for round_ in range(1, args.rounds + 1):
            for name, path in routes.items():
                n, p = metered(peer_meter, f"http://127.0.0.1:{PEER_PORT}/peer{path}", token,
                               args.seconds)
                m, q = metered(mesh, f"{args.url}{path}", token, args.seconds)
                own_mesh = sum(v for k, v in q.items() if k not in ("redis", "secantusdb"))
                all_mesh, all_peer = sum(q.values()), sum(p.values())
                print(f"round {round_} {name:<12} peer {n / args.seconds:7.0f} req/s  "
                      f"{CpuMeter.format(p)}")
                print(f"{'':<20} mesh {m / args.seconds:7.0f} req/s  {CpuMeter.format(q)}")
                print(f"{'':<20} own processes mesh/peer {own_mesh:.2f}/{p['peer']:.2f} ms = "
                      f"{own_mesh / p['peer']:.2f}x;  with Redis+SecantusDB "
                      f"{all_mesh:.2f}/{all_peer:.2f} ms = {all_mesh / all_peer:.2f}x", flush=True)
    finally:
        peer.terminate()
        peer.wait(10)


if __name__ == "__main__":
    main()
