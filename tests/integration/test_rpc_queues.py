"""The RPC queues on a cluster: ``rpc-<service>`` follows EVENT_QUEUE_TYPE
(quorum: it lives on every node), a ServiceRpc's reply queue is transient (made
again on whichever node its consumer fails over to), and an AMQP_URI listing
several brokers (kombu's ``;`` failover list) works when the first is down."""
import pytest
import requests
from nameko.standalone.rpc import ServiceRpcProxy

from ops import mesh
from shared.rpc import ServiceRpc, rpc
from tests.conftest import RABBIT_AUTH, RABBIT_MGMT


class Echo:
    name = "echo"

    @rpc
    def ping(self, value):
        return value


class Caller:
    name = "echo_caller"
    echo = ServiceRpc("echo", methods=("ping",))

    @rpc
    def relay(self, value):
        return self.echo.ping(value)


def queues(amqp_uri):
    vhost = amqp_uri.rsplit("/", 1)[1]
    found = requests.get(f"{RABBIT_MGMT}/api/queues/{vhost}", auth=RABBIT_AUTH, timeout=10).json()
    return {q["name"]: q for q in found}


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_rpc_queue_follows_the_event_queue_type(container_factory, make_config, queue_type):
    config = make_config(EVENT_QUEUE_TYPE=queue_type)
    for cls in (Echo, Caller):
        container_factory(cls, config).start()
    with ServiceRpcProxy("echo_caller", config, timeout=10) as proxy:
        assert proxy.relay("hi") == "hi"
    found = queues(config["AMQP_URI"])
    assert found["rpc-echo"]["type"] == queue_type and found["rpc-echo"]["durable"] is True
    replies = [q for name, q in found.items() if name.startswith("rpc.reply-echo_caller-")]
    assert replies and all(q["durable"] is False for q in replies), replies


def test_rpc_queue_type_can_differ_from_the_event_queue_type(container_factory, make_config):
    config = make_config(EVENT_QUEUE_TYPE="classic", RPC_QUEUE_TYPE="quorum")
    container_factory(Echo, config).start()
    assert queues(config["AMQP_URI"])["rpc-echo"]["type"] == "quorum"


def test_a_uri_list_uses_the_next_broker_when_the_first_is_down(container_factory, make_config):
    config = make_config()
    dead = f"pyamqp://guest:guest@127.0.0.1:{mesh.free_port()}/"  # nothing listens there
    listed = dict(config, AMQP_URI=f"{dead};{config['AMQP_URI']}")
    for cls in (Echo, Caller):
        container_factory(cls, listed).start()
    with ServiceRpcProxy("echo_caller", listed, timeout=10) as proxy:
        assert proxy.relay(7) == 7
