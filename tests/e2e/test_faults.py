"""Faults: the mesh on its own RabbitMQ and Redis, which these tests stop and
restart. Each test leaves the mesh healthy."""
import time
import uuid

import pytest
import requests

from shared import mesh as mesh_mod
from tests.e2e.conftest import RunningMesh
from tests.e2e.servers import PrivateRabbit, PrivateRedis
from tests.helpers import wait_until


@pytest.fixture(scope="module")
def fault_mesh(mongo_uri, tmp_path_factory):
    rabbit, redis_server = PrivateRabbit(), PrivateRedis()
    rabbit.start()
    redis_server.start()
    port = mesh_mod.free_port()
    env = mesh_mod.base_env(
        mongo_uri, AMQP_URI=rabbit.uri, REDIS_URI=redis_server.uri,
        MONGODB_DB_PREFIX=f"fault{uuid.uuid4().hex[:8]}", GATEWAY_ADDRESS=f"127.0.0.1:{port}",
        PUBLIC_URL=f"http://127.0.0.1:{port}", EVENT_RETRY_BASE_MS="100", RPC_TIMEOUT="3")
    mesh = mesh_mod.Mesh(env, tmp_path_factory.mktemp("fault-logs"), gateways=1)
    running = RunningMesh(mesh, f"http://127.0.0.1:{port}", env)
    running.rabbit, running.redis_server = rabbit, redis_server
    try:
        mesh.start()
        running.wait_healthy()
        yield running
    finally:
        mesh.stop()
        rabbit.cleanup()
        redis_server.stop()


def test_rabbitmq_outage_answers_503_quickly_then_the_mesh_reconnects(fault_mesh):
    fault_mesh.rabbit.stop()
    try:
        for _ in range(3):
            started = time.monotonic()
            response = fault_mesh.get("/health")
            assert response.status_code == 503
            assert time.monotonic() - started < 10  # an answer, not a hang
            assert response.headers["Content-Type"].startswith("application/")
    finally:
        fault_mesh.rabbit.start()
    fault_mesh.wait_healthy(timeout=90)


def test_redis_outage_is_reported_and_recovered(fault_mesh):
    fault_mesh.redis_server.stop()
    try:
        body = wait_until(lambda: _health(fault_mesh), timeout=10, what="a health answer")
        assert body["status"] == "degraded"
        for name, report in body["services"].items():
            assert report["checks"]["redis"]["ok"] is False, name
    finally:
        fault_mesh.redis_server.start()
    fault_mesh.wait_healthy(timeout=30)


def _health(running):
    try:
        response = running.get("/health")
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 503 else None
