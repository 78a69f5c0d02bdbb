"""The outbox relay's gate (shared.events.RelayGate) against real RabbitMQ, Redis and
SecantusDB: the relay reads MongoDB only after a failed publish (signalled to every
replica through Redis), as a process starts, and once per OUTBOX_SWEEP_SECONDS; an
event whose publish failed still goes out promptly, by another replica."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import eventlet
import pymongo
import pytest
from kombu import Connection, Exchange, Queue
from nameko.testing.services import entrypoint_hook
from pymongo import monitoring

from shared.events import Events, handles, make_envelope
from shared.mongo import BaseStore
from shared.redis import make_client
from shared.rpc import rpc
from shared.service import ServiceBase
from tests.helpers import wait_until


class Sender(ServiceBase):
    name = "relaysender"

    @rpc
    def emit(self, key):
        self.events.publish("thing.happened", {"key": key})

    @rpc
    def emit_now(self, key):
        self.events.publish_now([self.events.envelope("thing.happened", {"key": key})])

    @rpc
    def emit_refused_now(self, key):
        self.events.publish_now([self.events.envelope("thing.refused", {"key": key})])

    @rpc
    def emit_then_fail(self, key):
        """Like auth's unlock link: the event commits with a write, then the call fails
        (and so publishes nothing itself)."""
        def write(session):
            self.store.db.things.insert_one({"_id": key}, session=session)
            self.events.publish("thing.happened", {"key": key}, session=session)

        self.store.run_transaction(write)
        raise ValueError("failed after its commit")


class Counter(ServiceBase):
    name = "relaycounter"

    @handles("relaysender", "thing.happened")
    def on_thing(self, event):
        self.store.db.effects.update_one({"_id": event["data"]["key"]}, {"$inc": {"n": 1}},
                                         upsert=True)


class OutboxReads(monitoring.CommandListener):
    """The ``find``s on one database's outbox (the relay's reads; a global listener,
    registered once: it sees the clients of the containers started after it)."""

    def __init__(self):
        self.database, self.count = None, 0

    def started(self, event):
        if event.database_name == self.database and event.command_name == "find" \
                and event.command.get("find") == "outbox":
            self.count += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


READS = OutboxReads()
monitoring.register(READS)


def start(container_factory, make_config, replicas=1, **overrides):
    config = make_config(OUTBOX_GRACE_SECONDS=0.5, **overrides)
    READS.database, READS.count = f"{config['MONGODB_DB_PREFIX']}_relaysender", 0
    container_factory(Counter, config).start()
    senders = [container_factory(Sender, config) for _ in range(replicas)]
    for sender in senders:
        sender.start()
    client = make_client(config)
    unsent = f"relaysender:outbox:unsent:{config['MONGODB_DB_PREFIX']}"
    # each start opened the gate (a crash may have left events): wait until it closes
    wait_until(lambda: not client.exists(unsent), timeout=30, interval=0.1,
               what="the start-up window to end")
    mongo = pymongo.MongoClient(config["MONGODB_URI"], tz_aware=True)
    prefix = config["MONGODB_DB_PREFIX"]
    return config, senders, client, unsent, mongo[f"{prefix}_relaysender"], \
        mongo[f"{prefix}_relaycounter"]


def relay_ticks(client, config, count):
    """Wait for ``count`` periods of the relay timer, from the next one on, to be
    claimed (by any replica: the one that runs the relay that period)."""
    seen: set[int] = set()
    first = int(time.time() // 2) + 1

    def claimed():
        period = int(time.time() // 2)
        for p in (period - 1, period):
            if p >= first and client.exists(
                    f"relaysender:timer:{config['MONGODB_DB_PREFIX']}:relay_outbox:{p}"):
                seen.add(p)
        return len(seen) >= count

    wait_until(claimed, timeout=6 * count, interval=0.2, what=f"{count} relay ticks")


def unreachable_broker(events: Events) -> None:
    """The container's AMQP link opens again on a port where no broker listens."""
    events.link.uri = "pyamqp://guest:guest@127.0.0.1:1//"
    events.link.stop()  # the open connection is dropped; the next publish fails to open one


def effects(db, key):
    doc = db.effects.find_one({"_id": key})
    return doc["n"] if doc else 0


def test_an_idle_relay_reads_nothing_and_a_failed_publish_goes_out_by_another_replica(
        container_factory, make_config):
    config, (broken, _), client, unsent, sender_db, counter_db = start(
        container_factory, make_config, replicas=2, OUTBOX_SWEEP_SECONDS=3600)
    before = READS.count
    relay_ticks(client, config, 3)
    assert READS.count == before  # idle: three ticks, no read of the outbox

    # the broker is unreachable for one replica: its publish fails after the outbox write
    events = next(d for d in broken.dependencies if isinstance(d, Events))
    unreachable_broker(events)
    with entrypoint_hook(broken, "emit") as emit:
        emit("stranded")
    wait_until(lambda: client.exists(unsent), timeout=10, what="the failure signalled")
    broken.kill()  # and then that replica dies: only the other one can send it
    wait_until(lambda: effects(counter_db, "stranded") == 1, timeout=20, interval=0.1,
               what="the event relayed by the other replica")
    assert sender_db.outbox.find_one({"envelope.data.key": "stranded"})["state"] == "sent"


def test_the_sweep_relays_what_no_replica_signalled(container_factory, make_config):
    _, _, client, unsent, sender_db, counter_db = start(
        container_factory, make_config, OUTBOX_SWEEP_SECONDS=4)
    # what a replica killed between its outbox write and its publish leaves: no signal
    envelope = make_envelope("thing.happened", {"key": "orphan"}, producer="relaysender")
    BaseStore(sender_db).outbox_add([envelope])
    sender_db.outbox.update_one({"_id": envelope["event_id"]}, {"$set": {
        "created_at": datetime(2020, 1, 1, tzinfo=timezone.utc)}})
    assert not client.exists(unsent)
    wait_until(lambda: effects(counter_db, "orphan") == 1, timeout=20, interval=0.1,
               what="the sweep to relay the orphan")


def test_an_event_committed_by_a_call_that_then_failed_goes_out_promptly(
        container_factory, make_config):
    _, (sender,), _, _, _, counter_db = start(container_factory, make_config,
                                              OUTBOX_SWEEP_SECONDS=3600)
    with entrypoint_hook(sender, "emit_then_fail") as emit, pytest.raises(ValueError):
        emit("committed-then-failed")
    wait_until(lambda: effects(counter_db, "committed-then-failed") == 1, timeout=20,
               interval=0.1, what="the relay to send the committed event")


def test_an_event_published_now_that_the_broker_refused_goes_through_the_outbox(
        container_factory, make_config):
    """``publish_now`` writes no outbox entry, unless its publish fails: then the event
    is recorded after the call and relayed (here by the other replica), not lost."""
    config, (broken, working), client, unsent, sender_db, counter_db = start(
        container_factory, make_config, replicas=2, OUTBOX_SWEEP_SECONDS=3600)
    with entrypoint_hook(working, "emit_now") as emit_now:
        emit_now("at-once")
    wait_until(lambda: effects(counter_db, "at-once") == 1, timeout=10, interval=0.1,
               what="the event published at once")
    assert sender_db.outbox.count_documents({}) == 0

    events = next(d for d in broken.dependencies if isinstance(d, Events))
    unreachable_broker(events)
    with entrypoint_hook(broken, "emit_now") as emit_now:
        emit_now("refused")
    assert sender_db.outbox.find_one({"envelope.data.key": "refused"}) is not None
    broken.kill()
    wait_until(lambda: effects(counter_db, "refused") == 1, timeout=20, interval=0.1,
               what="the refused event relayed by the other replica")


def test_events_published_together_are_confirmed_each_and_a_refused_one_is_relayed(
        container_factory, make_config):
    """The AMQP link publishes a batch at once and waits for the broker's confirms
    together, while other green threads publish theirs. Each event stands alone:
    a queue that refuses one (full, ``reject-publish``) fails that one only, and it
    goes out later through the outbox, not lost."""
    config, (sender,), client, unsent, sender_db, counter_db = start(
        container_factory, make_config, OUTBOX_SWEEP_SECONDS=3600)
    events = next(d for d in sender.dependencies if isinstance(d, Events))
    with Connection(config["AMQP_URI"]) as conn:
        full = Queue("relay-full", Exchange("relaysender.events", type="topic", durable=True),
                     routing_key="thing.refused", durable=True,
                     queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
        full(conn.default_channel).declare()

        def batch(n: int) -> list[dict]:
            return [make_envelope("thing.happened", {"key": f"b{n}-{i}"}, producer="relaysender")
                    for i in range(5)]

        batches = [batch(n) for n in range(8)]
        pool = eventlet.GreenPool(8)
        results = list(pool.imap(events.publish_all, batches))
        assert results == [[e["event_id"] for e in b] for b in batches]
        wait_until(lambda: all(effects(counter_db, f"b{n}-{i}") == 1
                               for n in range(8) for i in range(5)),
                   timeout=10, interval=0.1, what="every confirmed event handled")

        ok = make_envelope("thing.happened", {"key": "beside"}, producer="relaysender")
        refused = make_envelope("thing.refused", {"key": "refused"}, producer="relaysender")
        assert events.publish_all([ok, refused, ok]) == [ok["event_id"], ok["event_id"]]

        # through publish_now, the refused one is recorded in the outbox after the call
        with entrypoint_hook(sender, "emit_refused_now") as emit:
            emit("kept")
        entry = sender_db.outbox.find_one({"envelope.data.key": "kept"})
        assert entry is not None and entry["envelope"]["event_type"] == "thing.refused"
        full(conn.default_channel).delete()  # the queue takes messages again
    with Connection(config["AMQP_URI"]) as conn:
        taken = Queue("relay-taken", Exchange("relaysender.events", type="topic", durable=True),
                      routing_key="thing.refused", durable=True)
        taken(conn.default_channel).declare()
        wait_until(lambda: conn.default_channel.queue_declare(
            "relay-taken", passive=True).message_count >= 1, timeout=20, interval=0.2,
            what="the refused event relayed")
