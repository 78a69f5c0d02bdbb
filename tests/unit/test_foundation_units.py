"""Pure pieces of shared/: envelope, retry schedule, limiter arithmetic,
error crossing and mapping, and the idempotency skip of @handles."""
import json
import logging
from unittest.mock import MagicMock

import eventlet
import marshmallow
import pytest
from eventlet.semaphore import Semaphore
from nameko.exceptions import deserialize, serialize

from gateway_svc.problems import from_exception
from shared import errors
from shared.events import (
    ReliableEventHandler,
    Slots,
    dead_letter_queue,
    make_envelope,
    next_step,
    parse_tiers,
    queue_arguments,
    retry_delay_ms,
    retry_queue,
    tier_for,
)
from shared.redis import Decision, Limit


def test_envelope_has_every_field_of_architecture_md():
    env = make_envelope("task.assigned", {"task_id": "t1"}, producer="tasks", org_id="o1",
                        actor_id="u1", correlation_id="req-1")
    assert set(env) == {"event_id", "event_type", "version", "occurred_at", "producer",
                        "org_id", "actor_id", "correlation_id", "client_ip", "data"}
    assert env["event_type"] == "task.assigned" and env["version"] == 1
    assert len(env["event_id"]) == 32 and env["occurred_at"].endswith("Z")
    assert env["data"] == {"task_id": "t1"}
    assert make_envelope("x", {}, producer="p")["event_id"] != env["event_id"]


def test_retries_wait_one_fixed_tier_per_attempt_and_other_waits_take_the_next_tier_up():
    tiers = parse_tiers("30000, 1000,5000,120000")
    assert tiers == (1000, 5000, 30_000, 120_000)
    assert [retry_delay_ms(a, tiers) for a in range(1, 7)] == [1000, 5000, 30_000, 120_000,
                                                               120_000, 120_000]
    assert [tier_for(ms, tiers) for ms in (1, 1000, 1001, 29_957, 500_000)] == \
        [1000, 1000, 5000, 30_000, 120_000]
    assert [next_step(a, 5) for a in range(1, 6)] == ["retry"] * 4 + ["dead_letter"]
    with pytest.raises(ValueError):
        parse_tiers("0,1000")


def test_quorum_queues_carry_their_type_and_classic_ones_no_arguments():
    assert retry_queue("q", 5000, "quorum").queue_arguments["x-queue-type"] == "quorum"
    assert dead_letter_queue("q", "quorum").queue_arguments == {"x-queue-type": "quorum"}
    assert dead_letter_queue("q").queue_arguments is None
    with pytest.raises(ValueError):
        queue_arguments("lazy")


def test_retry_queue_dead_letters_back_to_the_handler_queue():
    queue = retry_queue("evt-a-b--c.d", 2000)
    assert queue.name == "evt-a-b--c.d.retry.2000"
    assert queue.queue_arguments["x-message-ttl"] == 2000
    assert queue.queue_arguments["x-dead-letter-routing-key"] == "evt-a-b--c.d"
    # through the consuming service's own exchange, not the default one
    assert queue.queue_arguments["x-dead-letter-exchange"] == queue.exchange.name == "c.handlers"
    assert queue.queue_arguments["x-expires"] > 2000


def test_limit_parsing_and_decision_headers():
    assert Limit.parse("100/60") == Limit(100, 60.0)
    with pytest.raises(ValueError):
        Limit.parse("0/60")
    allowed = Decision.from_script(Limit(10, 60), [1, 7, 0, 6000])
    assert allowed.allowed and allowed.headers() == {"X-RateLimit-Limit": "10",
                                                     "X-RateLimit-Remaining": "7"}
    refused = Decision.from_script(Limit(10, 60), [0, 0, 1500, 6000])
    assert not refused.allowed and refused.headers()["Retry-After"] == "2"


def test_a_limit_gives_its_script_a_period_of_at_least_one_millisecond():
    assert Limit.parse("100/60").script_args() == [100, 60000]
    assert Limit.parse("1/0.0004").script_args() == [1, 1]  # stricter, and never 0


def test_app_errors_cross_rpc_with_their_field_errors():
    exc = errors.ValidationFailed("bad", errors={"email": ["Not a valid email address."]})
    back = deserialize(serialize(exc))
    assert isinstance(back, errors.ValidationFailed)
    assert back.errors == {"email": ["Not a valid email address."]} and back.detail == "bad"


@pytest.mark.parametrize("exc,status", [
    (errors.NotFound("x"), 404), (errors.Conflict("x"), 409), (errors.Forbidden("x"), 403),
    (errors.Unauthorized("x"), 401), (errors.PlanLimitExceeded("x"), 403),
    (errors.RateLimited("x", headers={"Retry-After": "3"}), 429),
    (errors.Unavailable("x"), 503), (errors.Timeout("x"), 504),
    (errors.ValidationFailed("x", errors={"a": ["b"]}), 422),
    (marshmallow.ValidationError({"name": ["Missing data for required field."]}), 422),
    (RuntimeError("secret internals"), 500),
])
def test_error_mapping_gives_problem_json(exc, status):
    response = from_exception(exc)
    body = json.loads(response.get_data())
    assert response.status_code == status and body["status"] == status
    assert response.content_type == "application/problem+json"
    assert {"type", "title", "detail"} <= set(body)
    assert "secret internals" not in response.get_data(as_text=True)
    if status == 429:
        assert response.headers["Retry-After"] == "3" and "headers" not in body
    if status == 422:
        assert body["errors"]


def _handler_with(claim: tuple, slots: int = 4):
    handler = ReliableEventHandler("src", "thing.done")
    handler.container = MagicMock()
    handler.container.service_name = "svc"
    handler.method_name = "on_thing"
    handler.handler_key = "svc.on_thing"
    handler.mongo = MagicMock()
    handler.mongo.store.claim_event.return_value = claim
    handler.queue_consumer = MagicMock()
    handler.publisher = MagicMock()
    handler.queue = MagicMock()
    handler.queue.name = "evt-src-thing.done--svc.on_thing"
    handler.lease_ms, handler.tiers, handler.queue_type = 30_000, (1000, 5000, 30_000), "classic"
    handler.slots = Semaphore(slots)
    return handler


def test_an_event_already_handled_is_acked_and_skipped():
    handler = _handler_with(("done", 0))
    message = MagicMock()
    handler._process({"event_id": "e1", "data": {}}, message)
    handler.mongo.store.claim_event.assert_called_once_with("svc.on_thing", "e1", 30_000)
    handler.queue_consumer.ack_message.assert_called_once_with(message)
    handler.container.spawn_worker.assert_not_called()


def test_a_new_event_reaches_a_worker():
    handler = _handler_with(("claimed", 0))
    message = MagicMock(headers={})
    handler._process({"event_id": "e2", "data": {}}, message)
    handler.container.spawn_worker.assert_called_once()
    handler.queue_consumer.ack_message.assert_not_called()


def test_events_beyond_the_concurrency_wait_for_a_finished_one():
    handler = _handler_with(("claimed", 0), slots=1)
    handler.mongo.store.outbox_add = MagicMock()
    first, second = MagicMock(headers={}, payload={"event_id": "a"}), MagicMock(headers={})
    handler._process({"event_id": "a", "data": {}}, first)
    waiting = eventlet.spawn(handler._process, {"event_id": "b", "data": {}}, second)
    eventlet.sleep(0)
    assert handler.container.spawn_worker.call_count == 1  # b waits for a slot
    handler.handle_result(first, MagicMock(data={}))  # a is done and acked
    waiting.wait()
    assert handler.container.spawn_worker.call_count == 2
    handler.queue_consumer.ack_message.assert_called_once_with(first)


def test_a_bulk_chunk_beyond_the_bulk_slots_waits_without_holding_a_process_slot():
    process = Semaphore(2)
    handler = _handler_with(("claimed", 0))
    handler.slots = Slots(Semaphore(1), process)  # bulk=True: one bulk chunk at once here
    handler.mongo.store.outbox_add = MagicMock()
    first, second = MagicMock(headers={}, payload={"event_id": "a"}), MagicMock(headers={})
    handler._process({"event_id": "a", "data": {}}, first)
    waiting = eventlet.spawn(handler._process, {"event_id": "b", "data": {}}, second)
    eventlet.sleep(0)
    assert handler.container.spawn_worker.call_count == 1  # b waits for the bulk slot
    assert process.balance == 1  # ... and leaves the other process slot to other events
    handler.handle_result(first, MagicMock(data={}))
    waiting.wait()
    assert handler.container.spawn_worker.call_count == 2
    assert process.balance == 1  # a's slots were given back, b holds one of each


def test_a_skipped_event_gives_its_slot_back():
    handler = _handler_with(("done", 0), slots=1)
    for n in range(3):  # would block on the second if the first kept the slot
        handler._process({"event_id": f"d{n}", "data": {}}, MagicMock())
    assert handler.queue_consumer.ack_message.call_count == 3


def test_an_event_another_worker_holds_comes_back_when_its_lease_ends():
    handler = _handler_with(("busy", 4000))
    message = MagicMock(headers={"x-attempt": 2}, payload={"event_id": "e3"})
    handler._process({"event_id": "e3", "data": {}}, message)
    handler.container.spawn_worker.assert_not_called()
    kwargs = handler.publisher.publish.call_args.kwargs
    assert kwargs["routing_key"] == "evt-src-thing.done--svc.on_thing.retry.5000"  # the next tier
    assert kwargs["headers"]["x-attempt"] == 2  # waiting is not a failed attempt
    handler.queue_consumer.ack_message.assert_called_once_with(message)


def test_group_writes_write_what_waits_together_and_each_caller_gets_its_own_answer():
    from shared.mongo import GroupWrites

    rounds = []

    def write(items):
        rounds.append(list(items))
        eventlet.sleep(0.01)  # a round trip: callers meanwhile wait for the next round
        if "bad" in items:
            raise ValueError("refused")
        return [item * 2 for item in items]

    group = GroupWrites(write)
    pool = eventlet.GreenPool()
    answers = list(pool.imap(group, range(10)))
    assert answers == [n * 2 for n in range(10)]
    assert rounds[0] == [0] and sorted(n for r in rounds for n in r) == list(range(10))
    assert len(rounds) == 2  # the first alone (nothing was waiting), then the other nine

    def call(item):
        try:
            return group(item)
        except ValueError as exc:
            return str(exc)

    rounds.clear()
    first = eventlet.spawn(call, 1)
    eventlet.sleep(0)  # 1 is being written; "bad" and 3 wait for the next round together
    answers = list(pool.imap(call, ["bad", 3]))
    assert first.wait() == 2 and answers == ["refused", "refused"] and rounds[1] == ["bad", 3]
    assert group(4) == 8 and not group.busy  # nothing left hanging

    rounds.clear()  # one killed while it waits (its process stopping): the rest go on
    first = eventlet.spawn(call, 5)
    eventlet.sleep(0)
    doomed, after = eventlet.spawn(call, 6), eventlet.spawn(call, 7)
    eventlet.sleep(0)
    doomed.kill()
    assert first.wait() == 10 and after.wait() == 14 and rounds == [[5], [7]]
    assert not group.busy


def test_trusted_proxies_setting_and_hops():
    from gateway_svc.proxies import TrustedProxies, parse_trusted_proxies

    assert parse_trusted_proxies(None) == (0, ()) == parse_trusted_proxies(0)
    assert parse_trusted_proxies("2") == (2, ())
    count, networks = parse_trusted_proxies("10.0.0.0/8, fd00::/8")
    assert count == 0 and [str(n) for n in networks] == ["10.0.0.0/8", "fd00::/8"]
    with pytest.raises(ValueError):
        parse_trusted_proxies("not-a-network")
    middleware = TrustedProxies(None, "10.0.0.0/8")
    hops = middleware.hops
    assert hops({"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}) == 1
    assert hops({"REMOTE_ADDR": "10.0.0.2",
                 "HTTP_X_FORWARDED_FOR": "9.9.9.9, 1.2.3.4, 10.0.0.9"}) == 2
    assert hops({"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "10.0.0.3"}) == 1
    assert hops({"REMOTE_ADDR": "192.0.2.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}) == 0
    assert hops({"REMOTE_ADDR": "10.0.0.2"}) == 0


def test_gateway_connections_send_answers_without_waiting_for_acks():
    import socket

    from gateway_svc.http import NoDelayProtocol

    with socket.create_server(("127.0.0.1", 0)) as listener, \
            socket.create_connection(listener.getsockname()):
        conn, _ = listener.accept()
        with conn:
            assert not conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            protocol = NoDelayProtocol.__new__(NoDelayProtocol)  # what the server does per connection
            protocol.request = conn
            protocol.setup()
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_mongodb_writes_wait_for_a_majority_unless_configured_otherwise():
    from shared.mongo import concerns

    assert concerns({}) == {"w": "majority", "readConcernLevel": "local"}
    assert concerns({"MONGODB_WRITE_CONCERN": "1", "MONGODB_READ_CONCERN": "majority"}) == \
        {"w": 1, "readConcernLevel": "majority"}


def test_every_cache_look_up_is_counted_and_logged_at_debug(caplog):
    from shared.telemetry import CACHE_REQUESTS, count_cache

    before = CACHE_REQUESTS.labels("svc-x", "hit")._value.get()
    with caplog.at_level(logging.DEBUG, logger="workforce.cache"):
        count_cache("svc-x", "hit", "teams:team:o1:t1")
    assert CACHE_REQUESTS.labels("svc-x", "hit")._value.get() == before + 1
    (record,) = [r for r in caplog.records if r.name == "workforce.cache"]
    assert record.levelno == logging.DEBUG and record.fields["key"] == "teams:team:o1:t1"
