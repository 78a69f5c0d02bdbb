"""Test servers, started once per test session.

* SecantusDB in memory on a free port (MongoDB wire protocol, stack.md);
* a RabbitMQ vhost of its own for each test (so no test, and no parallel
  session, sees another's messages), removed at the end;
* the machine's Redis; tests use unique keys and never flush it.

``make_config()`` gives each test its own MongoDB database prefix.
"""
import eventlet

eventlet.monkey_patch()  # noqa: E402  done already by tests.green (pyproject addopts), before plugins

import os  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402

from ops import mesh  # noqa: E402
from tests.tokens import TEST_DATA_KEYS, TEST_PRIVATE_KEYS_PEM, TEST_SEALING_KEY  # noqa: E402

RABBIT_MGMT = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
RABBIT_AUTH = ("guest", "guest")
REDIS_URI = os.environ.get("TEST_REDIS_URI", "redis://127.0.0.1:6379/9")


@pytest.fixture(scope="session")
def mongo_uri():
    if os.environ.get("TEST_MONGODB_URI"):
        yield os.environ["TEST_MONGODB_URI"]
        return
    proc, uri = mesh.start_secantus(":memory:")
    yield uri
    mesh.stop_process(proc)


def _create_vhost(name):
    mesh.ensure_rabbitmq_management()  # a fresh machine's broker may not serve it yet (bench/load.py)
    requests.put(f"{RABBIT_MGMT}/api/vhosts/{name}", auth=RABBIT_AUTH,
                 timeout=10).raise_for_status()
    requests.put(f"{RABBIT_MGMT}/api/permissions/{name}/guest", auth=RABBIT_AUTH, timeout=10,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    return f"pyamqp://guest:guest@127.0.0.1:5672/{name}"


def _delete_vhost(name):
    requests.delete(f"{RABBIT_MGMT}/api/vhosts/{name}", auth=RABBIT_AUTH, timeout=10)


@pytest.fixture
def vhost_factory():
    """Fresh RabbitMQ vhosts (removed afterwards): no queue or message of one
    test is ever seen by another, or by a parallel test session."""
    created = []

    def make():
        name = f"test-{uuid.uuid4().hex[:12]}"
        created.append(name)
        return _create_vhost(name)

    yield make
    for name in created:
        _delete_vhost(name)


@pytest.fixture
def make_config(mongo_uri, vhost_factory):
    """A fresh config: own database prefix, fast retries, short RPC timeouts."""

    def make(**overrides):
        config = {
            "AMQP_URI": vhost_factory(),
            "REDIS_URI": REDIS_URI,
            "MONGODB_URI": mongo_uri,
            "MONGODB_DB_PREFIX": f"t{uuid.uuid4().hex[:12]}",
            "MONGODB_TIMEOUT_MS": 2000,
            "RPC_TIMEOUT": 3,
            "EVENT_MAX_ATTEMPTS": 3,
            "EVENT_RETRY_TIERS_MS": "20,50,100,200",
            "WEB_SERVER_ADDRESS": f"127.0.0.1:{mesh.free_port()}",
            "RATE_LIMITS": {"default": "1000/60", "auth": "1000/60", "bulk": "1000/60"},
            "max_workers": 10,
            # deterministic Ed25519 keys (tests/tokens.py): tokens minted by
            # tests.tokens.auth_headers are accepted by a gateway of this config
            "JWT_PRIVATE_KEYS": TEST_PRIVATE_KEYS_PEM,
            "AUTH_DATA_KEYS": TEST_DATA_KEYS,     # tests/tokens.py: fixed, like the JWT keys
            "SEALING_KEYS": TEST_SEALING_KEY,
            "BCRYPT_ROUNDS": 4,
        }
        config.update(overrides)
        return config

    return make


@pytest.fixture
def config(make_config):
    return make_config()


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-protocol HTTP server (moto's server mode) on a free port, for the
    session; each test makes its own bucket. boto3 takes the (dummy) credentials
    from the environment, as it would take real ones."""
    from moto.server import ThreadedMotoServer

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    port = mesh.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def unique():
    return uuid.uuid4().hex[:12]


# -- the whole mesh, once per session (tests/e2e and tests/browser share it) ----------
@pytest.fixture(scope="session")
def mailbox():
    from tests.e2e.mailbox import Mailbox

    box = Mailbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture(scope="session")
def running_mesh(mongo_uri, tmp_path_factory, mailbox):
    """The mesh as ``make run`` starts it, the web console included."""
    from tests.e2e.conftest import BULK_LIMIT, started_mesh

    vhost = f"e2e-{uuid.uuid4().hex[:10]}"
    amqp_uri = _create_vhost(vhost)
    try:
        with started_mesh(
            mongo_uri, tmp_path_factory.mktemp("mesh-logs"), gateways=2, web=True,
            AMQP_URI=amqp_uri,
            REDIS_URI=REDIS_URI,
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
            METRICS_PORT_GATEWAY=str(mesh.free_port()),
            OUTBOUND_ALLOWED_NETWORKS="127.0.0.1/32",  # webhook and push receivers of the tests
            # the web console: a VAPID public key for its push button (no private key:
            # the mesh sends no push), and the operator pages' links out
            VAPID_PUBLIC_KEY="BN_VqHSnnzRFoKiZBnIfh6fpQcjhZPur09a4wPU--_MqrvzlBfe1-6Ob9WtewwEVRiBjwv0Zx0nw18e6X2xTwCA",
            OPS_METRICS_URL="http://127.0.0.1:9090", OPS_GRAFANA_URL="http://127.0.0.1:3000/d/workforce",
        ) as running:
            yield running
    finally:
        _delete_vhost(vhost)
