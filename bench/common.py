"""What the benchmarks share: a private SecantusDB and RabbitMQ vhost, the
services as separate ``nameko run`` processes (as in production), cleanup."""
from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import uuid

import requests

from shared import mesh

MGMT = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
AUTH = ("guest", "guest")


@contextlib.contextmanager
def environment(services: list[str], **env_overrides: str):
    """Yields ``(config, mongo_uri)`` with ``services`` (``module:Class`` or
    ``package.service``) running as processes; everything is removed after."""
    vhost = f"bench-{uuid.uuid4().hex[:8]}"
    requests.put(f"{MGMT}/api/vhosts/{vhost}", auth=AUTH, timeout=10).raise_for_status()
    requests.put(f"{MGMT}/api/permissions/{vhost}/guest", auth=AUTH, timeout=10,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    db_proc, mongo_uri = mesh.start_secantus(":memory:")
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    config = {"AMQP_URI": f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}",
              "REDIS_URI": os.environ.get("REDIS_URI", "redis://127.0.0.1:6379/0"),
              "MONGODB_URI": mongo_uri, "MONGODB_DB_PREFIX": prefix, "env": env_overrides}
    try:
        with running(config, services):
            yield config, mongo_uri
    finally:
        mesh.stop_process(db_proc)
        requests.delete(f"{MGMT}/api/vhosts/{vhost}", auth=AUTH, timeout=10)


@contextlib.contextmanager
def running(config: dict, services: list[str]):
    """``services`` as ``nameko run`` processes on ``config``'s servers, logs in var/log."""
    env = mesh.base_env(config["MONGODB_URI"], AMQP_URI=config["AMQP_URI"],
                        REDIS_URI=config["REDIS_URI"], MONGODB_DB_PREFIX=config["MONGODB_DB_PREFIX"],
                        LOG_LEVEL="WARNING", **config.get("env", {}))
    log_dir = mesh.ROOT / "var" / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        for target in services:
            log = open(log_dir / f"bench-{target.replace(':', '-')}.log", "ab")
            procs.append(subprocess.Popen(
                [str(mesh.VENV_BIN / "nameko"), "run", "--config", str(mesh.ROOT / "config.yaml"),
                 target], cwd=mesh.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        yield procs
    finally:
        for proc in procs:
            mesh.stop_process(proc)


wait = mesh.wait_for  # poll until truthy, bounded


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def cpu_seconds(pid: int) -> float:
    """CPU (user + system, every thread) a process has used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(secantus_port: int | None = None) -> dict[str, list[int]]:
    """The local RabbitMQ, Redis and SecantusDB (only the one on ``secantus_port``
    if given) processes, read from /proc; shared servers count others' work too."""
    found: dict[str, list[int]] = {"rabbitmq": [], "redis": [], "secantusdb": []}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        program = args.split(" ", 1)[0]
        if program.endswith("beam.smp"):
            found["rabbitmq"].append(int(entry))
        elif program.startswith("redis-server"):
            found["redis"].append(int(entry))
        elif "secantusd" in args and (secantus_port is None
                                      or f"--port {secantus_port} " in f"{args} "):
            found["secantusdb"].append(int(entry))
    return found


class CpuMeter:
    """CPU milliseconds per request, per group of processes: ``start()``, make
    ``n`` requests, then ``per_request(n)`` -> ``{group: ms}`` (a figure that
    machine noise moves far less than latency)."""

    def __init__(self, groups: dict[str, list[int]]):
        self.groups = {name: pids for name, pids in groups.items() if pids}
        self._before: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        totals = {}
        for name, pids in self.groups.items():
            total = 0.0
            for pid in pids:
                with contextlib.suppress(OSError):
                    total += cpu_seconds(pid)
            totals[name] = total
        return totals

    def start(self) -> "CpuMeter":
        self._before = self._read()
        return self

    def per_request(self, requests_made: int) -> dict[str, float]:
        after = self._read()
        return {name: (after[name] - self._before[name]) * 1000 / max(1, requests_made)
                for name in self.groups}

    @staticmethod
    def format(figures: dict[str, float]) -> str:
        parts = [f"{name} {ms:.2f}" for name, ms in figures.items()]
        return f"CPU ms/request: {', '.join(parts)}; total {sum(figures.values()):.2f}"


__all__ = ["environment", "running", "wait", "pct", "ms", "statistics", "cpu_seconds",
           "server_pids", "CpuMeter"]
