"""The caller's deadline travels with an RPC: a call the caller gave up on (a
504 at the gateway) writes nothing afterwards, so the caller's view and the
store agree; a call within its deadline writes, and its events still go out."""
import pytest
from eventlet.event import Event
from nameko.events import event_handler
from nameko.testing.services import entrypoint_hook

from shared.errors import Timeout
from shared.mongo import Mongo
from shared.rpc import ServiceRpc, rpc
from shared.service import ServiceBase
from tests.helpers import wait_until

RELEASE: dict[str, Event] = {}  # key -> released by the test, so the writer is "slow"
OUTCOME: dict[str, str] = {}    # key -> how the writer's call ended
HEARD: list[str] = []           # keys of the events the listener got


class Writer(ServiceBase):
    name = "writer"

    @rpc
    def write(self, key):
        if key in RELEASE:
            RELEASE[key].wait()  # held up (a busy database, a long lock) until released
        try:
            self.store.db.writes.insert_one({"_id": key})
        except Exception as exc:
            OUTCOME[key] = type(exc).__name__
            raise
        OUTCOME[key] = "written"
        self.events.publish("written", {"key": key})
        return key


class Front(ServiceBase):
    name = "front"
    writer = ServiceRpc("writer")

    @rpc
    def write(self, key):
        return self.writer.write(key)


class Listener:
    name = "deadline_listener"

    @event_handler("writer", "written")
    def on_written(self, payload):
        HEARD.append(payload["data"]["key"])


@pytest.fixture
def services(container_factory, make_config):
    config = make_config(RPC_TIMEOUT=1)
    writer, front, listener = (container_factory(cls, config) for cls in (Writer, Front, Listener))
    for container in (writer, front, listener):
        container.start()
    return front, next(d for d in writer.dependencies if isinstance(d, Mongo)).store.db


def call(front, key):
    with entrypoint_hook(front, "write") as hook:
        return hook(key)


def test_a_write_the_caller_gave_up_on_does_not_land_later(services, unique):
    front, db = services
    key = f"late-{unique}"
    RELEASE[key] = Event()
    with pytest.raises(Timeout):
        call(front, key)
    RELEASE[key].send()  # the writer goes on now, after its caller's deadline
    outcome = wait_until(lambda: OUTCOME.get(key), what="the held call to end")
    assert outcome != "written" and db.writes.find_one({"_id": key}) is None


def test_a_call_within_its_deadline_writes_and_publishes(services, unique):
    front, db = services
    key = f"ok-{unique}"
    assert call(front, key) == key
    assert db.writes.find_one({"_id": key}) == {"_id": key}
    wait_until(lambda: key in HEARD, what="the event of the write")


def test_a_transaction_is_not_retried_once_the_deadline_has_passed(config):
    """pymongo's with_transaction retries for 120 s whatever the deadline; past
    it, each attempt failed before any I/O, so the retries spun without yielding
    and starved the service. Now the attempt gives up at once."""
    import pymongo
    import pymongo.errors

    from shared.mongo import BaseStore

    client = pymongo.MongoClient(config["MONGODB_URI"])
    store = BaseStore(client[f"{config['MONGODB_DB_PREFIX']}_txn"])
    calls = []

    def write(session):
        calls.append(1)
        store.db.things.insert_one({"n": 1}, session=session)

    with pytest.raises(pymongo.errors.ExecutionTimeout), pymongo.timeout(1e-6):
        store.run_transaction(write)
    assert calls == [] and store.db.things.count_documents({}) == 0
    store.run_transaction(write)  # without a deadline: as before
    assert calls == [1] and store.db.things.count_documents({}) == 1
