"""The whole mesh as separate processes, started the way ``make run`` starts
it (ops.mesh), against the test servers. The session's one mesh (the
``running_mesh`` and ``mailbox`` fixtures, shared with tests/browser) is in
tests/conftest.py."""
import contextlib
import json
from pathlib import Path

import requests

from ops import mesh as mesh_mod
from ops.cli import rpc_call
from tests.helpers import wait_until

BULK_LIMIT = 5  # bulk requests per minute per user in the e2e mesh


class RunningMesh:
    def __init__(self, mesh, base_url, env, web_url=None):
        self.mesh = mesh
        self.base_url = base_url
        self.api = f"{base_url}/api/v1"
        self.env = env
        self.web_url = web_url  # the web console, when started with web=True

    def get(self, path, **kwargs):
        return requests.get(f"{self.api}{path}", timeout=15, **kwargs)

    def request(self, method, path, **kwargs):
        return requests.request(method, f"{self.api}{path}", timeout=15, **kwargs)

    def operator(self, service, method, *args):
        """What an operator does from `nameko shell` or ops.cli (plans, verifying)."""
        return rpc_call({"AMQP_URI": self.env["AMQP_URI"]}, service, method, *args, timeout=10)

    def wait_healthy(self, timeout=90):
        last = {}

        def healthy():
            try:
                response = self.get("/health")
            except requests.RequestException as exc:
                last.update(error=str(exc))
                return False
            last.update(status=response.status_code, body=response.text)
            return response.status_code == 200

        try:
            wait_until(healthy, timeout=timeout, interval=0.25, what="the mesh to be healthy")
        except AssertionError as exc:  # which services did not answer, and their logs' ends
            down = set((json.loads(last["body"]).get("down") or []) if "body" in last else [])
            raise AssertionError(f"{exc}; down: {sorted(down)}; why, as the gateway logged it: "
                                 f"{self.health_reasons()}; last /health: {last}; logs of those "
                                 f"down: {self.mesh.last_words(30, of=down)}") from exc

    def health_reasons(self, lines=4):
        """The gateway's last 'health: X is down: <its report>' log lines."""
        said = []
        for path in sorted(self.mesh.log_dir.glob("gateway*.log")):
            said += [line for line in path.read_text(errors="replace").splitlines()
                     if "health: " in line]
        return said[-lines:]


def _answers(url):
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def started_mesh(mongo_uri, log_dir, gateways, replicas=1, web=False, **env):
    """The mesh as separate processes on a free gateway port, healthy, then stopped;
    with ``web``, the web console too on a free port (emailed links point at it)."""
    port = mesh_mod.free_port()
    web_url = f"http://127.0.0.1:{mesh_mod.free_port()}" if web else None
    env = mesh_mod.base_env(mongo_uri, GATEWAY_ADDRESS=f"127.0.0.1:{port}",
                            PUBLIC_URL=web_url or f"http://127.0.0.1:{port}",
                            WEB_PORT=web_url.rsplit(":", 1)[1] if web else "0",
                            EVENT_RETRY_TIERS_MS="100,200,400,800",
                            SEARCH_INDEX_DIR=str(Path(log_dir) / "search-index"), **env)
    # each service with its own RabbitMQ and Redis user, as make run does
    mesh = mesh_mod.Mesh(env, Path(log_dir), gateways=gateways, replicas=replicas, web=web,
                         service_env=mesh_mod.service_users(env))
    running = RunningMesh(mesh, f"http://127.0.0.1:{port}", env, web_url)
    try:
        mesh.start()
        running.wait_healthy()
        if web:
            wait_until(lambda: _answers(f"{web_url}/healthz"), timeout=30, interval=0.25,
                       what="the web console")
        yield running
    finally:
        mesh.stop()
