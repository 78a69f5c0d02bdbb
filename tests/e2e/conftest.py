"""The whole mesh as separate processes, started once per test session the
way ``make run`` starts it (shared.mesh), against the test servers."""
import contextlib
import os
import uuid
from pathlib import Path

import pytest
import requests

from shared import mesh as mesh_mod
from shared.cli import rpc_call
from tests.conftest import _create_vhost, _delete_vhost
from tests.e2e.mailbox import Mailbox
from tests.helpers import wait_until

BULK_LIMIT = 5  # bulk requests per minute per user in the e2e mesh


class RunningMesh:
    def __init__(self, mesh, base_url, env):
        self.mesh = mesh
        self.base_url = base_url
        self.api = f"{base_url}/api/v1"
        self.env = env

    def get(self, path, **kwargs):
        return requests.get(f"{self.api}{path}", timeout=15, **kwargs)

    def request(self, method, path, **kwargs):
        return requests.request(method, f"{self.api}{path}", timeout=15, **kwargs)

    def operator(self, service, method, *args):
        """What an operator does from `nameko shell` or shared.cli (plans, verifying)."""
        return rpc_call({"AMQP_URI": self.env["AMQP_URI"]}, service, method, *args, timeout=10)

    def wait_healthy(self, timeout=90):
        def healthy():
            try:
                return self.get("/health").status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout=timeout, interval=0.25, what="the mesh to be healthy")


@pytest.fixture(scope="session")
def mailbox():
    box = Mailbox()
    box.start()
    yield box
    box.stop()


@contextlib.contextmanager
def started_mesh(mongo_uri, log_dir, gateways, replicas=1, **env):
    """The mesh as separate processes on a free gateway port, healthy, then stopped."""
    port = mesh_mod.free_port()
    env = mesh_mod.base_env(mongo_uri, GATEWAY_ADDRESS=f"127.0.0.1:{port}",
                            PUBLIC_URL=f"http://127.0.0.1:{port}", EVENT_RETRY_TIERS_MS="100,200,400,800",
                            **env)
    # each service with its own RabbitMQ and Redis user, as make run does
    mesh = mesh_mod.Mesh(env, Path(log_dir), gateways=gateways, replicas=replicas,
                         service_env=mesh_mod.service_users(env))
    running = RunningMesh(mesh, f"http://127.0.0.1:{port}", env)
    try:
        mesh.start()
        running.wait_healthy()
        yield running
    finally:
        mesh.stop()


@pytest.fixture(scope="session")
def running_mesh(mongo_uri, tmp_path_factory, mailbox):
    vhost = f"e2e-{uuid.uuid4().hex[:10]}"
    amqp_uri = _create_vhost(vhost)
    try:
        with started_mesh(
            mongo_uri, tmp_path_factory.mktemp("mesh-logs"), gateways=2,
            AMQP_URI=amqp_uri,
            REDIS_URI=os.environ.get("TEST_REDIS_URI", "redis://127.0.0.1:6379/9"),
            MONGODB_DB_PREFIX=f"e2e{uuid.uuid4().hex[:8]}",
            RPC_TIMEOUT="5",
            LOG_LEVEL="INFO",
            SMTP_URL=mailbox.url,
            JWT_KEYS_DIR=str(tmp_path_factory.mktemp("keys")),
            TASK_FILES_DIR=str(tmp_path_factory.mktemp("files")),
            BCRYPT_ROUNDS="4",  # hundreds of sign-ups per run; the default stays 12
            RATE_LIMIT_AUTH="100000/60",
            RATE_LIMIT_PUBLIC="100000/60",  # wait_healthy polls /health
            RATE_LIMIT_BULK=str(BULK_LIMIT) + "/60",
            METRICS_PORT_GATEWAY=str(mesh_mod.free_port()),
            OUTBOUND_ALLOWED_NETWORKS="127.0.0.1/32",  # webhook and push receivers of the tests
        ) as running:
            yield running
    finally:
        _delete_vhost(vhost)
