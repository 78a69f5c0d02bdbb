"""The operator pages' live view of events flowing: a queue of the console's own
(``web.events-tap``, shared by its replicas, so each event is counted once)
bound with ``#`` to every service's ``<service>.events`` exchange. Each message
is counted per minute in Redis (``web:events:<vhost>:<minute>``: a hash of
``<producer> <event type>`` -> count, kept a little over an hour) and acked;
nothing else is read from it. The queue holds at most a minute's backlog and
goes away ten minutes after the last console stops (its arguments say so), so
a console that is down costs the broker nothing.

The count is of messages on the exchanges: an event the outbox relay sends
again after a broker outage is counted again (consumers dedupe; this does not).
"""
from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse

import redis
from kombu import Connection, Queue

from shared.services import SERVICES

log = logging.getLogger(__name__)

TAP_QUEUE = "web.events-tap"
COUNTS = "web:events:"
WINDOW_MINUTES = 60
KEEP_SECONDS = (WINDOW_MINUTES + 2) * 60
QUEUE_ARGUMENTS = {"x-expires": 600_000, "x-message-ttl": 60_000, "x-max-length": 50_000}


def vhost_of(amqp_uri: str) -> str:
    path = urllib.parse.urlsplit(amqp_uri).path
    return urllib.parse.unquote(path[1:]) if path not in ("", "/") else "/"


def tap_queue() -> Queue:
    return Queue(TAP_QUEUE, durable=False, queue_arguments=QUEUE_ARGUMENTS)


def minute_of(at: float) -> int:
    return int(at // 60)


def minute_key(scope: str, minute: int) -> str:
    """One hash a minute, per broker vhost (two meshes may share a Redis)."""
    return f"{COUNTS}{scope}:{minute}"


def count(client: redis.Redis, scope: str, producer: str, event_type: str, at: float) -> None:
    key = minute_key(scope, minute_of(at))
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(key, f"{producer} {event_type}", 1)
    pipe.expire(key, KEEP_SECONDS)
    pipe.execute()


def per_minute(client: redis.Redis, scope: str, now: float,
               minutes: int = WINDOW_MINUTES) -> dict[tuple[str, str], list[int]]:
    """``{(producer, event type): [count per minute, oldest first]}`` over the last
    ``minutes`` minutes, the current one last."""
    last = minute_of(now)
    pipe = client.pipeline(transaction=False)
    for minute in range(last - minutes + 1, last + 1):
        pipe.hgetall(minute_key(scope, minute))
    series: dict[tuple[str, str], list[int]] = {}
    for i, counts in enumerate(pipe.execute()):
        for field, value in counts.items():
            producer, _, event_type = (field.decode() if isinstance(field, bytes) else field).partition(" ")
            series.setdefault((producer, event_type), [0] * minutes)[i] = int(value)
    return series


class EventTap:
    """Consumes the tap queue until ``stop()``; reconnects, and binds exchanges that
    did not exist yet (a producer not started) on the next round."""

    def __init__(self, amqp_uri: str, client: redis.Redis, sources=tuple(SERVICES),
                 round_seconds: float = 20):
        self.amqp_uri = amqp_uri
        self.scope = vhost_of(amqp_uri)
        self.client = client
        self.sources = sources
        self.round_seconds = round_seconds
        self.bound: set[str] = set()
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._consume()
            except Exception as exc:  # the broker went away: count again once it is back
                log.warning("events tap: %s; reconnecting", exc)
                self.bound.clear()
                self.stopped.wait(5)

    def _bind_missing(self, conn: Connection) -> None:
        for source in self.sources:
            if source in self.bound:
                continue
            channel = conn.channel()  # a missing exchange closes the channel it was asked on
            try:
                tap_queue()(channel).bind_to(
                    exchange=f"{source}.events", routing_key="#")
                self.bound.add(source)
            except Exception as exc:
                log.debug("events tap: %s.events not bound yet (%s)", source, exc)
            finally:
                try:
                    channel.close()
                except Exception:
                    pass

    def _on_message(self, _body, message) -> None:
        exchange = message.delivery_info.get("exchange") or ""
        producer = exchange[:-len(".events")] if exchange.endswith(".events") else exchange
        try:
            count(self.client, self.scope, producer, message.delivery_info.get("routing_key") or "?",
                  time.time())
        except redis.RedisError as exc:  # a gap in the chart, not a stuck queue
            log.warning("events tap: not counted (%s)", exc)
        message.ack()

    def _consume(self) -> None:
        with Connection(self.amqp_uri, heartbeat=30) as conn:
            queue = tap_queue()
            queue(conn.default_channel).declare()
            self._bind_missing(conn)
            with conn.Consumer(queue, callbacks=[self._on_message], accept=["json"], prefetch_count=200,
                               on_decode_error=lambda message, _exc: message.ack()):
                rounds_at = time.monotonic()
                while not self.stopped.is_set():
                    try:
                        conn.drain_events(timeout=1)
                    except socket.timeout:
                        conn.heartbeat_check()
                    if time.monotonic() - rounds_at > self.round_seconds:
                        self._bind_missing(conn)
                        rounds_at = time.monotonic()
