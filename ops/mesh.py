"""Start the whole mesh locally, the way ``make run`` does (and the e2e tests).

* checks that RabbitMQ and Redis answer at the configured URIs, starts local
  ones if they are installed but stopped, otherwise stops with one line
  saying what to install or set;
* starts SecantusDB (a MongoDB-wire server, docs/stack.md) when ``MONGODB_URI`` is
  not set: on disk under ./var/db for ``run``, in memory for tests;
* gives each service its own RabbitMQ and Redis user (shared.access), created
  idempotently on the servers of AMQP_URI / REDIS_URI with the admin rights
  of RABBITMQ_MANAGEMENT_URL / REDIS_URI (``SERVICE_USERS=0``: every service
  uses AMQP_URI / REDIS_URI as they are);
* starts every service as its own ``nameko run --config config.yaml
  <pkg>.service`` process (each in its own process group) and stops them all,
  and nothing else, on Ctrl-C or exit;
* starts the web console (``python -m web_svc``, docs/web.md) beside them on
  WEB_PORT (default 8080), the base of emailed links (PUBLIC_URL).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from shared import access, services

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SERVICES = services.PROCESSES  # nameko name -> package
SINGLE_PROCESS = services.SINGLE_PROCESS
DEFAULT_AMQP_URI = "pyamqp://guest:guest@127.0.0.1"
DEFAULT_REDIS_URI = "redis://127.0.0.1:6379/0"
DEFAULT_MANAGEMENT_URL = "http://guest:guest@127.0.0.1:15672"
METRICS_BASE_PORT = 9101


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    """Poll ``check`` until it returns something truthy (returned), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"{what} did not come up within {timeout:g} s")


def _host_port(uri: str, default_port: int) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(uri.replace("pyamqp://", "amqp://", 1))
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def ensure_rabbitmq(amqp_uri: str) -> None:
    host, port = _host_port(amqp_uri, 5672)
    if port_open(host, port):
        return
    if host in ("127.0.0.1", "localhost") and shutil.which("rabbitmq-server"):
        subprocess.run(["rabbitmq-server", "-detached"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(host, port), 60, "RabbitMQ")
        return
    sys.exit(f"RabbitMQ is not answering at {host}:{port}: install it (apt-get install "
             "rabbitmq-server) or set AMQP_URI to a running broker.")


def ensure_rabbitmq_management() -> None:
    """The operator CLI and the tests use the management API (:15672)."""
    if port_open("127.0.0.1", 15672) or not shutil.which("rabbitmq-plugins"):
        return
    subprocess.run(["rabbitmq-plugins", "enable", "rabbitmq_management"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: port_open("127.0.0.1", 15672), 60, "RabbitMQ management")


def ensure_redis(redis_uri: str) -> None:
    host, port = _host_port(redis_uri, 6379)
    if port_open(host, port):
        return
    if host in ("127.0.0.1", "localhost") and shutil.which("redis-server"):
        subprocess.run(["redis-server", "--daemonize", "yes", "--bind", host, "--port",
                        str(port), "--save", "", "--appendonly", "no"], check=False,
                       stdout=subprocess.DEVNULL)
        wait_for(lambda: port_open(host, port), 20, "Redis")
        return
    sys.exit(f"Redis is not answering at {host}:{port}: install it (apt-get install "
             "redis-server) or set REDIS_URI to a running server.")


def mongo_uri_for(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false"


def start_secantus(storage: str, port: int | None = None, log_path: Path | None = None
                   ) -> tuple[subprocess.Popen, str]:
    """A SecantusDB server (storage a directory or ``:memory:``); returns
    (process, uri) once it answers."""
    port = port or free_port()
    if storage != ":memory:":
        Path(storage).mkdir(parents=True, exist_ok=True)
    if log_path:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([str(VENV_BIN / "secantusd-py"), "--host", "127.0.0.1", "--port",
                             str(port), "--storage-path", storage, "--standalone"],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_die_with_parent)
    try:
        wait_for(lambda: proc.poll() is None and port_open("127.0.0.1", port), 30, "SecantusDB")
    except RuntimeError:
        proc.kill()
        raise
    return proc, mongo_uri_for(port)


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the process that started us dies (Linux), so
    a killed runner or test session leaves no orphans."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM the process group, SIGKILL what is left after ``timeout``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


@dataclass
class Mesh:
    """The seven services as separate processes."""

    env: dict
    log_dir: Path
    gateways: int = 1
    web: bool = False  # also start the web console (WEB_PORT in env)
    replicas: int = 1  # processes of every other service
    service_env: dict[str, dict] = field(default_factory=dict)  # per service (its users)
    procs: dict[str, list[subprocess.Popen]] = field(default_factory=dict)

    def start_service(self, name: str) -> None:
        copies = (self.gateways if name == "gateway" else 1 if name in SINGLE_PROCESS
                  else self.replicas)
        self.procs[name] = [self._spawn(name, i) for i in range(copies)]

    def _spawn(self, name: str, index: int) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}{'-' + str(index) if index else ''}.log", "ab")
        env = {**self.env, **self.service_env.get(name, {})}
        if index:  # only the first copy serves the service's metrics port
            env[f"METRICS_PORT_{name.upper()}"] = "0"
        command = ([str(VENV_BIN / "python"), "-m", "web_svc"] if name == "web" else
                   service_command(f"{SERVICES[name]}.service"))
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)

    def start(self) -> None:
        for name in SERVICES:
            self.start_service(name)
        if self.web:
            self.procs["web"] = [self._spawn("web", 0)]

    def kill_replica(self, name: str, index: int = 0) -> None:
        """SIGKILL one process of a service (no clean shut-down, no acks), then start
        it again: what a crashed pod does."""
        proc = self.procs[name][index]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)
        self.procs[name][index] = self._spawn(name, index)

    def stop_service(self, name: str, kill: bool = False) -> None:
        for proc in self.procs.pop(name, []):
            if kill:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
            else:
                stop_process(proc)

    def stop(self) -> None:
        """SIGTERM every process first, then wait for them all (not one by one)."""
        procs = [p for name in list(self.procs) for p in self.procs.pop(name)]
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            stop_process(proc)

    def dead(self) -> list[str]:
        return [name for name, procs in self.procs.items() if any(p.poll() is not None
                                                                    for p in procs)]

    def last_words(self, lines: int = 40, of: set[str] | None = None) -> dict[str, str]:
        """The end of each dead process's log, with its exit code: why it stopped; with
        ``of``, of those services' processes, running or not (why they do not answer)."""
        words = {}
        for name, procs in self.procs.items():
            for index, proc in enumerate(procs):
                if (proc.poll() is not None) if of is None else (name in of):
                    path = self.log_dir / f"{name}{'-' + str(index) if index else ''}.log"
                    tail = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
                    words[f"{name}-{index} (exit {proc.poll()})"] = "\n".join(tail)
        return words


def service_command(module: str) -> list[str]:
    """The command that runs the services of ``module`` (``shared.run``: ``nameko run``
    with config.yaml, every log line JSON)."""
    return [str(VENV_BIN / "python"), "-m", "shared.run", module]


def base_env(mongo_uri: str, **overrides: str) -> dict:
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    env["MONGODB_URI"] = mongo_uri
    env["PYTHONPATH"] = str(ROOT)
    env.update(overrides)
    return env


def metrics_env() -> dict:
    return {f"METRICS_PORT_{name.upper()}": str(METRICS_BASE_PORT + i)
            for i, name in enumerate(SERVICES)}


def service_users(env: dict) -> dict[str, dict]:
    """Each service's own users on the servers of ``env`` (created or updated
    now), as per-service environments; none when ``SERVICE_USERS=0``."""
    if env.get("SERVICE_USERS", "1") == "0":
        return {}
    try:
        return access.provision({"AMQP_URI": DEFAULT_AMQP_URI, "REDIS_URI": DEFAULT_REDIS_URI,
                                 "RABBITMQ_MANAGEMENT_URL": DEFAULT_MANAGEMENT_URL, **env})
    except (requests.RequestException, redis.RedisError) as exc:
        sys.exit(f"Could not create the services' RabbitMQ and Redis users ({exc}): "
                 "RABBITMQ_MANAGEMENT_URL and REDIS_URI need admin rights, or set "
                 "SERVICE_USERS=0 to run every service with AMQP_URI / REDIS_URI.")


def run(gateways: int, replicas: int = 1) -> None:
    amqp_uri = os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)
    redis_uri = os.environ.get("REDIS_URI", DEFAULT_REDIS_URI)
    ensure_rabbitmq(amqp_uri)
    ensure_rabbitmq_management()  # the CLI's `queues` and `dead-letters` read it, and users
    ensure_redis(redis_uri)
    users = service_users(dict(os.environ))
    var = ROOT / "var"
    db_proc = None
    mongo_uri = os.environ.get("MONGODB_URI")
    if not mongo_uri:
        port = int(os.environ.get("SECANTUS_PORT", "27017"))
        if port_open("127.0.0.1", port):
            sys.exit(f"Port {port} is taken and MONGODB_URI is not set: set MONGODB_URI to "
                     "that server, or SECANTUS_PORT to a free port.")
        db_proc, mongo_uri = start_secantus(str(var / "db"), port, var / "log" / "secantus.log")
    web_port = os.environ.get("WEB_PORT", "8080")
    web_url = f"http://127.0.0.1:{web_port}"
    mesh = Mesh(base_env(mongo_uri, **metrics_env(), WEB_PORT=web_port,
                         PUBLIC_URL=os.environ.get("PUBLIC_URL", web_url)),
                var / "log", gateways=gateways, replicas=replicas, web=True, service_env=users)

    def shutdown(*_):
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # even if started with them ignored
        signal.signal(signum, shutdown)
    try:
        mesh.start()
        api = f"http://{os.environ.get('GATEWAY_ADDRESS', '127.0.0.1:8000')}"
        print(f"workforce mesh: {len(SERVICES)} services ({gateways} gateway processes, "
              f"{replicas} of every other service), logs in {var / 'log'}")
        print(f"  web      {web_url}  (the console; emailed links open here)")
        print(f"  API      {api}/api/v1")
        print(f"  docs     {api}/api/v1/docs")
        print(f"  health   {api}/api/v1/health")
        print(f"  metrics  http://127.0.0.1:{METRICS_BASE_PORT}-"
              f"{METRICS_BASE_PORT + len(SERVICES) - 1}/metrics (the gateway: "
              f"{METRICS_BASE_PORT + len(SERVICES) - 1})")
        print(f"  MongoDB  {mongo_uri}")
        print("  users    " + (f"one RabbitMQ and Redis user per service ({access.USER_PREFIX}*)"
                                if users else "AMQP_URI / REDIS_URI for every service"))
        print("Ctrl-C stops everything.", flush=True)
        while True:
            dead = mesh.dead()
            if dead:
                print(f"stopped unexpectedly: {', '.join(dead)} (see var/log)", flush=True)
                for name in dead:
                    mesh.stop_service(name)
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        mesh.stop()
        if db_proc is not None:
            stop_process(db_proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="start the whole mesh")
    run_p.add_argument("--gateways", type=int, default=int(os.environ.get("GATEWAYS", "2")))
    run_p.add_argument("--replicas", type=int, default=int(os.environ.get("REPLICAS", "1")),
                       help="processes of every service but the gateway")
    sub.add_parser("check", help="make sure RabbitMQ (with management) and Redis answer")
    sub.add_parser("users", help="create or update every service's RabbitMQ and Redis user "
                                 "(compose and k8s run this once before the services)")
    args = parser.parse_args()
    if args.command == "run":
        run(args.gateways, args.replicas)
        return
    ensure_rabbitmq(os.environ.get("AMQP_URI", DEFAULT_AMQP_URI))
    ensure_rabbitmq_management()
    ensure_redis(os.environ.get("REDIS_URI", DEFAULT_REDIS_URI))
    if args.command == "users":
        service_users(dict(os.environ, SERVICE_USERS="1"))


if __name__ == "__main__":
    main()
