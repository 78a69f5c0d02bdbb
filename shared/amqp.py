"""The container's one long-lived AMQP connection (:class:`AmqpLink`): what its RPC
requests and replies and its events are published on, without nameko's
set-up for every message."""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, TypeVar

import amqp
import eventlet
import eventlet.semaphore
import kombu.serialization
from eventlet.event import Event
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.exceptions import OperationalError
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY,
    AMQP_URI_CONFIG_KEY,
    LOGIN_METHOD_CONFIG_KEY,
    RPC_EXCHANGE_CONFIG_KEY,
)
from nameko.extensions import SharedExtension
from nameko.rpc import RPC_REPLY_QUEUE_TEMPLATE, RPC_REPLY_QUEUE_TTL

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT = 1  # delivery mode: RPC requests and replies are never written to disk
PERSISTENT = 2  # events: written to disk by the broker before it confirms them
UNROUTABLE = object()  # what a request the broker returned (no queue bound) is answered with
CONFIRM_TIMEOUT = 10.0  # seconds a batch of events waits for the broker's confirms


class _Confirms:
    """The broker's answers to one batch of confirmed publishes."""

    def __init__(self, count: int):
        self.ok = [False] * count
        self.left = count
        self.done = Event()

    def settle(self, index: int, ok: bool) -> None:
        self.ok[index] = ok
        self.left -= 1
        if self.left == 0:
            self.done.send()


class AmqpLink(SharedExtension):
    """One long-lived AMQP connection per container, with two channels: RPC
    requests and replies on one, events on the other (in confirm mode).

    nameko's ``Publisher`` builds a kombu ``Connection``, takes a producer from
    a pool and waits for a broker confirm on every message, one after another:
    it was 40% of a notification fan-out's CPU. Here:

    - **RPC** messages are published *transient* (never written to disk: a
      request outlives neither its caller's timeout nor a broker restart) and
      without confirms. A request is ``mandatory``: when no queue is bound to
      its routing key (the service never ran on this broker) the broker
      returns it, and the reader of this connection answers the waiting call
      with :data:`UNROUTABLE` at once (503), as the confirm used to make it
      fail. A container that calls other services (a ``ServiceRpc``) gets its
      replies here too: the same reply queue as nameko's ``ReplyListener``
      (``rpc.reply-{service}-{uuid}``, bound to its uuid on the RPC exchange,
      expiring 5 minutes after its last consumer left), consumed without acks,
      each reply handed to its waiting call by the reader (no green thread per
      reply, no ack frame per reply).
    - **Events** (:meth:`publish_confirmed`) are persistent and confirmed, as
      with nameko, but a batch is published at once and its confirms awaited
      together, while other green threads publish theirs (the broker's
      confirms name each message by its delivery tag on the channel). The
      exchanges they go to are declared (:meth:`declare`) when the link opens.

    Publishes are serialised by a lock (one writer on the socket); a green
    thread reads the connection (replies, confirms, returned messages, a
    closed channel). A connection that fails, or whose broker has not
    confirmed a batch within :data:`CONFIRM_TIMEOUT`, is dropped, its
    unconfirmed events counted as not sent, and opened again on the next publish, which
    is tried once more (a broker outage is an ``OperationalError``)."""

    def __init__(self):
        super().__init__()
        self._conn = None
        self._producer = None
        self._confirming = None  # the events' channel (py-amqp's, in confirm mode)
        self._lock = eventlet.semaphore.Semaphore()
        self.reply_events: dict = {}  # correlation id -> the Event its call waits on
        self.reply_to: str | None = None
        self._reply_queue: Queue | None = None
        self._exchanges: dict[str, Exchange] = {}
        self._tag = 0  # the last delivery tag on the events' channel
        self._unconfirmed: dict[int, tuple[_Confirms, int]] = {}  # tag -> (batch, index), in order

    def setup(self) -> None:
        config = self.container.config
        self._connect_with = dict(ssl=config.get(AMQP_SSL_CONFIG_KEY),
                                  login_method=config.get(LOGIN_METHOD_CONFIG_KEY),
                                  heartbeat=0, connect_timeout=5)
        self.uri = config[AMQP_URI_CONFIG_KEY]
        self.rpc_exchange = config.get(RPC_EXCHANGE_CONFIG_KEY, "nameko-rpc")

    def listen(self) -> None:
        """Receive replies (called by every ``ServiceRpc`` of the container)."""
        if self._reply_queue is not None:
            return
        self.reply_to = str(uuid.uuid4())
        self._reply_queue = Queue(
            RPC_REPLY_QUEUE_TEMPLATE.format(self.container.service_name, self.reply_to),
            exchange=Exchange(self.container.config.get(RPC_EXCHANGE_CONFIG_KEY, "nameko-rpc"),
                              type="topic", durable=True),
            routing_key=self.reply_to, queue_arguments={"x-expires": RPC_REPLY_QUEUE_TTL},
            # transient: a durable classic queue whose cluster node stopped cannot be
            # declared again on another node ("home node is down"); a transient one is
            # made there again when the link fails over (calls in flight then time out)
            durable=False)

    def declare(self, exchange: Exchange) -> None:
        """An exchange events are published to: declared whenever the link opens."""
        self._exchanges[exchange.name] = exchange

    def stop(self) -> None:
        self._drop()

    def kill(self) -> None:
        self._drop()

    def _drop(self, conn=None) -> None:
        if conn is not None and conn is not self._conn:
            return
        old, self._conn, self._producer, self._confirming = self._conn, None, None, None
        unconfirmed, self._unconfirmed = self._unconfirmed, {}
        for batch, index in unconfirmed.values():  # never confirmed: not sent
            batch.settle(index, False)
        if old is not None:
            try:
                old.collect()  # closes the socket without a handshake
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass

    def _connect(self) -> None:
        conn = Connection(self.uri, **self._connect_with)
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2,
                               interval_max=0.2)
        # py-amqp reads the socket (drain_events(timeout=0)) before every publish
        # when the broker may send connection.blocked; the reader below handles
        # those frames, and a second reader on the socket could split a frame
        conn.connection.client_properties.get("capabilities", {})["connection.blocked"] = False
        channel = conn.channel()
        channel.events["basic_return"].add(self._on_return)
        if self._reply_queue is not None:  # before any request can be answered
            Consumer(channel, queues=[self._reply_queue], callbacks=[self._on_reply],
                     no_ack=True, accept=self.container.accept).consume()
        confirming = None
        if self._exchanges:  # the events' channel, before the reader starts (these wait)
            confirming = conn.channel()
            for exchange in self._exchanges.values():
                exchange(confirming).declare()
            confirming.confirm_select()
            confirming.events["basic_ack"].add(lambda tag, multiple: self._settle(tag, multiple, True))
            confirming.events["basic_nack"].add(lambda tag, multiple: self._settle(tag, multiple, False))
        self._conn, self._producer, self._tag = conn, Producer(channel, auto_declare=False), 0
        self._confirming = confirming
        self.container.spawn_managed_thread(lambda: self._read(conn), identifier="amqp-link")

    def _read(self, conn) -> None:
        try:
            while conn is self._conn:
                conn.connection.drain_events()
        except Exception as exc:  # noqa: BLE001 - a lost link is opened again on use
            if conn is self._conn:
                log.warning("AMQP link lost, reconnecting on the next publish: %s", exc)
                self._drop(conn)

    def _on_reply(self, body, message) -> None:
        event = self.reply_events.pop(message.properties.get("correlation_id"), None)
        if event is not None:  # else its caller gave up (timeout)
            event.send(body)

    def _on_return(self, exc, exchange, routing_key, message) -> None:
        event = self.reply_events.pop(message.properties.get("correlation_id"), None)
        if event is not None:
            event.send(UNROUTABLE)

    def _settle(self, tag: int, multiple: bool, ok: bool) -> None:
        """The broker confirmed (``ok``) or refused ``tag``, and with ``multiple``
        every tag before it."""
        if not multiple:
            entry = self._unconfirmed.pop(tag, None)
            if entry is not None:
                entry[0].settle(entry[1], ok)
            return
        while self._unconfirmed:
            first = next(iter(self._unconfirmed))
            if first > tag:
                return
            batch, index = self._unconfirmed.pop(first)
            batch.settle(index, ok)

    def _publish(self, publish: Callable[[], T]) -> T:
        """``publish()`` under the lock, on an open link: opened again, and tried
        once more, when the connection fails. Returns what it returned."""
        with self._lock:
            for attempt in (1, 2):
                conn = self._conn
                try:
                    if conn is None:
                        self._connect()
                        conn = self._conn
                    return publish()
                except Exception as exc:  # noqa: BLE001 - classified below
                    if conn is not None and not isinstance(
                            exc, (OSError, *conn.connection_errors, *conn.channel_errors)):
                        raise  # e.g. a body that does not serialise: the link is fine
                    self._drop(conn)
                    if attempt == 2:
                        raise OperationalError(f"cannot publish to the broker: {exc}") from exc
        raise AssertionError("unreachable")  # the second try returns or raises

    def publish(self, body, *, routing_key: str, exchange: str | None = None,
                **properties) -> None:
        """An RPC message. ``body``: bytes already serialised (``content_type`` in
        ``properties``) or a value kombu serialises (``serializer``)."""
        exchange = self.rpc_exchange if exchange is None else exchange
        self._publish(lambda: self._producer.publish(
            body, exchange=exchange, routing_key=routing_key, delivery_mode=TRANSIENT,
            retry=False, **properties))

    def publish_confirmed(self, messages: list[tuple[Any, str, str, dict]],
                          serializer: str = "json",
                          timeout: float = CONFIRM_TIMEOUT) -> list[bool]:
        """Events: each ``(body, exchange, routing_key, headers)`` published
        persistent, then the broker's confirms of all of them awaited at once
        (at most ``timeout`` seconds). Whether each was confirmed: False for one
        the broker refused (a full queue that rejects publishes), or that it
        had not confirmed when the link failed or the time was up."""
        if not messages:
            return []
        built = []  # serialised as kombu's Producer would
        for body, exchange, routing_key, headers in messages:
            content_type, content_encoding, data = kombu.serialization.dumps(body, serializer)
            built.append((amqp.Message(data, content_type=content_type,
                                       content_encoding=content_encoding,
                                       application_headers=headers, delivery_mode=PERSISTENT),
                          exchange, routing_key))

        def publish() -> tuple[_Confirms, Any]:  # the whole batch again on a link opened again
            batch = _Confirms(len(messages))
            if self._confirming is None:
                raise RuntimeError("no exchange declared for events on this link")
            for index, (message, exchange, routing_key) in enumerate(built):
                tag = self._tag + 1
                self._unconfirmed[tag] = (batch, index)  # before the reader can see its confirm
                self._tag = tag
                self._confirming.basic_publish(message, exchange=exchange,
                                               routing_key=routing_key)
            return batch, self._conn

        batch, conn = self._publish(publish)  # the try that published
        batch.done.wait(timeout)
        if batch.left:  # a broker that does not answer: the link is opened again next time
            log.warning("the broker confirmed %d of %d events within %s s; reconnecting",
                        len(messages) - batch.left, len(messages), timeout)
            self._drop(conn)  # which counts the rest as not sent
        return batch.ok
