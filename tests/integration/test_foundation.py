"""shared/ against real RabbitMQ, Redis and SecantusDB."""
import json
import subprocess
import sys
from datetime import datetime, timezone

import eventlet
import pymongo
import pytest
import requests
import yaml
from nameko.rpc import RpcProxy
from nameko.testing.services import entrypoint_hook

from ops import mesh as mesh_mod
from shared import deadletters
from shared.errors import Timeout, Unavailable
from shared.events import handles
from shared.mongo import BaseStore, Mongo, find_by_id, find_by_ids, write_at_version
from shared.redis import Cache, Limit, RateLimiter, make_client
from shared.rpc import ServiceRpc, rpc
from shared.service import ServiceBase
from tests.conftest import RABBIT_AUTH, RABBIT_MGMT
from tests.helpers import wait_until


class Producer(ServiceBase):
    name = "producer"

    @rpc
    def emit(self, event_type, data, event_id=None):
        return self.events.publish(event_type, data, event_id=event_id)


    @rpc
    def emit_many(self, event_type, datas):
        return [self.events.publish(event_type, data) for data in datas]

    @rpc
    def emit_twins(self, event_type, datas):
        """Each event twice, one copy after the other (a redelivery beside its first)."""
        envelopes = [self.events.envelope(event_type, data) for data in datas]
        self.events.publish_now([e for envelope in envelopes for e in (envelope, envelope)])
        return envelopes

    @rpc
    def emit_in_transaction(self, key, abort=False):
        def write(session):
            self.store.db.things.insert_one({"_id": key}, session=session)
            self.events.publish("thing.happened", {"key": key}, session=session)
            if abort:
                raise ValueError("changed my mind")

        self.store.run_transaction(write)


class Consumer(ServiceBase):
    """Counts deliveries in MongoDB; data["fail_times"] decides how often to fail."""

    name = "consumer"

    @handles("producer", "thing.happened")
    def on_thing(self, event):
        key = event["data"]["key"]
        attempts = self.store.db.attempts.find_one_and_update(
            {"_id": key}, {"$inc": {"n": 1}}, upsert=True,
            return_document=pymongo.ReturnDocument.AFTER)["n"]
        if attempts <= event["data"].get("fail_times", 0):
            raise RuntimeError(f"boom {attempts}")
        self.store.db.effects.insert_one({"key": key, "event_id": event["event_id"]})


@pytest.fixture(params=["classic"])
def queue_type(request):
    """The EVENT_QUEUE_TYPE of the ``config``; tests of retries and dead letters
    run with both (``@pytest.mark.parametrize("queue_type", ..., indirect=True)``)."""
    return request.param


@pytest.fixture
def config(make_config, queue_type):
    return make_config(EVENT_QUEUE_TYPE=queue_type)


BOTH_QUEUE_TYPES = pytest.mark.parametrize("queue_type", ["classic", "quorum"], indirect=True)


def declared_queues(config) -> dict[str, dict]:
    """name -> the queue as the broker has it (management API)."""
    vhost = config["AMQP_URI"].rsplit("/", 1)[1]
    response = requests.get(f"{RABBIT_MGMT}/api/queues/{vhost}", auth=RABBIT_AUTH, timeout=10)
    response.raise_for_status()
    return {q["name"]: q for q in response.json()}


@pytest.fixture
def mesh(container_factory, config):
    consumer = container_factory(Consumer, config)
    producer = container_factory(Producer, config)
    consumer.start()
    producer.start()
    db = pymongo.MongoClient(config["MONGODB_URI"], tz_aware=True)[
        f"{config['MONGODB_DB_PREFIX']}_consumer"]
    return producer, consumer, db


def emit(producer, key, **data):
    with entrypoint_hook(producer, "emit") as hook:
        return hook("thing.happened", {"key": key, **data})


def effects(db, key):
    return db.effects.count_documents({"key": key})


@BOTH_QUEUE_TYPES
def test_handler_failing_twice_then_succeeding_is_handled_once(mesh, config, queue_type):
    producer, _, db = mesh
    emit(producer, "k1", fail_times=2)
    wait_until(lambda: effects(db, "k1") == 1, what="the third attempt")
    assert db.attempts.find_one({"_id": "k1"})["n"] == 3
    eventlet.sleep(0.3)  # would a stray redelivery add a second effect?
    assert effects(db, "k1") == 1
    # the retries went through the first two fixed tiers (20, 50 ms), not a queue per delay
    queue = "evt-producer-thing.happened--consumer.on_thing"
    queues = declared_queues(config)
    assert {name for name in queues if name.startswith(f"{queue}.retry.")} == \
        {f"{queue}.retry.20", f"{queue}.retry.50"}
    types = {queues[name]["type"] for name in queues if name.startswith(queue)}
    assert types == {queue_type}
    if queue_type == "quorum":
        assert queues[queue]["arguments"]["x-delivery-limit"] == 20
        assert queues[queue]["arguments"]["x-dead-letter-routing-key"] == f"{queue}.dlq"


@BOTH_QUEUE_TYPES
def test_handler_always_failing_is_parked_with_its_error_and_the_next_flows(mesh, config, tmp_path,
                                                                           queue_type):
    producer, _, db = mesh
    poison = emit(producer, "poison", fail_times=99)
    emit(producer, "after-poison")
    wait_until(lambda: effects(db, "after-poison") == 1, what="the next event")
    queue = "evt-producer-thing.happened--consumer.on_thing"
    parked = wait_until(lambda: deadletters.list_dead_letters(config["AMQP_URI"], [queue],
                                                              queue_type=queue_type),
                        what="the dead letter")
    assert len(parked) == 1
    assert parked[0]["event_id"] == poison["event_id"]
    assert parked[0]["attempts"] == config["EVENT_MAX_ATTEMPTS"]
    assert "boom" in parked[0]["error"]
    assert db.attempts.find_one({"_id": "poison"})["n"] == config["EVENT_MAX_ATTEMPTS"]
    # looking did not consume it; after a fix, the operator replays it and it is handled
    assert len(deadletters.list_dead_letters(config["AMQP_URI"], [queue],
                                             queue_type=queue_type)) == 1
    assert declared_queues(config)[f"{queue}.dlq"]["type"] == queue_type
    db.attempts.update_one({"_id": "poison"}, {"$set": {"n": 1000}})  # "the fix"
    listed = run_cli(config, tmp_path, "dead-letters", "list", "--service", "consumer", "--json")
    assert [item["event_id"] for item in json.loads(listed)] == [poison["event_id"]]
    assert "replayed 1 message" in run_cli(config, tmp_path, "dead-letters", "replay",
                                           "--event-id", poison["event_id"])
    wait_until(lambda: effects(db, "poison") == 1, what="the replayed event to be handled")
    assert deadletters.list_dead_letters(config["AMQP_URI"], [queue], queue_type=queue_type) == []


def test_a_handler_blocked_behind_a_lock_is_parked_in_sight_not_stuck(container_factory, make_config):
    """A crashed client's transaction can hold a document's lock (SecantusDB keeps it
    until the transaction's lifetime runs out): a handler that waits on it gives up at
    its lease, is retried, then parked with the reason, and is handled once after."""
    config = make_config(EVENT_LEASE_MS=500)
    consumer, producer = container_factory(Consumer, config), container_factory(Producer, config)
    consumer.start()
    producer.start()
    client = pymongo.MongoClient(config["MONGODB_URI"])
    db = client[f"{config['MONGODB_DB_PREFIX']}_consumer"]
    db.attempts.insert_one({"_id": "locked", "n": 0})
    queue = "evt-producer-thing.happened--consumer.on_thing"
    with client.start_session() as session:
        session.start_transaction()
        db.attempts.update_one({"_id": "locked"}, {"$set": {"held": True}}, session=session)
        emit(producer, "locked")
        parked = wait_until(lambda: deadletters.list_dead_letters(config["AMQP_URI"], [queue]),
                            timeout=30, what="the blocked event parked")
        assert parked[0]["attempts"] == config["EVENT_MAX_ATTEMPTS"]
        assert "time" in parked[0]["error"].lower(), parked[0]["error"]
        emit(producer, "free")  # the handler still serves other events meanwhile
        wait_until(lambda: effects(db, "free") == 1, what="an unblocked event")
        session.abort_transaction()
    assert deadletters.replay_dead_letters(config["AMQP_URI"], [queue]) == 1
    wait_until(lambda: effects(db, "locked") == 1, what="the replayed event handled")
    assert effects(db, "locked") == 1


class IdempotentConsumer(ServiceBase):
    """``@handles(..., idempotent=True)``: one effect per event id by construction
    (an upsert on it), so no ledger; counts every try in the process."""

    name = "idem"
    tries: list[str] = []

    @handles("producer", "thing.happened", idempotent=True)
    def on_thing(self, event):
        IdempotentConsumer.tries.append(event["event_id"])
        self.store.db.effects.update_one({"_id": event["event_id"]},
                                         {"$set": {"key": event["data"]["key"]}}, upsert=True)


def test_an_idempotent_handler_keeps_no_ledger_and_waits_out_a_database_outage(
        container_factory, make_config):
    """MongoDB down is not the event's fault: the tries are not counted as attempts, so
    nothing is parked however long it lasts, and the event is handled once it is back."""
    config = make_config(EVENT_LEASE_MS=300)  # under its lease a try waits that long for a server
    port = mesh_mod.free_port()
    down = {**config, "MONGODB_URI": f"mongodb://127.0.0.1:{port}/?directConnection=true"
                                     "&retryWrites=false"}
    IdempotentConsumer.tries.clear()
    container_factory(IdempotentConsumer, down).start()
    producer = container_factory(Producer, config)
    producer.start()
    event = emit(producer, "outage")
    queue = "evt-producer-thing.happened--idem.on_thing"
    wait_until(lambda: len(IdempotentConsumer.tries) > 2 * config["EVENT_MAX_ATTEMPTS"],
               timeout=30, what="more tries than the attempts that park an event")
    assert deadletters.list_dead_letters(config["AMQP_URI"], [queue]) == []
    proc, uri = mesh_mod.start_secantus(":memory:", port)
    try:
        db = pymongo.MongoClient(uri)[f"{config['MONGODB_DB_PREFIX']}_idem"]
        wait_until(lambda: db.effects.find_one({"_id": event["event_id"]}), timeout=30,
                   what="the event handled once the database is back")
        with entrypoint_hook(producer, "emit") as hook:  # the same event id again
            hook("thing.happened", {"key": "again"}, event_id=event["event_id"])
        wait_until(lambda: db.effects.find_one({"key": "again"}), timeout=10,
                   what="the redelivery handled again (no ledger skips it)")
        assert db.effects.count_documents({}) == 1
        assert db.handled_events.count_documents({}) == 0
        assert deadletters.list_dead_letters(config["AMQP_URI"], [queue]) == []
    finally:
        mesh_mod.stop_process(proc)


class BatchConsumer(ServiceBase):
    """``@handles(..., batch=...)``: records each call's batch; fails a whole call
    when one of its events has fail_times (which one failed is not known)."""

    name = "batcher"

    @handles("producer", "thing.happened", batch=10)
    def on_things(self, events):
        keys = [event["data"]["key"] for event in events]
        self.store.db.calls.insert_one({"keys": keys})
        for event in events:
            attempts = self.store.db.attempts.find_one_and_update(
                {"_id": event["data"]["key"]}, {"$inc": {"n": 1}}, upsert=True,
                return_document=pymongo.ReturnDocument.AFTER)["n"]
            if attempts <= event["data"].get("fail_times", 0):
                raise RuntimeError(f"boom {event['data']['key']}")
        self.store.db.effects.insert_many([{"key": k} for k in keys])


class LedgerlessBatchConsumer(BatchConsumer):
    """The same handler without the handled-events ledger (``idempotent=True``)."""

    @handles("producer", "thing.happened", batch=10, idempotent=True)
    def on_things(self, events):
        BatchConsumer.on_things(self, events)


def batch_mesh(container_factory, config, batcher_config=None, batcher=BatchConsumer):
    """A started ``batcher`` (with ``batcher_config``, else ``config``) and
    Producer, and the batcher's database."""
    batcher = container_factory(batcher, batcher_config or config)
    producer = container_factory(Producer, config)
    batcher.start()
    producer.start()
    return producer, pymongo.MongoClient(config["MONGODB_URI"], tz_aware=True)[
        f"{config['MONGODB_DB_PREFIX']}_batcher"]


def test_a_batch_handler_gets_events_together_and_a_poison_one_is_parked_alone(
        container_factory, config):
    producer, db = batch_mesh(container_factory, config)
    with entrypoint_hook(producer, "emit") as hook:
        first = hook("thing.happened", {"key": "b0"})
    wait_until(lambda: effects(db, "b0") == 1, what="the first event")
    keys = [f"b{i}" for i in range(1, 40)]
    with entrypoint_hook(producer, "emit_many") as hook:  # published at once
        sent = dict(zip(keys, hook("thing.happened", [
            {"key": k, **({"fail_times": 99} if k == "b7" else {})} for k in keys]), strict=True))
    with entrypoint_hook(producer, "emit") as hook:  # the first again: a duplicate
        hook("thing.happened", {"key": "b0"}, event_id=first["event_id"])
    good = [k for k in keys if k != "b7"]
    wait_until(lambda: all(effects(db, k) == 1 for k in good), timeout=20,
               what="every good event of the batches")
    queue = "evt-producer-thing.happened--batcher.on_things"
    parked = wait_until(lambda: deadletters.list_dead_letters(config["AMQP_URI"], [queue]),
                        what="the poison event parked")
    assert [p["event_id"] for p in parked] == [sent["b7"]["event_id"]]
    assert parked[0]["attempts"] == config["EVENT_MAX_ATTEMPTS"]
    # its neighbours were tried again alone and handled once; the duplicate not at all
    assert all(effects(db, k) == 1 for k in ["b0", *good]) and effects(db, "b7") == 0
    sizes = [len(call["keys"]) for call in db.calls.find()]
    assert max(sizes) > 1 and max(sizes) <= 10
    # b7 alone failed EVENT_MAX_ATTEMPTS times, after at most one failed batch that held it
    # (it may also have come alone from the start: a batch is what is waiting)
    assert db.attempts.find_one({"_id": "b7"})["n"] in (config["EVENT_MAX_ATTEMPTS"],
                                                         config["EVENT_MAX_ATTEMPTS"] + 1)


@pytest.mark.parametrize("batcher", [BatchConsumer, LedgerlessBatchConsumer])
def test_an_event_a_batch_holds_twice_is_handled_once(container_factory, config, batcher):
    """A redelivered copy in the same batch as its first copy (the ledger's one claim
    answered both; without a ledger both find their writes new): never handed to
    the handler together, and its message acked. With the ledger, handled once."""
    producer, db = batch_mesh(container_factory, config, batcher=batcher)
    keys = [f"t{i}" for i in range(20)]
    with entrypoint_hook(producer, "emit_twins") as hook:  # t0, t0, t1, t1, ... at once
        hook("thing.happened", [{"key": k} for k in keys])
    wait_until(lambda: all(effects(db, k) >= 1 for k in keys), timeout=20,
               what="every event")
    queue = "evt-producer-thing.happened--batcher.on_things"
    wait_until(lambda: declared_queues(config)[queue].get("messages") == 0, timeout=15,
               what="every copy acked")
    calls = [call["keys"] for call in db.calls.find()]
    assert max(len(c) for c in calls) > 1  # batches, not one event at a time
    assert all(len(c) == len(set(c)) for c in calls), calls
    if batcher is BatchConsumer:  # without the ledger, copies in two batches run twice
        assert {k: effects(db, k) for k in keys} == {k: 1 for k in keys}


def test_a_batch_finds_more_waiting_than_the_services_workers(container_factory, config):
    """A batch handler's consumer has a prefetch of its own (``EVENT_BATCH_PREFETCH``),
    not ``max_workers``: with 4 workers, a burst is still handled in batches of up to
    the handler's 10, each event once."""
    producer, db = batch_mesh(container_factory, config,
                              {**config, "max_workers": 4, "EVENT_CONCURRENCY": 2})
    keys = [f"p{i}" for i in range(120)]
    with entrypoint_hook(producer, "emit_many") as hook:  # published at once
        hook("thing.happened", [{"key": k} for k in keys])
    wait_until(lambda: all(effects(db, k) == 1 for k in keys), timeout=30,
               what="every event of the burst")
    sizes = [len(call["keys"]) for call in db.calls.find()]
    assert sum(sizes) == 120 and max(sizes) > 4


def run_cli(config, tmp_path, *args):
    """The operator CLI, as a separate process, against this test's broker."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in config.items() if k != "RATE_LIMITS"}))
    result = subprocess.run([sys.executable, "-m", "ops.cli", "--config", str(path), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_same_event_delivered_twice_changes_state_once(mesh):
    producer, _, db = mesh
    first = emit(producer, "dup")
    with entrypoint_hook(producer, "emit") as hook:
        hook("thing.happened", {"key": "dup"}, event_id=first["event_id"])
    emit(producer, "marker")
    wait_until(lambda: effects(db, "marker") == 1, what="the marker event")
    wait_until(lambda: db.attempts.find_one({"_id": "dup"}) is not None)
    assert effects(db, "dup") == 1
    assert db.attempts.find_one({"_id": "dup"})["n"] == 1


def test_events_commit_with_the_state_change_or_not_at_all(mesh):
    producer, _, db = mesh
    with entrypoint_hook(producer, "emit_in_transaction") as hook, pytest.raises(ValueError):
        hook("aborted", abort=True)
    with entrypoint_hook(producer, "emit_in_transaction") as hook:
        hook("committed")
    emit(producer, "marker2")
    wait_until(lambda: effects(db, "marker2") == 1 and effects(db, "committed") == 1)
    assert effects(db, "aborted") == 0


def test_an_event_left_in_the_outbox_by_a_crash_is_relayed(container_factory, make_config):
    config = make_config(OUTBOX_GRACE_SECONDS=0.1)
    consumer = container_factory(Consumer, config)
    consumer.start()
    client = pymongo.MongoClient(config["MONGODB_URI"], tz_aware=True)
    producer_db = client[f"{config['MONGODB_DB_PREFIX']}_producer"]
    # what a producer that died between its commit and the publish leaves behind
    from shared.events import make_envelope
    from shared.mongo import BaseStore

    envelope = make_envelope("thing.happened", {"key": "orphan"}, producer="producer")
    BaseStore(producer_db).outbox_add([envelope])
    container_factory(Producer, config).start()  # its relay finds it
    consumer_db = client[f"{config['MONGODB_DB_PREFIX']}_consumer"]
    wait_until(lambda: effects(consumer_db, "orphan") == 1, timeout=10, what="the relayed event")
    wait_until(lambda: producer_db.outbox.find_one({"_id": envelope["event_id"]})["state"] == "sent")


class Caller(ServiceBase):
    name = "caller"
    sleeper = ServiceRpc("sleeper", timeout=0.5)

    @rpc
    def call_sleeper(self):
        return self.sleeper.nap()


class Sleeper(ServiceBase):
    name = "sleeper"

    @rpc
    def nap(self):
        return "rested"


def test_rpc_to_a_stopped_service_times_out_within_the_limit(container_factory, config):
    sleeper = container_factory(Sleeper, config)
    caller = container_factory(Caller, config)
    sleeper.start()
    caller.start()
    with entrypoint_hook(caller, "call_sleeper") as call:
        assert call() == "rested"
    sleeper.stop()
    started = eventlet.hubs.get_hub().clock()
    with entrypoint_hook(caller, "call_sleeper") as call, pytest.raises(Timeout) as exc:
        call()
    assert eventlet.hubs.get_hub().clock() - started < 2
    assert "sleeper" in exc.value.detail


class GhostCaller(ServiceBase):
    name = "ghost_caller"
    ghost = ServiceRpc("ghost", timeout=60)

    @rpc
    def call_ghost(self):
        return self.ghost.boo()

    @rpc
    def call_ghost_twice(self):
        first, second = self.ghost.boo.call_async(), self.ghost.boo.call_async()
        return [type(exc).__name__ for exc in (_raised(first), _raised(second))]


def _raised(reply):
    try:
        reply.result()
    except Exception as exc:
        return exc
    return None


def test_rpc_to_a_service_that_never_ran_is_unavailable_not_a_timeout(container_factory, config):
    """No queue is bound to ghost.* on this broker: the request comes back
    (mandatory) and the call fails with 503 instead of waiting out its 60 s."""
    caller = container_factory(GhostCaller, config)
    caller.start()
    with entrypoint_hook(caller, "call_ghost") as call, pytest.raises(Unavailable) as exc:
        call()
    assert "ghost" in exc.value.detail
    with entrypoint_hook(caller, "call_ghost_twice") as call:
        assert call() == ["Unavailable", "Unavailable"]


def test_the_rpc_link_comes_back_after_the_broker_closed_it(container_factory, config):
    """The broker closes every connection of the vhost (a restart, a failover):
    the next calls open the link again and are answered."""
    sleeper = container_factory(Sleeper, config)
    caller = container_factory(Caller, config)
    sleeper.start()
    caller.start()
    with entrypoint_hook(caller, "call_sleeper") as call:
        assert call() == "rested"
    vhost = config["AMQP_URI"].rsplit("/", 1)[1]
    # the management API lists connections a few seconds late; at least each
    # container's consumer and its link
    connections = wait_until(
        lambda: (lambda found: found if len(found) >= 4 else None)(requests.get(
            f"{RABBIT_MGMT}/api/vhosts/{vhost}/connections", auth=RABBIT_AUTH, timeout=10).json()),
        timeout=30, interval=0.5, what="the vhost's connections listed")
    for connection in connections:
        requests.delete(f"{RABBIT_MGMT}/api/connections/{connection['name']}",
                        auth=RABBIT_AUTH, timeout=10)

    def answered():
        try:
            with entrypoint_hook(caller, "call_sleeper") as call:
                return call() == "rested"
        except (Timeout, Unavailable):
            return False

    wait_until(answered, timeout=30, interval=0.2, what="a call after the broker closed the link")


def test_rate_limiter_admits_exactly_the_limit_under_50_green_threads(config, unique):
    client = make_client(config)  # test_redis_cluster runs this on a cluster too
    limiter = RateLimiter(client, "test")
    limit = Limit(20, 60)
    pool = eventlet.GreenPool(50)
    decisions = list(pool.imap(lambda _: limiter.hit(f"test:rl:{unique}", limit), range(50)))
    assert sum(d.allowed for d in decisions) == 20
    assert all(d.retry_after > 0 for d in decisions if not d.allowed)


@pytest.mark.parametrize("text", ["1/0.0005", "10000000/1"])
def test_a_limit_past_the_millisecond_clock_decides_instead_of_failing(config, unique, text):
    """A period under 1 ms, or a limit above ~8 million a second, once made the script
    set an expiry of 0 ms, which Redis refuses: the anonymous limiter failed open (a
    Redis error counted) and the gateway's checks answered 503. Now each hit is
    decided by the script: allowed at first; a period under 1 ms counts as 1 ms, so
    two hits within one millisecond are limited."""
    from prometheus_client import REGISTRY

    from gateway_svc.checks import RequestChecks

    client = make_client(config)
    service = f"test-{unique}"
    limiter, limit = RateLimiter(client, service), Limit.parse(text)
    errors = lambda: REGISTRY.get_sample_value(  # noqa: E731
        "redis_errors_total", {"service": service, "what": "ratelimit"}) or 0.0
    assert limiter.hit(f"test:rl:{unique}", limit).allowed
    checked = RequestChecks(client).run({"jti": f"j{unique}"}, f"gateway:rl:{unique}", limit, None)
    assert checked.decision is not None and checked.decision.allowed  # not a 503
    if limit.period < 0.001:
        wait_until(lambda: not limiter.hit(f"test:rl:{unique}", limit).allowed, timeout=10,
                   interval=0, what="a hit limited within the millisecond of the one before")
        wait_until(lambda: not RequestChecks(client).run(
            {"jti": f"j{unique}"}, f"gateway:rl:{unique}", limit, None).decision.allowed,
            timeout=10, interval=0, what="the gateway's checks limiting a hit")
    assert errors() == 0.0  # every decision came from the script, none failed open


class Lister(ServiceBase):
    name = "lister"

    @rpc
    def list_things(self):
        return self.redis.cache.get_or_set(
            "lister:things", lambda: [d["name"] for d in self.store.db.things.find()],
            tags=["things"])


def test_cache_serves_from_mongodb_while_redis_is_unreachable(container_factory, make_config):
    config = make_config(REDIS_URI="redis://127.0.0.1:1/0", REDIS_TIMEOUT=0.2)
    container = container_factory(Lister, config)
    container.start()
    db = pymongo.MongoClient(config["MONGODB_URI"])[f"{config['MONGODB_DB_PREFIX']}_lister"]
    db.things.insert_many([{"name": "a"}, {"name": "b"}])
    with entrypoint_hook(container, "list_things") as list_things:
        assert list_things() == ["a", "b"]
    db.things.insert_one({"name": "c"})
    with entrypoint_hook(container, "list_things") as list_things:
        assert list_things() == ["a", "b", "c"]  # no cache: straight from the store
    with entrypoint_hook(container, "health") as health:
        report = health()
    assert report["checks"]["redis"]["ok"] is False and report["checks"]["mongodb"]["ok"]


def test_cache_tags_invalidate_what_was_cached_under_them(config, unique):
    client = make_client(config)  # test_redis_cluster runs this on a cluster too
    cache = Cache(client, f"test{unique}")
    cache.set(f"k1:{unique}", {"v": 1}, tags=["org:1"])
    cache.set(f"k2:{unique}", {"v": 2}, tags=["org:2"])
    cache.invalidate_tags("org:1")
    assert cache.get(f"k1:{unique}") is None
    assert cache.get(f"k2:{unique}") == {"v": 2}
    assert 0 < client.ttl(f"k2:{unique}") <= 300


def test_a_missing_versioned_entry_is_computed_once_however_many_callers_miss_it(config, unique):
    """Forty callers miss the same entry at once (a version bump emptied a busy list):
    one computes it, the others get its text; when that one fails, one waiter computes
    in its place, and the rest still get one answer."""
    cache = Cache(make_client(config), f"test{unique}")
    version = f"test{unique}:version"
    computed = []

    def compute(fail=False):
        computed.append(fail)
        eventlet.sleep(0.05)  # the RPC behind a miss
        if fail:
            raise RuntimeError("the computing call failed")
        return {"items": [len(computed)]}

    def ask(fail=False):
        try:
            return cache.get_or_set_text(f"list:{unique}", lambda: compute(fail), ttl=30,
                                         versions=[version])
        except RuntimeError as exc:
            return str(exc)

    pool = eventlet.GreenPool()
    answers = list(pool.imap(lambda _: ask(), range(40)))
    assert computed == [False] and set(answers) == {json.dumps({"items": [1]})}

    cache.bump_versions([version])
    computed.clear()
    first = eventlet.spawn(ask, True)  # takes the flight, then fails
    eventlet.sleep(0.01)
    answers = list(pool.imap(lambda _: ask(), range(20)))
    assert first.wait() == "the computing call failed"
    assert computed == [True, False] and set(answers) == {json.dumps({"items": [2]})}


def test_indexes_and_migrations_are_applied_at_start_once(container_factory, make_config):
    def backfill(db):
        db.things.update_many({"size": {"$exists": False}}, {"$set": {"size": 0}})
        db.runs.insert_one({"ran": True})

    class ThingStore(BaseStore):
        INDEXES = {"things": [pymongo.IndexModel("name", unique=True, name="name_unique")]}
        MIGRATIONS = [("0001_backfill_size", backfill)]

    class Indexed(ServiceBase):
        name = "indexed"
        store = Mongo(ThingStore)

    config = make_config()
    db = pymongo.MongoClient(config["MONGODB_URI"])[f"{config['MONGODB_DB_PREFIX']}_indexed"]
    db.things.insert_one({"name": "old"})
    first = container_factory(Indexed, config)
    first.start()
    assert "name_unique" in db.things.index_information()
    assert any("at" in dict(i["key"]) for i in db.handled_events.index_information().values())
    assert db.things.find_one({"name": "old"})["size"] == 0
    first.stop()
    second = container_factory(Indexed, config)
    second.start()  # a restart does not run it again
    assert db.runs.count_documents({}) == 1
    with entrypoint_hook(second, "migrations") as migrations:
        assert [(m["_id"], m["state"]) for m in migrations()] == [("0001_backfill_size", "done")]


def test_rpc_proxy_without_timeout_is_not_used_by_services():
    # every proxy in the project goes through ServiceRpc (timeouts); guard the habit
    import pathlib

    offenders = [str(p) for p in pathlib.Path(".").glob("*_svc/**/*.py")
                 if "RpcProxy(" in p.read_text()]
    assert offenders == [] and RpcProxy  # noqa: B015


class OrgWriter(ServiceBase):
    name = "writer"

    @rpc
    def change(self, org_id):
        self.events.publish("thing.changed", {"org_id": org_id}, org_id=org_id)


def test_publishing_an_org_event_makes_cached_answers_for_that_org_stale(
        container_factory, config, unique):
    from shared.redis import RedisTools, make_cache_client, org_version_key

    writer = container_factory(OrgWriter, config)
    writer.start()
    cache = RedisTools(make_client(config), "gateway", 60, make_cache_client(config)).cache
    computed = []

    def read(org):
        return cache.get_or_set(f"gateway:cache:things:{org}:{unique}",
                                lambda: computed.append(org) or len(computed),
                                versions=[org_version_key("writer", org)])

    org_a, org_b = f"a{unique}", f"b{unique}"
    assert read(org_a) == 1 and read(org_a) == 1 and read(org_b) == 2  # second read: a hit
    with entrypoint_hook(writer, "change") as change:
        change(org_a)
    assert read(org_a) == 3  # the write is visible to the very next read
    assert read(org_b) == 2  # other orgs keep their cached answers


class Recorder(ServiceBase):
    name = "recorder"
    store = Mongo(BaseStore)

    @rpc
    def record(self):
        self.events.publish("thing.recorded", {"n": 1})


def test_health_reports_the_outbox_backlog_events_not_sent_yet(container_factory, make_config):
    config = make_config(OUTBOX_GRACE_SECONDS=3600)  # the relay leaves what is written here alone
    container = container_factory(Recorder, config)
    container.start()
    db = pymongo.MongoClient(config["MONGODB_URI"])[f"{config['MONGODB_DB_PREFIX']}_recorder"]
    with entrypoint_hook(container, "health") as health:
        assert health()["outbox"] == {"pending": 0, "oldest_s": None}
    with entrypoint_hook(container, "record") as record:
        record()  # recorded and sent at once
    db.outbox.insert_one({"_id": "stuck-1", "state": "pending", "created_at": datetime.now(timezone.utc),
                          "envelope": {"event_id": "stuck-1", "event_type": "thing.recorded"}})
    with entrypoint_hook(container, "health") as health:
        report = health()
    assert report["outbox"]["pending"] == 1 and report["outbox"]["oldest_s"] >= 0
    assert db.outbox.count_documents({"state": "sent"}) == 1


def test_claims_made_at_the_same_moment_are_one_write_and_each_event_is_claimed_once(config):
    """The claims (and finishes) of handlers waiting at the same moment go to the server
    together; each event is still claimed once, and taken over only once its lease ends."""
    from pymongo import monitoring

    class Inserts(monitoring.CommandListener):
        count = 0

        def started(self, event):
            if event.command_name == "insert" and event.command.get("insert") == "handled_events":
                Inserts.count += 1

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    client = pymongo.MongoClient(config["MONGODB_URI"], event_listeners=[Inserts()], tz_aware=True)
    store = BaseStore(client[f"{config['MONGODB_DB_PREFIX']}_claims"])
    pool = eventlet.GreenPool()
    claims = list(pool.imap(lambda n: store.claim_event(f"svc.on_{n % 3}", f"e{n}", 30_000), range(30)))
    assert claims == [("claimed", 0)] * 30
    assert Inserts.count < 10  # 30 claims; the first round alone, then whatever waited
    again = list(pool.imap(lambda n: store.claim_event("svc.on_0", f"e{n}", 30_000), (0, 0, 3)))
    assert [state for state, _ in again] == ["busy"] * 3 and all(left > 20_000 for _, left in again)
    list(pool.imap(lambda n: store.finish_event("svc.on_0", f"e{n}"), (0, 3)))
    assert store.claim_event("svc.on_0", "e0", 30_000) == ("done", 0)
    # a lease that ended (its worker died) is taken over by one of two claims, not both
    store.db.handled_events.update_one({"_id": "svc.on_1:e1"}, {"$set": {
        "lease_until": datetime(2020, 1, 1, tzinfo=timezone.utc)}})
    both = list(pool.imap(lambda _: store.claim_event("svc.on_1", "e1", 30_000), range(2)))
    assert sorted(state for state, _ in both) == ["busy", "claimed"]
    # and one event delivered twice at once, its two claims in one round: one runs
    first = eventlet.spawn(store.claim_event, "svc.on_2", "e-first", 30_000)
    eventlet.sleep(0)  # being written: the next two wait for the next round together
    twice = list(pool.imap(lambda _: store.claim_event("svc.on_2", "e-twice", 30_000), range(2)))
    assert first.wait() == ("claimed", 0) and sorted(s for s, _ in twice) == ["busy", "claimed"]


def test_a_released_claim_is_taken_over_at_once_and_a_finished_one_stays_done(config):
    """A failed handler releases its claim (its event is retried, or run alone): the
    next claim takes it at once, where an unreleased one would wait out its lease;
    releasing an event that was finished leaves it done (no second run)."""
    store = BaseStore(pymongo.MongoClient(config["MONGODB_URI"], tz_aware=True)[
        f"{config['MONGODB_DB_PREFIX']}_release"])
    assert store.claim_event("svc.on_x", "e1", 30_000) == ("claimed", 0)
    assert store.claim_event("svc.on_x", "e1", 30_000)[0] == "busy"
    store.release_event("svc.on_x", "e1")
    assert store.claim_event("svc.on_x", "e1", 30_000) == ("claimed", 0)
    assert store.claim_event("svc.on_x", "e1", 30_000)[0] == "busy"  # held again
    store.finish_event("svc.on_x", "e1")
    store.release_event("svc.on_x", "e1")
    assert store.claim_event("svc.on_x", "e1", 30_000) == ("done", 0)


def test_two_relays_claim_each_pending_outbox_entry_once(config):
    """A pending entry past its grace period goes to one relay; one still inside it, or
    sent, to none (the claim is a write by ``_id`` alone, not a findAndModify)."""
    client = pymongo.MongoClient(config["MONGODB_URI"])
    store = BaseStore(client[f"{config['MONGODB_DB_PREFIX']}_relays"])
    old, now = datetime(2020, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc)
    store.db.outbox.insert_many([
        {"_id": f"old-{n}", "state": "pending", "created_at": old, "envelope": {"event_id": f"old-{n}"}}
        for n in range(20)] + [
        {"_id": "fresh", "state": "pending", "created_at": now, "envelope": {"event_id": "fresh"}},
        {"_id": "sent", "state": "sent", "created_at": old, "envelope": {"event_id": "sent"}}])
    claimed: list = []
    pool = eventlet.GreenPool()
    for _ in range(4):
        pool.spawn(lambda: claimed.extend(store.outbox_claim_pending(60, 500)))
    pool.waitall()
    assert sorted(e["event_id"] for e in claimed) == sorted(f"old-{n}" for n in range(20))
    assert store.outbox_claim_pending(60, 500) == []  # re-armed: inside the grace period again


def test_find_by_id_answers_as_the_query_with_its_conditions_would(config):
    """``find_by_id`` (and ``find_by_ids``) reads by ``_id`` alone (the one shape SecantusDB serves from its
    primary key) and compares the other fields itself: same answers as the query."""
    client = pymongo.MongoClient(config["MONGODB_URI"])
    things = client[f"{config['MONGODB_DB_PREFIX']}_byid"].things
    things.insert_many([{"_id": "a", "org_id": "o1", "deleted": False, "n": 1},
                        {"_id": "b", "org_id": "o1", "deleted": True},
                        {"_id": "c", "org_id": "o2"}])
    cases = [("a", {"org_id": "o1", "deleted": False}), ("a", {"org_id": "o2"}),
             ("b", {"org_id": "o1", "deleted": False}), ("c", {"deleted": None}),
             ("c", {"deleted": False}), ("zz", {}), ("a", {})]
    for _id, equal in cases:
        assert find_by_id(things, _id, **equal) == things.find_one({"_id": _id, **equal}), equal
    assert find_by_id(things, "a", {"n": 1}, org_id="o1") == {"_id": "a", "n": 1, "org_id": "o1"}
    assert find_by_id(things, "a", {"n": 1}, org_id="o2") is None
    for equal in ({"org_id": "o1"}, {"deleted": {"$ne": True}}, {"org_id": {"$in": ["o2", "x"]}},
                  {"deleted": None}, {}):
        query = {"_id": {"$in": ["c", "a", "b", "zz", "a"]}, **equal}
        assert find_by_ids(things, ["c", "a", "b", "zz", "a"], **equal) == list(
            things.find(query).sort("_id", 1)), equal
    client.drop_database(things.database.name)


def test_write_at_version_loses_no_concurrent_change_and_refuses_what_does_not_hold(config):
    """Twenty writers changing one document at once: every change lands, each bumps
    the version once, and each sees the document as it was just before its own."""
    client = pymongo.MongoClient(config["MONGODB_URI"])
    things = client[f"{config['MONGODB_DB_PREFIX']}_atversion"].things
    things.insert_one({"_id": "t", "org_id": "o1", "deleted": False})
    pool = eventlet.GreenPool(20)
    befores = list(pool.imap(lambda i: write_at_version(things, "t", {f"f{i}": i}, org_id="o1"),
                             range(20)))
    doc = things.find_one({"_id": "t"})
    assert doc["version"] == 20 and all(doc[f"f{i}"] == i for i in range(20))
    assert sorted(b.get("version") or 0 for b in befores) == list(range(20))
    assert write_at_version(things, "t", {"x": 1}, org_id="o2") is None
    assert write_at_version(things, "t", {"x": 1}, version={"$in": [0, None]}) is None
    assert write_at_version(things, "nope", {"x": 1}) is None
    assert things.find_one({"_id": "t"})["version"] == 20 and "x" not in things.find_one({"_id": "t"})
    # the caller's copy, read before someone else's change: written over the fresh one
    stale = things.find_one({"_id": "t"})
    things.update_one({"_id": "t"}, {"$inc": {"version": 1}})
    assert write_at_version(things, "t", {"y": 1}, stale)["version"] == 21
    assert things.find_one({"_id": "t"})["version"] == 22
    client.drop_database(things.database.name)
