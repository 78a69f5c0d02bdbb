"""Each service's own RabbitMQ and Redis user (shared.access) on the real
servers: what another service's credentials would let an attacker do is
refused, what the service itself needs is allowed."""
import json
import threading
import time
import uuid

import amqp.exceptions
import pytest
import redis
from kombu import Connection, Exchange, Queue

from shared import access
from tests.conftest import RABBIT_MGMT, REDIS_URI
from tests.helpers import wait_until

RPC = Exchange("nameko-rpc", type="topic", durable=True)
MANAGEMENT_URL = RABBIT_MGMT.replace("://", "://guest:guest@", 1) if "@" not in RABBIT_MGMT \
    else RABBIT_MGMT


@pytest.fixture
def users(vhost_factory):
    """Every service's users, with their rights on a fresh vhost; returns
    service -> {"AMQP_URI", "REDIS_URI"}."""
    admin_uri = vhost_factory()
    with Connection(admin_uri) as conn:  # as the services declare them
        channel = conn.channel()
        for name in ("auth.events", "notifications.events", RPC.name):
            Exchange(name, type="topic", durable=True)(channel).declare()
        Queue("rpc-employees", exchange=RPC, routing_key="employees.*",
              durable=True)(channel).declare()
    return access.provision({"AMQP_URI": admin_uri, "REDIS_URI": REDIS_URI,
                             "RABBITMQ_MANAGEMENT_URL": MANAGEMENT_URL})


def refused(action) -> str:
    """The broker's refusal (403) of ``action()``, or fail."""
    with pytest.raises(amqp.exceptions.AccessRefused) as caught:
        action()
    return str(caught.value)


def publish(uri, exchange, routing_key):
    """Publish with confirms, so a refusal is seen here."""
    with Connection(uri, transport_options={"confirm_publish": True}) as conn:
        conn.Producer().publish({"event_id": uuid.uuid4().hex}, exchange=exchange,
                                routing_key=routing_key, retry=False)


def test_notifications_cannot_forge_an_auth_event_or_reach_queues_by_name(users):
    uri = users["notifications"]["AMQP_URI"]
    # a fake user.password.reset on auth's exchange
    assert "auth.events" in refused(lambda: publish(uri, "auth.events", "user.password.reset"))
    # the default exchange reaches every queue by name (here employees' RPC queue)
    assert "amq.default" in refused(lambda: publish(uri, "", "rpc-employees"))
    publish(uri, "notifications.events", "x.happened")  # its own exchange is fine


def test_notifications_may_call_only_what_it_uses_over_nameko_rpc(users):
    uri = users["notifications"]["AMQP_URI"]
    assert "employees.add_owner" in refused(lambda: publish(uri, RPC.name, "employees.add_owner"))
    assert "auth.revoke_sessions" in refused(lambda: publish(uri, RPC.name,
                                                             "auth.revoke_sessions"))
    publish(uri, RPC.name, "employees.get_membership")  # what it does call
    # the gateway, the public entry, may call any method
    publish(users["gateway"]["AMQP_URI"], RPC.name, "employees.add_owner")


def test_notifications_cannot_consume_or_tap_another_services_queues(users):
    uri = users["notifications"]["AMQP_URI"]

    def consume():
        with Connection(uri) as conn:
            conn.channel().basic_get("rpc-employees")

    assert "rpc-employees" in refused(consume)

    def tap():  # a queue of its own, bound to employees' requests
        with Connection(uri) as conn:
            Queue(f"rpc.reply-notifications-{uuid.uuid4()}",
                  exchange=RPC, routing_key="employees.*", auto_delete=True)(conn.channel()).declare()

    assert "employees.*" in refused(tap)


def test_notifications_redis_user_cannot_plant_a_signing_key(users, unique):
    client = redis.Redis.from_url(users["notifications"]["REDIS_URI"], decode_responses=True)
    admin = redis.Redis.from_url(REDIS_URI, decode_responses=True)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set(f"auth:jwks:kid:{unique}", '{"kty": "OKP"}')
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set(f"employees:perm:{unique}:u", '{"role": "owner", "status": "active"}')
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.flushdb()
        assert admin.get(f"auth:jwks:kid:{unique}") is None
        # what it needs: its own keys, the membership cache (read), its channel
        client.set(f"notifications:test:{unique}", "1", ex=60)
        admin.set(f"employees:perm:{unique}:u", "{}", ex=60)
        assert client.get(f"employees:perm:{unique}:u") == "{}"
        client.publish(f"notifications:user:{unique}", "hi")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.publish(f"auth:anything:{unique}", "hi")
    finally:
        admin.delete(f"notifications:test:{unique}", f"employees:perm:{unique}:u")
        client.close()
        admin.close()


def test_only_auth_writes_signing_keys_and_the_gateway_reads_them(users, unique):
    key = f"auth:jwks:kid:{unique}"
    auth = redis.Redis.from_url(users["auth"]["REDIS_URI"], decode_responses=True)
    gateway = redis.Redis.from_url(users["gateway"]["REDIS_URI"], decode_responses=True)
    try:
        auth.set(key, "{}", ex=60)
        assert gateway.get(key) == "{}"
        with pytest.raises(redis.exceptions.NoPermissionError):
            gateway.set(key, "planted")
        with pytest.raises(redis.exceptions.NoPermissionError):
            gateway.delete(f"auth:blacklist:jti:{unique}")  # un-revoking a token
    finally:
        auth.delete(key)
        auth.close()
        gateway.close()


def test_the_gateways_one_call_checks_and_cache_work_as_its_own_user(users, unique):
    """The gateway's scripts read others' keys it may not write (blacklist,
    membership, version counters): refused, they would fail closed (503) or
    silently skip the cache."""
    from employee_svc.contract import membership_key
    from gateway_svc.cache import entry_name
    from gateway_svc.checks import RequestChecks
    from shared.redis import Limit, RedisTools, org_version_key

    admin = redis.Redis.from_url(REDIS_URI, decode_responses=True)
    gateway = redis.Redis.from_url(users["gateway"]["REDIS_URI"], decode_responses=True)
    org, user = f"o{unique}", f"u{unique}"
    claims = {"jti": f"j{unique}", "sid": f"s{unique}"}
    member, version = membership_key(org, user), org_version_key("tasks", org)
    admin.set(member, json.dumps({"role": "member", "status": "active"}), ex=60)
    admin.set(version, "7", ex=60)
    checks = RequestChecks(gateway)
    run = lambda: checks.run(claims, f"gateway:ratelimit:{unique}", Limit(5, 60), member,  # noqa: E731
                             (entry_name(f"t:{unique}"), [version]))
    try:
        first = run()
        assert not first.revoked and first.decision.allowed
        assert first.membership == {"role": "member", "status": "active"}
        computed = []
        cache = RedisTools(gateway, "gateway", 60).cache
        for _ in range(2):
            assert cache.get_or_set(entry_name(f"t:{unique}"), lambda: computed.append(1) or {"n": 1},
                                    versions=[version]) == {"n": 1}
        assert computed == [1]  # the second answer came from the cache
        assert run().answer == '{"n": 1}'  # and the request checks find it too
        admin.set(f"auth:blacklist:jti:{claims['jti']}", 1, ex=60)
        assert run().revoked
    finally:
        admin.delete(member, version, f"auth:blacklist:jti:{claims['jti']}",
                     f"gateway:ratelimit:{unique}", f"{entry_name(f't:{unique}')}|7")
        admin.close()
        gateway.close()


def test_the_web_consoles_user_keeps_to_its_own_keys_and_operator_rpcs(users, unique):
    web = users[access.CONSOLE]
    client = redis.Redis.from_url(web["REDIS_URI"], decode_responses=True)
    admin = redis.Redis.from_url(REDIS_URI, decode_responses=True)
    try:
        for key in (f"auth:jwks:kid:{unique}", f"employees:perm:{unique}:u", f"tasks:x:{unique}",
                    f"gateway:ratelimit:{unique}"):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.set(key, "planted")
            assert admin.get(key) is None
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get(f"employees:perm:{unique}:u")  # not even reading others' keys
        client.set(f"web:session:{unique}", "1", ex=60)  # its own: sessions, tokens, counts
    finally:
        admin.delete(f"web:session:{unique}")
        client.close()
        admin.close()
    uri = web["AMQP_URI"]
    for key in ("auth.set_operator", "auth.revoke_sessions", "employees.add_owner", "tasks.create_task"):
        assert key in refused(lambda key=key: publish(uri, RPC.name, key))
    assert "notifications.events" in refused(lambda: publish(uri, "notifications.events", "x.happened"))
    publish(uri, RPC.name, "auth.is_operator")  # what its operator pages call
    publish(uri, RPC.name, "notifications.replay_dead_letters")


def test_the_web_consoles_tap_counts_events_it_may_only_read(users, unique):
    from web_svc import events_tap

    web = users[access.CONSOLE]
    client = redis.Redis.from_url(REDIS_URI)  # admin, to read and clean the counts
    tap = events_tap.EventTap(web["AMQP_URI"], redis.Redis.from_url(web["REDIS_URI"]),
                              sources=("auth", "notifications"), round_seconds=1)
    thread = threading.Thread(target=tap.run, daemon=True)
    thread.start()
    event_type = f"thing.{unique}.happened"
    try:
        wait_until(lambda: tap.bound == {"auth", "notifications"}, timeout=10, what="the tap bound")
        for _ in range(3):
            publish(users["notifications"]["AMQP_URI"], "notifications.events", event_type)
        wait_until(lambda: events_tap.per_minute(client, tap.scope, time.time()).get(
            ("notifications", event_type), [0])[-1] >= 3, timeout=10, what="three events counted")
        assert ("auth", event_type) not in events_tap.per_minute(client, tap.scope, time.time())
        assert tap.scope == web["AMQP_URI"].rsplit("/", 1)[1]  # counts are per vhost
    finally:
        tap.stop()
        thread.join(10)
        for minute in range(events_tap.minute_of(time.time()) - 1, events_tap.minute_of(time.time()) + 1):
            client.delete(events_tap.minute_key(tap.scope, minute))
        client.close()
