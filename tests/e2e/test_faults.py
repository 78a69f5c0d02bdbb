"""Faults: the mesh on its own RabbitMQ and Redis, which these tests stop and
restart. Each test leaves the mesh healthy."""
import time
import uuid

import pytest
import requests

from tests.e2e.conftest import started_mesh
from tests.e2e.servers import PrivateRabbit, PrivateRedis
from tests.helpers import wait_until


@pytest.fixture(scope="module")
def fault_mesh(mongo_uri, tmp_path_factory):
    rabbit, redis_server = PrivateRabbit(), PrivateRedis()
    rabbit.start()
    redis_server.start()
    try:
        with started_mesh(mongo_uri, tmp_path_factory.mktemp("fault-logs"), gateways=1,
                          AMQP_URI=rabbit.uri, REDIS_URI=redis_server.uri, RPC_TIMEOUT="3",
                          MONGODB_DB_PREFIX=f"fault{uuid.uuid4().hex[:8]}") as running:
            running.rabbit, running.redis_server = rabbit, redis_server
            yield running
    finally:
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
