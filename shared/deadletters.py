"""Inspect, replay and purge dead-lettered events (``{queue}.dlq``).

Used by every service's ``dead_letters`` / ``replay_dead_letters`` /
``purge_dead_letters`` RPCs and by the operator CLI. Listing takes messages
without acking them and then closes the channel, which hands them all back
to the queue in order: nothing is consumed by looking. ``queue_type`` is the
mesh's ``EVENT_QUEUE_TYPE`` (a queue is declared with the arguments it has).
"""
from __future__ import annotations

from kombu import Connection

from shared.events import ATTEMPT_HEADER, dead_letter_queue, dlq_name, handlers_exchange

_SUMMARY_HEADERS = ("x-error", "x-attempts", "x-failed-at", "x-handler", "x-original-queue")


def _summary(message) -> dict:
    headers = message.headers or {}
    body = message.payload
    return {
        "queue": message.delivery_info.get("routing_key"),
        "event_id": body.get("event_id") if isinstance(body, dict) else None,
        "event_type": body.get("event_type") if isinstance(body, dict) else None,
        **{key[2:].replace("-", "_"): headers.get(key) for key in _SUMMARY_HEADERS},
        "body": body,
    }


def list_dead_letters(amqp_uri: str, queues: list[str], limit: int = 100,
                      queue_type: str = "classic") -> list[dict]:
    found: list[dict] = []
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        try:
            for queue in queues:
                dead_letter_queue(queue, queue_type)(channel).declare()
                while len(found) < limit:
                    message = channel.basic_get(dlq_name(queue), no_ack=False)
                    if message is None:
                        break
                    found.append(_summary(channel.message_to_python(message)))
        finally:
            channel.close()  # unacked messages go back to their queues
    return found


def replay_dead_letters(amqp_uri: str, queues: list[str], event_id: str | None = None,
                        limit: int = 1000, queue_type: str = "classic") -> int:
    """Move dead letters (all, or one event id) back to their handler queues
    with a fresh attempt count. Returns how many were moved."""
    moved = 0
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        producer = conn.Producer(channel=channel)
        try:
            for queue in queues:
                dead_letter_queue(queue, queue_type)(channel).declare()
                # the handler queue is bound to its service's exchange when that
                # service runs; bind it here too, so nothing replayed goes unrouted
                exchange = handlers_exchange(queue)
                exchange(channel).declare()
                channel.queue_bind(queue, exchange.name, routing_key=queue)
                while moved < limit:
                    raw = channel.basic_get(dlq_name(queue), no_ack=False)
                    if raw is None:
                        break
                    message = channel.message_to_python(raw)
                    body = message.payload
                    if event_id and not (isinstance(body, dict) and body.get("event_id") == event_id):
                        continue  # left unacked: back in the queue when the channel closes
                    headers = {k: v for k, v in (message.headers or {}).items()
                               if not k.startswith("x-")}
                    headers[ATTEMPT_HEADER] = 1
                    producer.publish(body, exchange=exchange, routing_key=queue,
                                     headers=headers, serializer="json", delivery_mode=2)
                    message.ack()
                    moved += 1
        finally:
            channel.close()
    return moved


def purge_dead_letters(amqp_uri: str, queues: list[str], queue_type: str = "classic") -> int:
    purged = 0
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        try:
            for queue in queues:
                purged += dead_letter_queue(queue, queue_type)(channel).purge() or 0
        finally:
            channel.close()
    return purged
