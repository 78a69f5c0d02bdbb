"""Private RabbitMQ and Redis servers for the fault tests, which stop and
restart them: the machine's own servers are never touched."""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ops import mesh


def _wait_port(port: int, up: bool, timeout: float, what: str) -> None:
    state = "up" if up else "down"
    mesh.wait_for(lambda: mesh.port_open("127.0.0.1", port) is up, timeout, f"{what} {state}")


class PrivateRedis:
    """Keeps its data across a restart (a snapshot at shutdown, as a production
    Redis with persistence does), so stale entries come back with it. ``args``:
    more redis-server options (``--maxmemory 2mb --maxmemory-policy allkeys-lru``)."""

    def __init__(self, *args: str):
        self.port = mesh.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-"))
        self.proc: subprocess.Popen | None = None
        self.args = list(args)

    @property
    def uri(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
             "--save", "3600 1", "--appendonly", "no", *self.args],
            stdout=subprocess.DEVNULL, start_new_session=True)
        _wait_port(self.port, True, 10, "redis")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # redis-server saves its snapshot on SIGTERM
            self.proc.wait(10)
        _wait_port(self.port, False, 10, "redis")

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedisCluster:
    """A Redis Cluster of ``size`` primaries (no replicas) from the installed
    redis-server, each on its own port and cluster bus port, without persistence."""

    def __init__(self, size: int = 3):
        self.ports = [mesh.free_port() for _ in range(size)]
        self.dir = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
        self.procs: list[subprocess.Popen] = []

    @property
    def nodes(self) -> str:
        """``REDIS_CLUSTER_NODES``."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    @property
    def uri(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self, timeout: float = 30) -> None:
        for port in self.ports:
            self.procs.append(subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                 "--cluster-enabled", "yes", "--cluster-port", str(mesh.free_port()),
                 "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "5000",
                 "--dir", str(self.dir), "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, start_new_session=True))
        for port in self.ports:
            _wait_port(port, True, 10, "redis cluster node")
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{port}" for port in self.ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, timeout=timeout)
        mesh.wait_for(self._agreed, timeout, "every cluster node to see all slots served")

    def _agreed(self) -> bool:
        for port in self.ports:
            info = subprocess.run(["redis-cli", "-p", str(port), "cluster", "info"],
                                  capture_output=True, text=True, timeout=5).stdout
            if ("cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info
                    or f"cluster_known_nodes:{len(self.ports)}" not in info):
                return False
        return True

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _rabbitmq_server_command() -> list[str]:
    """Debian's ``rabbitmq-server`` wrapper, run as root, starts the node through
    ``su rabbitmq``, whose login limits give it 1,024 file descriptors: a node
    holding the mesh's ~180 quorum queues (files each) then has no descriptor left
    for a socket and accepts no new connection at all (RabbitMQ keeps 10% of its
    limit for sockets). The same ``su``, with the soft limit raised to the hard one."""
    server = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    if os.getuid() != 0 or not os.path.exists(server):
        return [shutil.which("rabbitmq-server") or "rabbitmq-server"]
    return ["su", "rabbitmq", "-s", "/bin/sh", "-c",
            f'cd /var/lib/rabbitmq && ulimit -n "$(ulimit -Hn)" && exec {server}']


class PrivateRabbit:
    """A second RabbitMQ node on its own ports and data directory."""

    def __init__(self, name: str = "fault"):
        self.port = mesh.free_port()
        self.dist_port = mesh.free_port()
        self.node = f"{name}{os.getpid()}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix="rabbit-"))
        for sub in ("mnesia", "log"):
            (self.dir / sub).mkdir()
        (self.dir / "plugins").write_text("[].")
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        os.chmod(self.dir, 0o777)
        for path in self.dir.rglob("*"):
            os.chmod(path, 0o777)
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"pyamqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> None:
        env = dict(os.environ, RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
                   RABBITMQ_NODENAME=self.node, RABBITMQ_DIST_PORT=str(self.dist_port),
                   RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
                   RABBITMQ_LOG_BASE=str(self.dir / "log"),
                   RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "plugins"),
                   RABBITMQ_FEATURE_FLAGS_FILE=str(self.dir / "feature_flags"))
        self.proc = subprocess.Popen(_rabbitmq_server_command(), env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        _wait_port(self.port, True, 60, "rabbitmq")

    def stop(self) -> None:
        """Stop the node (its Erlang VM runs in a session of its own, as the
        rabbitmq user, so it is asked to stop rather than signalled)."""
        if self.proc is None:
            return
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], check=False, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None
        _wait_port(self.port, False, 30, "rabbitmq")

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def queues(self) -> str:
        """Every queue with its ready and unacked messages and consumers (what a
        failing test prints: this node has no management API)."""
        done = subprocess.run(["rabbitmqctl", "-n", self.node, "-q", "list_queues", "name", "messages_ready",
                               "messages_unacknowledged", "consumers"],
                              capture_output=True, text=True, timeout=60, check=False)
        return done.stdout + done.stderr


class PrivateRabbitCluster:
    """Three PrivateRabbit nodes joined in one cluster (``rabbitmqctl stop_app;
    join_cluster; start_app``). They share the Erlang cookie because each is
    started, like ``rabbitmqctl``, as the rabbitmq user (its ~/.erlang.cookie)."""

    def __init__(self, size: int = 3):
        tag = os.urandom(3).hex()
        self.nodes = [PrivateRabbit(f"c{tag}n{n}x") for n in range(size)]

    @property
    def uri(self) -> str:
        """Every node, in kombu's failover syntax: clients take the first that
        answers and move on to the next when it goes away."""
        return ";".join(node.uri for node in self.nodes)

    def ctl(self, node: PrivateRabbit, *args: str) -> str:
        done = subprocess.run(["rabbitmqctl", "-n", node.node, *args], capture_output=True,
                              text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {node.node} {' '.join(args)}: "
                               f"{done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> None:
        first, *others = self.nodes
        _each(self.nodes, PrivateRabbit.start)  # Erlang boots are slow: side by side
        for node in others:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.node)
            self.ctl(node, "start_app")
            _wait_port(node.port, True, 60, "rabbitmq")
        self.ctl(first, "await_online_nodes", str(len(self.nodes)))

    def running_nodes(self, via: PrivateRabbit) -> str:
        return self.ctl(via, "-q", "eval", "rabbit_nodes:all_running().")

    def cleanup(self) -> None:
        _each(self.nodes, PrivateRabbit.cleanup)


def _each(nodes, action) -> None:
    """``action`` on every node at once; the first failure is raised."""
    with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
        for future in [pool.submit(action, node) for node in nodes]:
            future.result()


def available() -> bool:
    return bool(shutil.which("rabbitmq-server")) and bool(shutil.which("redis-server"))


__all__ = ["PrivateRabbit", "PrivateRabbitCluster", "PrivateRedis", "available", "time"]
