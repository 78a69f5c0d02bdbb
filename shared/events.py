"""Events: the envelope, the dispatcher, and handlers that never lose a message.

Publishing: ``self.events.publish("task.assigned", data, org_id=..., actor_id=...)``
wraps ``data`` in the envelope of docs/architecture.md and publishes it on the
service's ``{service}.events`` exchange with the event type as routing key,
through the service's outbox (see :class:`EventBus`).

Consuming: ``@handles("auth", "user.registered")`` declares a durable
SERVICE_POOL queue (nameko's naming) and adds what nameko lacks (docs/stack.md):

* **idempotency**: before running, the handler claims the event id in the
  service's MongoDB (``handled_events``: unique ``_id``, TTL); an id already
  handled is acked and skipped; an id another worker is handling right now
  (a concurrent redelivery) is looked at again when that worker's lease
  ends, so a crashed worker's claim cannot swallow the event. A handler
  idempotent by construction (``@handles(..., idempotent=True)``: a unique key
  per event in what it writes, or a refresh from the owner) keeps no ledger: a
  duplicate does its work again and changes nothing, and the claim and finish
  writes (two per event or batch, in every consuming service: 32% of
  SecantusDB's operation time in bench/load.py) are not made;
* **retries with back-off**: a failing handler's message is re-published,
  with its attempt count in the ``x-attempt`` header, to the retry queue of a
  small fixed set of delay tiers (``EVENT_RETRY_TIERS_MS``, e.g. 1 s, 5 s, 30 s,
  2 min: attempt n waits tier n, the last tier repeats) whose TTL dead-letters
  it back to the handler queue (``{queue}.retry.{tier_ms}``); a wait of any
  other length (another worker's lease) takes the next tier up, so a handler
  never has more retry queues than tiers;
* **dead letters**: after ``EVENT_MAX_ATTEMPTS`` attempts the message is
  parked in ``{queue}.dlq`` with the error, the attempt count and when. A
  MongoDB that cannot be reached is not the event's fault: such a failure is
  retried after the first tier and not counted, so an outage parks nothing and
  every event is handled when the database is back (as a claim that fails);
* **queue type**: ``EVENT_QUEUE_TYPE=quorum`` declares the handler, retry and
  dead-letter queues as quorum queues (replicated on a RabbitMQ cluster), the
  handler queue with ``x-delivery-limit`` (``EVENT_DELIVERY_LIMIT``): a message
  whose consumer keeps crashing before it settles goes to the dead-letter queue
  instead of looping forever. ``classic`` (the laptop default) keeps one-node
  classic queues; both are declared with the same names;
* retries, dead letters and replays go through the consuming service's own
  direct exchange ``{service}.handlers`` (never RabbitMQ's default exchange,
  which reaches every queue by name: a service's broker user may not write
  to it, docs/security.md);
* **a bounded time**: a handler's MongoDB operations run under its lease
  (``pymongo.timeout(EVENT_LEASE_MS)``, :class:`HandlerBudget`): one blocked
  behind a lock (a crashed client's transaction) fails and is retried, then
  parked where operators see it, instead of holding its message unseen; and a
  handler cannot go on writing after its claim has lapsed to another worker;
* **a bounded share of the process**: at most ``EVENT_CONCURRENCY`` events are
  handled at once per service process (all its handlers together), so a
  fan-out (a bulk job's thousands of ``task.assigned``) queues in RabbitMQ
  instead of taking every worker and database slot from the RPCs that
  answer users.

* **bulk handlers** (``@handles(..., bulk=True)``: a chunk of a bulk job, hundreds
  of documents written at once) also share ``EVENT_BULK_CONCURRENCY`` slots per
  process (1 by default). More chunks at once queue on SecantusDB's collection
  locks, hold users' requests behind them and can outlive the lease and be
  handled again (every write repeated); docs/developing.md has the figures;

* **batches** (``@handles(..., batch=N)``, opt-in): the method gets a *list*
  of up to N envelopes that arrived together (their consumer's prefetch is
  ``EVENT_BATCH_PREFETCH``, :class:`BatchQueueConsumer`), claimed and finished
  in one write each, so a fan-out of thousands of small events costs a handful
  of round trips per batch, not per event. Nothing waits for a batch to fill: a
  batch is what is waiting when a slot frees. When a batch fails, each of its messages is tried again alone
  (``x-alone``, after the first retry tier, not counted as an attempt), so one
  poison message is retried and parked by itself and its neighbours are not.
  A batch holds each event once: a redelivered copy that arrives beside its
  first copy is acked as a duplicate (with or without the ledger).

The original message is acked only once its successor (retry or dead letter)
is safely published; if that publish fails it is requeued instead, so nothing
is dropped.
"""
from __future__ import annotations

import hashlib
import logging
import sys
import time
import traceback
import uuid
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable, Iterable

import pymongo
import redis
from eventlet.semaphore import Semaphore
from kombu import Exchange, Queue, binding
from nameko.amqp.publish import Publisher as AmqpPublisher
from nameko.events import SERVICE_POOL, EventDispatcher, EventHandler
from nameko.exceptions import ContainerBeingKilled
from nameko.extensions import DependencyProvider
from nameko.messaging import QueueConsumer

from shared.amqp import AmqpLink
from shared.mongo import Mongo
from shared.redis import Redis, org_version_key
from shared.telemetry import (
    CORRELATION_KEY,
    EVENT_DEAD_LETTERS,
    EVENT_DUPLICATES,
    EVENT_HANDLED,
    EVENT_RETRIES,
)

log = logging.getLogger(__name__)

ENVELOPE_VERSION = 1
# nameko context data of an RPC: when its caller stops waiting (epoch s, shared.rpc);
# events do not carry it
DEADLINE_KEY = "deadline"
# nameko context data of a request: the client's address as the gateway saw it
# (gateway_svc.http.client_ip); it travels beside the correlation id into envelopes
CLIENT_IP_KEY = "client_ip"
ATTEMPT_HEADER = "x-attempt"
ALONE_HEADER = "x-alone"  # a message of a failed batch: handled by itself from now on
OUTBOX_RELAY_INTERVAL = 2  # s: ``ServiceBase.relay_outbox``'s timer


def derived_event_id(*parts: str) -> str:
    """A deterministic event id for an event a handler publishes: a re-run of the
    handler (a redelivery) sends the same id, so consumers see it once."""
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


def utcnow_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_envelope(event_type: str, data: dict, *, producer: str, org_id: str | None = None,
                  actor_id: str | None = None, correlation_id: str | None = None,
                  version: int = ENVELOPE_VERSION, event_id: str | None = None,
                  client_ip: str | None = None) -> dict:
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "event_type": event_type,
        "version": version,
        "occurred_at": utcnow_iso(),
        "producer": producer,
        "org_id": org_id,
        "actor_id": actor_id,
        "correlation_id": correlation_id,
        "client_ip": client_ip,
        "data": data,
    }


class EventBus:
    """What a worker gets from :class:`Events`.

    ``publish()`` records the event in the service's outbox and sends it when
    the entrypoint has returned successfully (before an RPC reply goes out),
    batching the outbox writes of one call. Pass ``session=`` (a MongoDB
    transaction of the state change) to write the outbox entry in that same
    transaction: then a crash anywhere after the commit cannot lose the event,
    because the relay (``ServiceBase.relay_outbox``) sends whatever is pending.
    """

    def __init__(self, provider: "Events", worker_ctx):
        self._provider = provider
        self._worker_ctx = worker_ctx
        self.producer = provider.container.service_name
        self.correlation_id = worker_ctx.data.get(CORRELATION_KEY)
        self.client_ip = worker_ctx.data.get(CLIENT_IP_KEY)
        self.pending: list[dict] = []      # to record and send after the call
        self.in_transaction: list[dict] = []  # written with a transaction, which may not commit
        self.recorded: list[dict] = []     # in the outbox (Events.record)
        self.carried: list[tuple[str, Any, list[dict]]] = []  # in the documents of a write

    def envelope(self, event_type: str, data: dict, **fields: Any) -> dict:
        return make_envelope(event_type, data, producer=self.producer,
                             correlation_id=self.correlation_id, client_ip=self.client_ip,
                             **fields)

    def publish(self, event_type: str, data: dict, *, org_id: str | None = None,
                actor_id: str | None = None, event_id: str | None = None,
                session=None) -> dict:
        envelope = self.envelope(event_type, data, org_id=org_id, actor_id=actor_id,
                                 event_id=event_id)
        if session is not None:
            self._provider.store.outbox_add([envelope], session=session)
            self.in_transaction.append(envelope)
        else:
            self.pending.append(envelope)
        return envelope

    def publish_now(self, envelopes: list[dict]) -> None:
        """Publish ``envelopes`` (:meth:`envelope`) at once, together, with no
        outbox entry (no write, no mark-sent).

        The outbox exists for events whose loss matters: a state change others
        must learn of. This is for an event that only *reports* something the
        service records itself, published *before* that record is written, with
        an id derived from it (:func:`derived_event_id`). A crash between the
        two leaves the record undone, so the work is done again and the event
        published again under the same id (consumers dedupe). One the broker
        does not confirm (or a broker that is down) is not raised (the work it
        reports is done): it falls back to ``publish()``, so it is recorded in
        the outbox after the call and relayed like any other, never lost; the
        outbox costs only then. Notifications' ``notification.sent`` is one
        (a batch's, after its emails went out): the delivery's ``sent`` record
        is the truth, the event tells audit and outside subscribers, and an
        outbox write and mark for each email were most of what SecantusDB did
        in a fan-out.

        It does not bump the org's cache versions (``worker_result`` does for
        ``publish()``): an event whose producer's cached answers it changes
        goes through ``publish()``."""
        provider = self._provider
        sent = set(provider.publish_all(envelopes, provider.get_message_headers(self._worker_ctx)))
        self.pending += [e for e in envelopes if e["event_id"] not in sent]  # recorded, relayed

    def capture(self, publish: Callable[[], Any]) -> list[dict]:
        """The envelopes ``publish()`` publishes, built but neither recorded nor sent:
        for a write that carries them in its document (``shared.mongo.carrying``),
        which then hands them to :meth:`carried_by`."""
        saved, self.pending = self.pending, []
        try:
            publish()
            return self.pending
        finally:
            self.pending = saved

    def carried_by(self, collection: str, _id: Any, envelopes: list[dict]) -> None:
        """``envelopes`` were written in document ``_id`` of ``collection``: recorded
        already; sent after the call, then taken out of the document."""
        if envelopes:
            self.carried.append((collection, _id, envelopes))

    def relay(self, older_than_s: float) -> int:
        return self._provider.relay(older_than_s)


class RelayGate:
    """When the outbox relay reads MongoDB: not on every tick, only when something
    may be pending. An entry is pending because its direct publish failed, because the
    call that committed it failed afterwards (it publishes nothing itself), or because
    a process died between its outbox write and its publish.

    * A publish that fails (here or in the relay itself), or a failed call that
      committed events (in a transaction, in a document that carries them), sets
      ``{service}:outbox:unsent:{deployment}`` for ``window_s``, the outbox grace
      period plus three ticks: every replica's relay reads while it is there, so the
      entry goes out within a tick of its grace period, whichever replica's timer
      wins (the one whose broker link failed may have died meanwhile). Each replica
      sets it as it starts too: a crash may have left entries behind.
    * Once ``sweep_s`` (``OUTBOX_SWEEP_SECONDS``) have passed without a read, a
      replica reads anyway (``{service}:outbox:sweep:{deployment}``, set by every
      read for ``sweep_s``): the safety net for what no one could signal (a replica
      killed before its publish; Redis down when it failed, beyond the failing
      replica's own window).
    * Redis unreachable: read, as a timer runs its tick then.

    That is about two reads a minute per service instead of thirty (one a tick)."""

    def __init__(self, client: redis.Redis, service: str, deployment: str, window_s: float,
                 sweep_s: float, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.unsent_key = f"{service}:outbox:unsent:{deployment}"
        self.sweep_key = f"{service}:outbox:sweep:{deployment}"
        self.window_ms = max(1, int(window_s * 1000))
        self.sweep_ms = max(1, int(sweep_s * 1000))
        self._clock = clock
        self._until = 0.0  # this process reads until then, whatever Redis says

    def open(self) -> None:
        """Something may be pending: every replica reads for the next window."""
        self._until = self._clock() + self.window_ms / 1000
        try:
            self.client.set(self.unsent_key, "1", px=self.window_ms)
        except redis.RedisError as exc:
            log.warning("could not tell the other replicas' relays to read the outbox: %s", exc)

    def should_read(self) -> bool:
        """Read on this tick? A read for any reason counts as the sweep (it claims
        whatever is pending): the next is due ``sweep_s`` after it."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(self.unsent_key)
            pipe.exists(self.sweep_key)
            unsent, swept = pipe.execute()
            read = self._clock() < self._until or bool(unsent) or not swept
            if read:
                self.client.set(self.sweep_key, "1", px=self.sweep_ms)
            return read
        except redis.RedisError as exc:
            log.warning("outbox relay: Redis unreachable, reading the outbox: %s", exc)
            return True


class Events(EventDispatcher):
    """Publishes enveloped events on ``{service}.events`` through an outbox
    (see :class:`EventBus`). Each event of an org bumps the service's version of it
    (the gateway's cached answers go stale), except the types in ``unversioned``:
    changes no cached answer shows."""

    def __init__(self, *args, unversioned: Iterable[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.unversioned = frozenset(unversioned)

    link = AmqpLink()

    def setup(self) -> None:
        super().setup()
        self.link.declare(self.exchange)
        mongo = next((d for d in self.container.dependencies if isinstance(d, Mongo)), None)
        if mongo is None:
            raise RuntimeError("Events needs a Mongo dependency for its outbox")
        self._mongo = mongo
        self._redis = next((d for d in self.container.dependencies if isinstance(d, Redis)), None)
        self._buses: dict = {}
        self.gate: RelayGate | None = None  # None: the relay reads on every tick

    def start(self) -> None:
        super().start()
        if self._redis is not None:
            config = self.container.config
            self.gate = RelayGate(
                self._redis.tools.client, self.container.service_name,
                str(config.get("MONGODB_DB_PREFIX", "workforce")),
                window_s=float(config.get("OUTBOX_GRACE_SECONDS", 5)) + 3 * OUTBOX_RELAY_INTERVAL,
                sweep_s=float(config.get("OUTBOX_SWEEP_SECONDS", 30)))
            self.gate.open()  # a crash before this start may have left events

    @property
    def store(self):
        return self._mongo.store

    def get_message_headers(self, worker_ctx) -> dict:
        # an RPC caller's deadline is not the deadline of what its events cause
        headers = super().get_message_headers(worker_ctx)
        headers.pop(self._get_header_name(DEADLINE_KEY), None)
        return headers

    def get_dependency(self, worker_ctx) -> EventBus:
        bus = EventBus(self, worker_ctx)
        self._buses[worker_ctx] = bus
        return bus

    def record(self, worker_ctx) -> None:
        """Write what the call published to the outbox, in one write. Entrypoints
        call this when the method succeeded and *before* they acknowledge their
        message or send their reply (``AppRpc``, ``ReliableEventHandler``): nameko
        runs ``worker_result`` only after that, and a crash in between must not
        lose the events of a call that looks done. Raises if MongoDB fails."""
        bus = self._buses.get(worker_ctx)
        if bus is not None and bus.pending:
            self.store.outbox_add(bus.pending)
            bus.recorded += bus.pending
            bus.pending = []

    def worker_result(self, worker_ctx, result=None, exc_info=None) -> None:
        bus = self._buses.get(worker_ctx)
        if bus is None or exc_info is not None:
            if bus is not None and self.gate is not None and (
                    bus.in_transaction or bus.recorded or bus.carried):
                self.gate.open()  # what the failed call committed goes via the relay: soon
            return  # a failed call publishes nothing it buffered; recorded ones go via the relay
        try:  # an exception here would take the whole container down
            if bus.pending:  # not recorded yet (the outbox was unreachable, or no entrypoint asked)
                try:
                    self.record(worker_ctx)
                except Exception as exc:  # still publish: better unrecorded than lost
                    log.warning("could not record %d events in the outbox: %s",
                                len(bus.pending), exc)
            # an envelope written in a transaction that was rolled back (or re-run)
            # never reached the outbox: only what is there is sent (the one read
            # this costs is skipped for the usual publish, recorded after the call)
            committed = self.store.outbox_pending([e["event_id"] for e in bus.in_transaction])
            envelopes = [*(e for e in bus.in_transaction if e["event_id"] in committed),
                         *bus.recorded, *bus.pending]
            carried = [e for _, _, mine in bus.carried for e in mine]
            if self._redis is not None:  # cached reads of these orgs are now stale
                self._redis.tools.cache.bump_versions(
                    {org_version_key(self.container.service_name, e["org_id"])
                     for e in [*envelopes, *carried]
                    if e.get("org_id") and e["event_type"] not in self.unversioned})
            headers = self.get_message_headers(worker_ctx)
            self.send(envelopes, headers)
            self.send_carried(bus.carried, headers)
        except Exception:
            log.exception("publishing the events of %s failed", worker_ctx)
            if self.gate is not None:
                self.gate.open()

    def worker_teardown(self, worker_ctx) -> None:
        self._buses.pop(worker_ctx, None)

    def publish_all(self, envelopes: list[dict], headers: dict | None = None) -> list[str]:
        """Publish, on the container's :class:`shared.amqp.AmqpLink` (confirmed
        together); the ids of those the broker confirmed. The others are left
        pending for the relay; a failure does not fail the call."""
        if not envelopes:
            return []
        try:
            confirmed = self.link.publish_confirmed(
                [(envelope, self.exchange.name, envelope["event_type"], headers or {})
                 for envelope in envelopes], serializer=self.container.serializer)
        except Exception as exc:  # noqa: BLE001 - the relay sends them
            log.warning("could not publish %d events now, the relay will: %s", len(envelopes), exc)
            confirmed = [False] * len(envelopes)
        else:
            if not all(confirmed):
                log.warning("the broker confirmed %d of %d events, the relay sends the others",
                            sum(confirmed), len(envelopes))
        sent = [envelope["event_id"] for envelope, ok in zip(envelopes, confirmed, strict=True)
                if ok]
        if len(sent) < len(envelopes) and self.gate is not None:
            self.gate.open()
        return sent

    def send(self, envelopes: list[dict], headers: dict | None = None) -> None:
        """Publish outbox entries and mark them sent."""
        sent = self.publish_all(envelopes, headers)
        if sent:
            try:
                self.store.outbox_mark_sent(sent)
            except Exception as exc:  # the relay may send them again; consumers dedupe
                log.warning("could not mark %d events sent: %s", len(sent), exc)

    def send_carried(self, carried: list[tuple[str, Any, list[dict]]],
                     headers: dict | None = None) -> None:
        """Publish the events documents carry, then take them out of each document."""
        for collection, _id, envelopes in carried:
            sent = self.publish_all(envelopes, headers)
            if sent:
                try:
                    self.store.carried_sent(collection, _id, sent)
                except Exception as exc:  # the relay sends them again; consumers dedupe
                    log.warning("could not mark %d events sent: %s", len(sent), exc)

    def relay(self, older_than_s: float, limit: int = 500) -> int:
        """Send outbox entries left pending (a crash, a broker outage), and the events
        of documents that still carry them; only when the gate says some may be
        pending (:class:`RelayGate`)."""
        if self.gate is not None and not self.gate.should_read():
            return 0
        envelopes = self.store.outbox_claim_pending(older_than_s, limit)
        if envelopes:
            self.send(envelopes, relay_headers(envelopes))
        carried = self.store.carried_pending(older_than_s, limit)
        for one in carried:
            self.send_carried([one], relay_headers(one[2]))
        if self.gate is not None and (len(envelopes) >= limit or len(carried) >= limit):
            self.gate.open()  # more than one batch: read again next tick
        return len(envelopes) + sum(len(one[2]) for one in carried)


def relay_headers(envelopes: list[dict]) -> dict:
    return {f"nameko.{CORRELATION_KEY}": e.get("correlation_id")
            for e in envelopes[:1] if e.get("correlation_id")}


DEFAULT_RETRY_TIERS_MS = (1000, 5000, 30_000, 120_000)


def parse_tiers(text) -> tuple[int, ...]:
    """``"1000,5000,30000"`` (or a list) -> sorted distinct positive delays in ms."""
    values = text.split(",") if isinstance(text, str) else list(text or ())
    tiers = tuple(sorted({int(v) for v in values if str(v).strip()}))
    if not tiers or tiers[0] <= 0:
        raise ValueError(f"EVENT_RETRY_TIERS_MS needs positive delays, got {text!r}")
    return tiers


def retry_delay_ms(attempt: int, tiers: tuple[int, ...]) -> int:
    """Back-off before attempt ``attempt + 1`` (attempt counts from 1): tier n,
    the last tier once they run out."""
    return tiers[min(attempt, len(tiers)) - 1]


def tier_for(delay_ms: float, tiers: tuple[int, ...]) -> int:
    """The shortest tier that waits at least ``delay_ms`` (else the longest)."""
    return next((tier for tier in tiers if tier >= delay_ms), tiers[-1])


def event_queue_type(config: dict) -> str:
    """``EVENT_QUEUE_TYPE``: ``classic`` (default) or ``quorum``."""
    return str(config.get("EVENT_QUEUE_TYPE") or "classic")


def queue_arguments(queue_type: str, **arguments) -> dict:
    """Declaration arguments of an event, retry or dead-letter queue."""
    if queue_type == "quorum":
        return {"x-queue-type": "quorum", **arguments}
    if queue_type != "classic":
        raise ValueError(f"EVENT_QUEUE_TYPE is classic or quorum, not {queue_type!r}")
    return arguments


def next_step(attempt: int, max_attempts: int) -> str:
    """After a failed ``attempt``: ``"retry"`` or ``"dead_letter"``."""
    return "retry" if attempt < max_attempts else "dead_letter"


def dlq_name(queue_name: str) -> str:
    return f"{queue_name}.dlq"


def handlers_exchange(queue_name: str) -> Exchange:
    """The direct exchange of the service that consumes ``queue_name`` (nameko
    names handler queues ``evt-{source}-{event}--{service}.{method}``): its
    handler, retry and dead-letter queues are bound to it by their names."""
    service = queue_name.rpartition("--")[2].partition(".")[0]
    return Exchange(f"{service}.handlers", type="direct", durable=True)


def retry_queue(queue_name: str, delay_ms: int, queue_type: str = "classic") -> Queue:
    # x-expires lets an idle retry queue go, but only after every message in
    # it has dead-lettered back (its TTL is far shorter than the expiry).
    exchange = handlers_exchange(queue_name)
    return Queue(f"{queue_name}.retry.{delay_ms}", exchange=exchange,
                 routing_key=f"{queue_name}.retry.{delay_ms}", durable=True,
                 queue_arguments=queue_arguments(queue_type, **{
                     "x-message-ttl": delay_ms, "x-dead-letter-exchange": exchange.name,
                     "x-dead-letter-routing-key": queue_name,
                     "x-expires": delay_ms + 300_000}))


def dead_letter_queue(queue_name: str, queue_type: str = "classic") -> Queue:
    return Queue(dlq_name(queue_name), exchange=handlers_exchange(queue_name),
                 routing_key=dlq_name(queue_name), durable=True,
                 queue_arguments=queue_arguments(queue_type) or None)


class Slots:
    """Two semaphores taken as one, ``first`` before ``then`` (a bulk handler's
    limit, then the process's: waiting for the first holds none of the second)."""

    def __init__(self, first: Semaphore, then: Semaphore):
        self.first, self.then = first, then

    def acquire(self) -> None:
        self.first.acquire()
        try:
            self.then.acquire()
        except BaseException:
            self.first.release()
            raise

    def release(self) -> None:
        self.then.release()
        self.first.release()


class BatchQueueConsumer(QueueConsumer):
    """The consumer of a service's batch handlers (``@handles(batch=N)``): a
    connection of its own whose prefetch is ``EVENT_BATCH_PREFETCH`` (200) per queue,
    not nameko's ``max_workers`` (20), which capped what a batch could find waiting
    (batches of ~5 of a fan-out's thousands). How many run at once is still bounded
    by the slots (``EVENT_CONCURRENCY``); the rest wait unacked, as in the queue."""

    @property
    def prefetch_count(self) -> int:
        return int(self.container.config.get("EVENT_BATCH_PREFETCH", 200))


class ReliableEventHandler(EventHandler):
    """See the module docstring. Always SERVICE_POOL with reliable delivery."""

    queue: Any  # a kombu Queue (nameko sets it in setup; kombu sets its attributes dynamically)

    def __init__(self, source_service: str, event_type: str, batch: int = 1, bulk: bool = False,
                 idempotent: bool = False, **kwargs):
        self.batch = max(1, int(batch))
        self.bulk = bulk
        self.idempotent = idempotent  # no handled-events ledger (see the module docstring)
        if self.batch > 1:
            self.queue_consumer = BatchQueueConsumer()
        self._waiting: list[tuple[Any, Any]] = []  # batchable messages not yet claimed
        self._collector = None
        super().__init__(source_service, event_type, handler_type=SERVICE_POOL,
                         reliable_delivery=True, requeue_on_error=False, **kwargs)

    def setup(self) -> None:
        super().setup()
        config = self.container.config
        self.max_attempts = int(config.get("EVENT_MAX_ATTEMPTS", 5))
        self.tiers = parse_tiers(config.get("EVENT_RETRY_TIERS_MS") or DEFAULT_RETRY_TIERS_MS)
        self.queue_type = event_queue_type(config)
        self.lease_ms = int(config.get("EVENT_LEASE_MS", 30_000))
        if self.queue_type == "quorum":  # before Consumer.setup registers the queue
            self.queue.queue_arguments = queue_arguments(self.queue_type, **{
                "x-delivery-limit": int(config.get("EVENT_DELIVERY_LIMIT", 20)),
                "x-dead-letter-exchange": handlers_exchange(self.queue.name).name,
                "x-dead-letter-routing-key": dlq_name(self.queue.name)})
        self.handler_key = f"{self.container.service_name}.{self.method_name}"
        # one semaphore per container, shared by all its handlers
        self.slots = self.container.__dict__.setdefault(
            "_event_slots", Semaphore(int(config.get("EVENT_CONCURRENCY", 8))))
        if self.bulk:  # and fewer of the bulk handlers, which all share one more semaphore
            self.slots = Slots(self.container.__dict__.setdefault(
                "_bulk_slots", Semaphore(int(config.get("EVENT_BULK_CONCURRENCY", 1)))),
                self.slots)
        self.publisher = AmqpPublisher(config["AMQP_URI"])
        # bound to the source's events and, for retries and replays, to the
        # service's own exchange (handlers_exchange), by its name
        queue = self.queue
        self.queue = Queue(queue.name, durable=queue.durable, auto_delete=queue.auto_delete,
                           exclusive=queue.exclusive, queue_arguments=queue.queue_arguments,
                           bindings=[
                               binding(queue.exchange, routing_key=queue.routing_key),
                               binding(handlers_exchange(queue.name), routing_key=queue.name)])
        mongo = next((d for d in self.container.dependencies if isinstance(d, Mongo)), None)
        if mongo is None and not self.idempotent:
            raise RuntimeError(f"{self.handler_key}: @handles needs a Mongo dependency "
                               "to record handled event ids (or idempotent=True)")
        self.mongo: Mongo = mongo  # type: ignore[assignment]  # None only when idempotent

    @property
    def queue_name(self) -> str:
        return self.queue.name

    def handle_message(self, body, message) -> None:
        # The duplicate check talks to MongoDB: keep it off the consumer loop.
        if self.batch == 1:
            self.container.spawn_managed_thread(partial(self._process, body, message))
            return
        headers = message.headers or {}
        if headers.get(ALONE_HEADER) or int(headers.get(ATTEMPT_HEADER, 1)) > 1:
            self.container.spawn_managed_thread(partial(self._run_batch, [(body, message)]))
            return
        self._waiting.append((body, message))
        if self._collector is None:
            self._collector = self.container.spawn_managed_thread(self._collect)

    def _collect(self) -> None:
        """Batches of what is waiting, each as soon as a slot is free."""
        try:
            while self._waiting:
                self.slots.acquire()
                taken = self._waiting[:self.batch]
                del self._waiting[:self.batch]
                try:
                    self._claim_and_spawn(taken)
                except BaseException:
                    self.slots.release()
                    raise
        finally:
            self._collector = None

    def _run_batch(self, taken: list) -> None:
        self.slots.acquire()
        try:
            self._claim_and_spawn(taken)
        except BaseException:
            self.slots.release()
            raise

    def _claim_and_spawn(self, taken: list) -> None:
        """Claim the batch's event ids in one write, settle duplicates and those
        another worker holds, and run one worker for the rest; the slot is
        released by ``handle_batch_result``, or here when no worker runs."""
        taken = self._once_each(taken)
        ids = [self._event_id(body) for body, _ in taken]
        try:
            states = self.mongo.store.claim_events(self.handler_key, [i for i in ids if i],
                                                   self.lease_ms) if any(ids) else {}
        except Exception as exc:  # database down: back off, keep the messages
            log.warning("%s: could not claim %d events: %s", self.handler_key, len(taken), exc)
            for _, message in taken:
                self._settle(message, partial(self._delay, message, self.tiers[0], count=False))
            self.slots.release()
            return
        run = []
        for (body, message), event_id in zip(taken, ids, strict=True):
            state, lease_left_ms = states.get(event_id, ("claimed", 0)) if event_id else ("claimed", 0)
            if state == "done":
                EVENT_DUPLICATES.labels(self.container.service_name, self.method_name).inc()
                self.queue_consumer.ack_message(message)
            elif state == "busy":
                delay = tier_for(lease_left_ms, self.tiers)
                self._settle(message, partial(self._delay, message, delay, count=False))
            else:
                run.append((body, message, event_id))
        if not run:
            self.slots.release()
            return
        context_data = self.unpack_message_headers(run[0][1])
        try:
            self.container.spawn_worker(self, ([body for body, _, _ in run],), {},
                                        context_data=context_data,
                                        handle_result=partial(self.handle_batch_result, run))
        except ContainerBeingKilled:
            for _, message, event_id in run:
                if event_id:
                    self.mongo.store.release_event(self.handler_key, event_id)
                self.queue_consumer.requeue_message(message)
            self.slots.release()

    def _once_each(self, taken: list) -> list:
        """The batch with one message per event id. A redelivered copy can arrive in
        the batch of its first copy: the ledger's one claim would hand both to the
        handler (and a handler without a ledger finds its writes new for both), so
        the later copy is acked here as a duplicate; the first carries the event on,
        also into its retries."""
        seen, once = set(), []
        for body, message in taken:
            event_id = body.get("event_id") if isinstance(body, dict) else None
            if event_id is not None and event_id in seen:
                EVENT_DUPLICATES.labels(self.container.service_name, self.method_name).inc()
                self.queue_consumer.ack_message(message)
                continue
            seen.add(event_id)
            once.append((body, message))
        return once

    def handle_batch_result(self, run: list, worker_ctx, result=None, exc_info=None):
        try:
            HandlerBudget.leave(self.container, worker_ctx)  # settling is never cut
            ids = [event_id for _, _, event_id in run if event_id]
            if exc_info is None:
                exc_info = record_events(self.container, worker_ctx)  # before the acks
            if exc_info is None:
                try:
                    if ids:
                        self.mongo.store.finish_events(self.handler_key, ids)
                except Exception:
                    log.exception("%s: could not record a handled batch; requeueing it",
                                  self.handler_key)
                    for _, message, _ in run:
                        self.queue_consumer.requeue_message(message)
                    return result, exc_info
                for _, message, _ in run:
                    self.queue_consumer.ack_message(message)
                EVENT_HANDLED.labels(self.container.service_name, self.method_name).inc(len(run))
            elif len(run) == 1:
                _, message, event_id = run[0]
                self._settle(message, partial(self._retry_or_park, message, exc_info, event_id))
            else:  # which one failed is not known: each again by itself
                log.warning("%s: a batch of %d failed, trying each alone: %s", self.handler_key,
                            len(run), exc_info[1])
                for _, message, event_id in run:
                    self._settle(message, partial(self._alone, message, event_id))
            return result, exc_info
        finally:
            self.slots.release()

    def _alone(self, message, event_id: str | None) -> None:
        if event_id:
            self.mongo.store.release_event(self.handler_key, event_id)
        headers = {**(message.headers or {}), ALONE_HEADER: 1}
        queue = retry_queue(self.queue_name, self.tiers[0], self.queue_type)
        self.publisher.publish(message.payload, exchange=queue.exchange,
                               routing_key=queue.name, headers=headers, declare=[queue])

    def _event_id(self, body) -> str | None:
        """The event id the ledger claims; None without one (an idempotent handler)."""
        if self.idempotent or not isinstance(body, dict):
            return None
        return body.get("event_id")

    def _process(self, body, message) -> None:
        self.slots.acquire()  # released by handle_result, or below when no worker runs
        try:
            if self._claim(body, message):
                super().handle_message(body, message)
                return
        except BaseException:
            self.slots.release()
            raise
        self.slots.release()

    def _claim(self, body, message) -> bool:
        """True when this worker should run the handler; otherwise the message
        has been settled (a duplicate, another worker's, the database down)."""
        event_id = self._event_id(body)
        if event_id is None:
            return True
        try:
            state, lease_left_ms = self.mongo.store.claim_event(
                self.handler_key, event_id, self.lease_ms)
        except Exception as exc:  # database down: back off, keep the message
            log.warning("%s: could not claim event %s: %s", self.handler_key, event_id, exc)
            self._settle(message, lambda: self._delay(message, self.tiers[0], count=False))
            return False
        if state == "done":
            EVENT_DUPLICATES.labels(self.container.service_name, self.method_name).inc()
            self.queue_consumer.ack_message(message)
            return False
        if state == "busy":  # another worker holds it: look again when its lease ends
            delay = tier_for(lease_left_ms, self.tiers)
            self._settle(message, lambda: self._delay(message, delay, count=False))
            return False
        return True

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        try:
            HandlerBudget.leave(self.container, worker_ctx)  # settling is never cut
            event_id = self._event_id(message.payload)
            if exc_info is None:
                exc_info = record_events(self.container, worker_ctx)  # before the ack
            if exc_info is None:
                self._settle(message, lambda: event_id and self.mongo.store.finish_event(
                    self.handler_key, event_id))
                EVENT_HANDLED.labels(self.container.service_name, self.method_name).inc()
            else:
                self._settle(message, lambda: self._retry_or_park(message, exc_info, event_id))
            return result, exc_info
        finally:
            self.slots.release()

    def _settle(self, message, step) -> None:
        """Run ``step`` (record, retry, park), then ack; requeue if it fails,
        so the message is never dropped."""
        try:
            step()
        except Exception:
            log.exception("%s: could not settle message; requeueing it", self.handler_key)
            self.queue_consumer.requeue_message(message)
            return
        self.queue_consumer.ack_message(message)

    def _delay(self, message, delay_ms: int, count: bool) -> None:
        headers = dict(message.headers or {})
        if count:
            headers[ATTEMPT_HEADER] = int(headers.get(ATTEMPT_HEADER, 1)) + 1
        queue = retry_queue(self.queue_name, tier_for(delay_ms, self.tiers), self.queue_type)
        self.publisher.publish(message.payload, exchange=queue.exchange,
                               routing_key=queue.name, headers=headers, declare=[queue])

    def _retry_or_park(self, message, exc_info, event_id: str | None) -> None:
        if event_id:
            self.mongo.store.release_event(self.handler_key, event_id)
        if database_unreachable(exc_info[1]):  # not the event's fault: not an attempt
            log.warning("%s: MongoDB unreachable, trying again in %s ms: %s", self.handler_key,
                        self.tiers[0], exc_info[1])
            self._delay(message, self.tiers[0], count=False)
            return
        attempt = int((message.headers or {}).get(ATTEMPT_HEADER, 1))
        service = self.container.service_name
        if next_step(attempt, self.max_attempts) == "retry":
            delay = retry_delay_ms(attempt, self.tiers)
            self._delay(message, delay, count=True)
            EVENT_RETRIES.labels(service, self.method_name).inc()
            log.warning("%s failed (attempt %s/%s), retrying in %s ms: %s", self.handler_key,
                        attempt, self.max_attempts, delay, exc_info[1])
            return
        queue = dead_letter_queue(self.queue_name, self.queue_type)
        headers = dict(message.headers or {})
        headers.pop(ATTEMPT_HEADER, None)
        headers.update({
            "x-attempts": attempt,
            "x-error": "".join(traceback.format_exception_only(*exc_info[:2])).strip()[:2000],
            "x-failed-at": utcnow_iso(),
            "x-original-queue": self.queue_name,
            "x-handler": self.handler_key,
        })
        self.publisher.publish(message.payload, exchange=queue.exchange,
                               routing_key=queue.name, headers=headers, declare=[queue])
        EVENT_DEAD_LETTERS.labels(service, self.method_name).inc()
        log.error("%s failed %s times, parked in %s: %s", self.handler_key, attempt,
                  queue.name, exc_info[1])


handles = ReliableEventHandler.decorator


def database_unreachable(exc: BaseException | None) -> bool:
    """MongoDB could not be reached (no server to select, a connection refused or
    reset), as opposed to one that answered an error or took too long (a timeout:
    a handler blocked behind a lock is retried, then parked, as any failure)."""
    errors = pymongo.errors
    return isinstance(exc, errors.ConnectionFailure) and not isinstance(
        exc, (errors.NetworkTimeout, errors.WaitQueueTimeoutError))


def handle_each(service_cls, events, method: str, what: str, batch: int = 1,
                idempotent: bool = False) -> None:
    """Give ``service_cls`` one ``@handles`` entrypoint per ``(producer,
    event_type)`` of ``events`` (one durable queue each), named
    ``on_<event_type>``, that passes the envelope to ``service_cls.<method>``:
    for services that take many events the same way (audit, search, webhooks).
    With ``batch`` > 1 the method gets a list of envelopes (``@handles(batch=)``);
    ``idempotent`` handlers keep no ledger (``@handles(idempotent=)``)."""
    for producer, event_type in events:
        def handle(self, event) -> None:
            getattr(self, method)(event)

        handle.__name__ = f"on_{event_type.replace('.', '_')}"
        handle.__doc__ = f"{what} {event_type}."
        setattr(service_cls, handle.__name__, handles(producer, event_type, batch=batch,
                                                      idempotent=idempotent)(handle))


def record_events(container, worker_ctx):
    """``Events.record`` for every Events dependency of the worker's service:
    None, or the exc_info of the failure (a handler is then retried)."""
    try:
        for dependency in container.dependencies:
            if isinstance(dependency, Events):
                dependency.record(worker_ctx)
    except Exception:
        log.exception("could not record the events of %s in the outbox", worker_ctx)
        return sys.exc_info()
    return None


class HandlerBudget(DependencyProvider):
    """Runs a ``@handles`` worker's MongoDB operations under its lease (see the
    module docstring); left before the message is settled."""

    def setup(self) -> None:
        self.active: dict = {}

    def worker_setup(self, worker_ctx) -> None:
        entrypoint = worker_ctx.entrypoint
        if isinstance(entrypoint, ReliableEventHandler):
            scope = pymongo.timeout(entrypoint.lease_ms / 1000)
            scope.__enter__()
            self.active[worker_ctx] = scope

    def worker_teardown(self, worker_ctx) -> None:
        self._leave(worker_ctx)

    def _leave(self, worker_ctx) -> None:
        scope = self.active.pop(worker_ctx, None)
        if scope is not None:
            scope.__exit__(None, None, None)

    @staticmethod
    def leave(container, worker_ctx) -> None:
        for dependency in container.dependencies:
            if isinstance(dependency, HandlerBudget):
                dependency._leave(worker_ctx)


class HandlerQueues(DependencyProvider):
    """Tells a worker the queues of its service's ``@handles`` entrypoints
    (used by the dead-letter RPCs)."""

    def get_dependency(self, worker_ctx) -> list[str]:
        return sorted(ep.queue.name for ep in self.container.entrypoints
                      if isinstance(ep, ReliableEventHandler))
