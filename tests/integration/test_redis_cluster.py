"""Redis Cluster: three primaries started here from the installed redis-server
(once for the module), and the services' client (shared.redis.make_client with
REDIS_CLUSTER_NODES) against it. The cache, rate-limit, tenancy (the gateway's
request checks, split per slot on a cluster), sign-in (lockout, logout,
refresh reuse, 2FA: auth's throttles and blacklists) and websocket (a
notification published on the cluster reaches the socket; a revoked token
closes it) tests of the single-node modules run here again, as do the outbox
relay's gate (idle, no read; a failed publish relayed by another replica) and the
rate limits past the millisecond clock, with their ``make_config`` pointed at the
cluster (imported below, so their assertions are not copied); locks, the request
checks against every refusal, the services' ACL users, an outage, and pub/sub (a
PUBLISH on any node reaches the gateway's one subscription) are tested here."""
from __future__ import annotations

import json

import eventlet
import pytest
import redis
from eventlet.queue import LightQueue

from employee_svc.contract import membership_key
from gateway_svc.cache import entry_name
from gateway_svc.checks import RequestChecks
from gateway_svc.realtime import Realtime
from notify_svc.contract import user_channel
from shared import access
from shared.errors import Unavailable
from shared.redis import Limit, RedisTools, clustered, make_client, org_version_key
from tests.e2e.servers import PrivateRedisCluster
from tests.helpers import wait_until
from tests.integration.test_auth_flows import (  # noqa: F401  run on the cluster
    api,
    test_lockout_and_its_expiry,
    test_logout_kills_the_access_token_at_once,
    test_refresh_rotates_and_reuse_revokes_the_session,
    test_two_factor_full_flow,
)
from tests.integration.test_cache_consistency import (  # noqa: F401  run on the cluster
    test_a_read_that_raced_an_invalidation_does_not_store_the_old_value,
    test_many_reads_that_raced_an_invalidation_do_not_store_the_old_values,
)
from tests.integration.test_foundation import (  # noqa: F401  run on the cluster
    test_a_limit_past_the_millisecond_clock_decides_instead_of_failing,
    test_cache_tags_invalidate_what_was_cached_under_them,
    test_publishing_an_org_event_makes_cached_answers_for_that_org_stale,
    test_rate_limiter_admits_exactly_the_limit_under_50_green_threads,
)
from tests.integration.test_gateway_tenancy import (  # noqa: F401  run on the cluster
    gateway,
    test_a_cached_answer_reaches_only_a_member_whose_cached_membership_is_active,
    test_members_reach_the_route_with_their_membership,
    test_non_members_and_removed_employees_get_404_before_validation,
)
from tests.integration.test_notifications_gateway import (  # noqa: F401  run on the cluster
    stack,
    test_websocket_is_closed_when_its_token_is_revoked,
    test_websocket_real_time_and_catch_up,
)
from tests.integration.test_outbox_relay import (  # noqa: F401  run on the cluster
    test_an_idle_relay_reads_nothing_and_a_failed_publish_goes_out_by_another_replica,
)
from tests.smtp_sink import smtp_sink  # noqa: F401  (the stack's fixture)

pytestmark = pytest.mark.faults  # a 3-node Redis Cluster of its own (make faults)


@pytest.fixture(scope="module")
def cluster():
    server = PrivateRedisCluster(3)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def make_config(make_config, cluster):
    """Every test of this module (the imported ones too) on the cluster: ``config``
    is ``make_config()``."""
    def make(**overrides):
        return make_config(**{"REDIS_URI": cluster.uri, "REDIS_CLUSTER_NODES": cluster.nodes,
                              **overrides})
    return make


@pytest.fixture
def redis_config(config):
    return config


@pytest.fixture
def client(config):
    client = make_client(config)
    yield client
    client.close()


def test_the_client_is_a_cluster_client_and_spreads_keys_over_the_primaries(client, unique):
    assert clustered(client)
    keys = [f"spread:{unique}:{n}" for n in range(30)]
    for key in keys:
        client.set(key, "1", ex=60)
    assert len({client.get_node_from_key(key).port for key in keys}) == 3


def test_a_lock_is_held_by_one_holder_at_a_time(client, unique):
    tools = RedisTools(client, "cluster-test", 60)
    first = tools.lock(f"l:{unique}", timeout=10, blocking_timeout=0.2)
    assert first.acquire()
    try:
        assert not tools.lock(f"l:{unique}", blocking_timeout=0.2).acquire()
    finally:
        first.release()
    with tools.lock(f"l:{unique}", blocking_timeout=1):
        pass


def test_the_request_checks_refuse_and_answer_as_on_one_node(client, unique):
    """Blacklisted token, revoked or missing personal token, rate limit, cached
    membership and answer: the keys are in other slots (other nodes), the
    verdicts those of the one-node script."""
    checks = RequestChecks(client)
    assert checks.split
    org, user = f"o{unique}", f"u{unique}"
    claims = {"jti": f"j{unique}", "sid": f"s{unique}"}
    member, version = membership_key(org, user), org_version_key("tasks", org)
    client.set(member, json.dumps({"role": "member", "status": "active"}), ex=60)
    client.set(version, "7", ex=60)
    cache = RedisTools(client, "gateway", 60).cache
    assert cache.get_or_set(entry_name(f"t:{unique}"), lambda: {"n": 1}, versions=[version]) \
        == {"n": 1}
    assert len({client.get_node_from_key(k).port
                for k in (member, version, f"auth:blacklist:jti:{claims['jti']}",
                          f"auth:blacklist:sid:{claims['sid']}", f"{entry_name(f't:{unique}')}|7",
                          f"gateway:ratelimit:{unique}")}) > 1

    def run(claims=claims, limit=Limit(3, 60)):
        return checks.run(claims, f"gateway:ratelimit:{unique}", limit, member,
                          (entry_name(f"t:{unique}"), [version]))

    first = run()
    assert not first.revoked and first.decision.allowed and first.decision.remaining == 2
    assert first.membership == {"role": "member", "status": "active"}
    assert first.answer == '{"n": 1}'
    assert [run().decision.allowed for _ in range(3)] == [True, True, False]
    refused = run()
    assert refused.membership is None and refused.answer is None  # stopped at the limit
    assert run(limit=None).decision is None and run(limit=None).answer == '{"n": 1}'

    client.set(f"auth:blacklist:sid:{claims['sid']}", 1, ex=60)
    assert run().revoked
    pat = {"pat": "p1", "pat_key": f"auth:pat:{unique}"}
    assert run(pat).revoked  # a personal token's record must be there
    client.set(f"auth:pat:{unique}", json.dumps({"scopes": []}), ex=60)
    assert not run(pat, None).revoked
    client.set(f"auth:pat:{unique}", "revoked", ex=60)
    assert run(pat, None).revoked


def test_the_services_own_users_exist_on_every_node_and_keep_to_their_rights(
        config, cluster, unique):
    """ACL users are per node: shared.access makes them on each primary. As its own
    user the gateway runs its checks and cached look-ups on the cluster (reads of
    others' keys, writes of its own) and may not write the membership cache."""
    access.provision_redis(config, services=["gateway", "employees"])
    users = {name: make_client({**config, **access.service_uris(name, config["AMQP_URI"],
                                                                 config["REDIS_URI"])})
             for name in ("gateway", "employees")}
    try:
        for port in cluster.ports:
            node = redis.Redis(port=port, username="wf-gateway",
                               password=access.password("gateway"))
            assert node.ping()
            node.close()
        org, user = f"o{unique}", f"u{unique}"
        employees = RedisTools(users["employees"], "employees", 60).cache
        employees.get_or_set(membership_key(org, user), lambda: {"role": "member",
                                                                  "status": "active"},
                             tags=[f"member:{org}:{user}"])
        gateway = users["gateway"]
        checked = RequestChecks(gateway).run({"jti": f"j{unique}"}, f"gateway:ratelimit:{unique}",
                                             Limit(5, 60), membership_key(org, user),
                                             (entry_name(f"t:{unique}"),
                                              [org_version_key("tasks", org)]))
        assert not checked.revoked and checked.decision.remaining == 4
        assert checked.membership == {"role": "member", "status": "active"}
        assert RedisTools(gateway, "gateway", 60).cache.get_or_set(
            entry_name(f"t:{unique}"), lambda: {"n": 1},
            versions=[org_version_key("tasks", org)]) == {"n": 1}
        with pytest.raises(redis.exceptions.NoPermissionError):
            gateway.set(membership_key(org, user), '{"role": "owner", "status": "active"}')
    finally:
        for client in users.values():
            client.close()


def test_a_publish_on_any_node_reaches_the_gateways_one_subscription(config, cluster, unique):
    realtime = Realtime(config)
    queue: LightQueue = LightQueue()
    user = f"u{unique}"
    realtime.sockets[user] = {queue}
    try:
        realtime._ensure_listener()
        for port in cluster.ports:  # straight to each primary: whichever one it subscribed on
            node = redis.Redis(port=port)
            node.publish(user_channel(user), f"from {port}")
            node.close()
        make_client(config).publish(user_channel(user), "from the cluster client")
        got = []
        wait_until(lambda: got.extend(_drain(queue)) or len(got) == 4, timeout=30,
                   what="every message")
        assert sorted(got) == sorted([*(f"from {p}" for p in cluster.ports),
                                      "from the cluster client"])
    finally:
        realtime.stop()


def _drain(queue: LightQueue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get())
    eventlet.sleep(0)
    return items


def test_a_cluster_that_is_down_fails_open_and_the_checks_fail_closed(unique):
    """redis-py says "cannot be connected" with its own exception: it is a
    ConnectionError here, so nothing behaves otherwise than on one node that is down."""
    down = PrivateRedisCluster(3)
    down.start()
    try:
        tools = RedisTools(make_client({"REDIS_URI": down.uri, "REDIS_CLUSTER_NODES": down.nodes,
                                        "REDIS_TIMEOUT": 0.3}), "down", 60)
        tools.cache.set(f"k:{unique}", {"old": True}, tags=["t"])
        checks = RequestChecks(tools.client)
        for proc in down.procs:
            proc.kill()
            proc.wait(10)
        assert tools.cache.get_or_set(f"k:{unique}", lambda: {"fresh": True}) == {"fresh": True}
        assert tools.limiter.hit(f"rl:{unique}", Limit(1, 60)).allowed
        tools.cache.invalidate_tags("t")
        assert len(tools.missed) == 1  # made when the cluster answers again
        with pytest.raises(Unavailable):
            checks.run({"jti": f"j{unique}"}, f"rl:{unique}", Limit(5, 60), None)
        with pytest.raises(redis.ConnectionError):
            tools.ping()
    finally:
        down.cleanup()
