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


# --- a task's status change held up at the server past its deadline ---------------------
class TaskFront(ServiceBase):
    """The gateway's part: calls tasks with a deadline (RPC_TIMEOUT) and gives up."""
    name = "task_front"
    tasks = ServiceRpc("tasks")

    @rpc
    def change_status(self, user_id, org_id, task_id, body):
        return self.tasks.change_status(user_id, org_id, task_id, body)


@pytest.fixture
def task_mesh(container_factory, make_config):
    from task_svc.service import TaskService
    from tests.integration.tasks_mesh import FakeEmployees, FakeOrganizations

    config = make_config(RPC_TIMEOUT=1)
    containers = [container_factory(cls, config)
                  for cls in (FakeEmployees, FakeOrganizations, TaskService, TaskFront)]
    for container in containers:
        container.start()
    return config, containers[2], containers[3]


def commands_done(db, collection: str) -> int:
    """How many writes to ``collection`` the server has finished (``top`` counts one
    when it has answered it, whatever the answer): updates and findAndModify commands."""
    totals = db.client.admin.command("top")["totals"].get(f"{db.name}.{collection}", {})
    return sum(totals.get(kind, {}).get("count", 0) for kind in ("update", "commands"))


def test_a_status_change_held_up_past_its_deadline_at_the_server_is_not_applied(task_mesh):
    """The write reaches the server on time but waits there for the task's document,
    which an open transaction holds (the server retries it until that ends): the
    caller gets its 504 and the server must not apply the write afterwards."""
    from tests.integration.tasks_mesh import call, database, make_org

    config, tasks, front = task_mesh
    org, people = make_org({"boss": "manager"})
    boss = people["boss"]["user_id"]
    task = call(tasks, "create_task", boss, org, {"title": "Held up"})
    db = database(config, "tasks")
    before = db.tasks.find_one({"_id": task["task_id"]})
    with db.client.start_session() as session:
        session.start_transaction()
        db.tasks.update_one({"_id": task["task_id"]}, {"$set": {"held": True}}, session=session)
        done = commands_done(db, "tasks")
        with pytest.raises(Timeout):
            call(front, "change_status", boss, org, task["task_id"], {"status": "in_progress"})
        session.abort_transaction()  # the document is free: the held write goes on now
    wait_until(lambda: commands_done(db, "tasks") > done, what="the held write to be answered")
    assert db.tasks.find_one({"_id": task["task_id"]}) == before
    history = call(tasks, "task_history", boss, org, task["task_id"], {})["items"]
    assert [h["field"] for h in history] == ["created"]


def test_a_write_the_server_starts_after_the_deadline_is_refused(config):
    """A write sent on time and started by the server late (queued behind others) is
    refused by the server's clock; without a call deadline the writes are plain."""
    import time as _time

    import pymongo

    from shared.mongo import CALL_DEADLINE, BaseStore, write_at_version

    client = pymongo.MongoClient(config["MONGODB_URI"])
    db = client[f"{config['MONGODB_DB_PREFIX']}_late"]
    db.things.insert_one({"_id": "a", "n": 1})
    token = CALL_DEADLINE.set(_time.time() - 0.001)  # passed by the time the server runs it
    try:
        with pytest.raises(Timeout):
            write_at_version(db.things, "a", {"n": 2})
        with pytest.raises(Timeout):
            BaseStore.insert_in_time(db.things, {"_id": "b"})
        CALL_DEADLINE.set(_time.time() + 30)
        assert write_at_version(db.things, "a", {"n": 3}) == {"_id": "a", "n": 1}
        assert CALL_DEADLINE.get() is None  # landed: the call's other writes are not fenced
        CALL_DEADLINE.set(_time.time() + 30)
        BaseStore.insert_in_time(db.things, {"_id": "c", "text": "$not_a_field"})
        with pytest.raises(pymongo.errors.DuplicateKeyError):
            CALL_DEADLINE.set(_time.time() + 30)
            BaseStore.insert_in_time(db.things, {"_id": "c"})
    finally:
        CALL_DEADLINE.reset(token)
    assert list(db.things.find({}, sort=[("_id", 1)])) == [
        {"_id": "a", "n": 3, "version": 1}, {"_id": "c", "text": "$not_a_field"}]
    BaseStore.insert_in_time(db.things, {"_id": "d"})  # no deadline: insert_one
    assert db.things.find_one({"_id": "d"}) == {"_id": "d"}


class LateAnswers:
    """A collection whose ``update_one`` answers after pymongo stopped waiting: the
    server applies it (``applied``) or never gets it, and the caller sees pymongo's
    ``NetworkTimeout`` either way (a busy process whose timer fired first)."""

    def __init__(self, collection, applied: bool):
        self.collection, self.applied = collection, applied

    def __getattr__(self, name):
        return getattr(self.collection, name)

    def update_one(self, *args, **kwargs):
        import pymongo.errors

        if self.applied:
            self.collection.update_one(*args, **kwargs)
        raise pymongo.errors.NetworkTimeout("127.0.0.1:27017: timed out")


def test_a_write_applied_whose_answer_came_too_late_counts_as_written(config):
    """The gateway must not answer 504 for a write that landed: when pymongo gave up
    waiting, a read of the document says whether the server applied it."""
    import time as _time

    import pymongo

    from shared.mongo import CALL_DEADLINE, BaseStore, write_at_version

    client = pymongo.MongoClient(config["MONGODB_URI"])
    db = client[f"{config['MONGODB_DB_PREFIX']}_lateanswer"]
    db.things.insert_one({"_id": "a", "n": 1, "version": 4})
    token = CALL_DEADLINE.set(_time.time() + 30)
    try:
        with pymongo.timeout(30):
            assert write_at_version(LateAnswers(db.things, True), "a", {"n": 2})["n"] == 1
            assert CALL_DEADLINE.get() is None  # landed: what the call does next is not fenced
            CALL_DEADLINE.set(_time.time() + 30)
            with pytest.raises(Timeout):  # never applied: a 504, and nothing changed
                write_at_version(LateAnswers(db.things, False), "a", {"n": 3})
            BaseStore.insert_in_time(LateAnswers(db.things, True), {"_id": "b"})
            CALL_DEADLINE.set(_time.time() + 30)
            with pytest.raises(Timeout):
                BaseStore.insert_in_time(LateAnswers(db.things, False), {"_id": "c"})
    finally:
        CALL_DEADLINE.reset(token)
    assert list(db.things.find({}, sort=[("_id", 1)])) == [
        {"_id": "a", "n": 2, "version": 5}, {"_id": "b"}]
