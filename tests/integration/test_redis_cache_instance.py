"""The cache on its own evicting instance (REDIS_CACHE_URI: a private
redis-server with ``maxmemory`` and ``allkeys-lru``, as compose and k8s run it)
beside the state on REDIS_URI. Filling the cache evicts cache entries and
never the state: a revoked token stays revoked. The gateway's tenancy tests and
the versioned cache test run here again with their ``config`` pointed at the
two instances (the request checks split into a state and a cached half)."""
from __future__ import annotations

import pymongo
import pytest
import redis
from nameko.testing.services import entrypoint_hook

from employee_svc.contract import membership_key
from gateway_svc.checks import RequestChecks
from shared import access
from shared.redis import Limit, RedisTools, make_cache_client, make_client
from tests.e2e.servers import PrivateRedis
from tests.integration.test_foundation import (  # noqa: F401  run with the cache apart
    Lister,
    test_publishing_an_org_event_makes_cached_answers_for_that_org_stale,
)
from tests.integration.test_gateway_tenancy import (  # noqa: F401  run with the cache apart
    gateway,
    test_a_cached_answer_reaches_only_a_member_whose_cached_membership_is_active,
    test_members_reach_the_route_with_their_membership,
    test_non_members_and_removed_employees_get_404_before_validation,
)

MAXMEMORY = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def cache_server():
    server = PrivateRedis("--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "allkeys-lru",
                          "--save", "")
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def config(config, cache_server):
    return {**config, "REDIS_CACHE_URI": cache_server.uri}


@pytest.fixture
def tools(config, unique):
    tools = RedisTools(make_client(config), f"evict{unique}", 600, make_cache_client(config))
    yield tools
    tools.client.close()
    tools.cache_client.close()


def test_the_cache_and_the_state_are_on_their_own_instances(tools, cache_server, unique):
    tools.cache.set(f"k:{unique}", {"v": 1}, tags=[f"t:{unique}"])
    with tools.lock(f"l:{unique}"):
        assert tools.client.exists(f"{tools.service}:lock:l:{unique}")
    assert tools.cache_client.connection_pool.connection_kwargs["port"] == cache_server.port
    assert tools.client.get(f"k:{unique}") is None and tools.cache.get(f"k:{unique}") == {"v": 1}
    assert tools.cache_client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}


def test_a_full_cache_evicts_its_entries_and_never_a_revoked_token(tools, unique):
    org, user = f"o{unique}", f"u{unique}"
    claims = {"jti": f"j{unique}"}
    blacklisted = f"auth:blacklist:jti:{claims['jti']}"
    tools.client.set(blacklisted, 1, ex=300)  # what auth writes at logout
    tools.cache.set(membership_key(org, user), {"role": "member", "status": "active"})
    evicted_before = int(tools.cache_client.info("stats")["evicted_keys"])
    filler = "x" * 20_000
    keys = [f"{tools.service}:big:{n}" for n in range(3 * MAXMEMORY // len(filler))]
    for key in keys:  # three times what the cache may hold: no write is refused
        assert tools.cache.set(key, filler, tags=[f"org:{org}"])
    assert int(tools.cache_client.info("stats")["evicted_keys"]) > evicted_before
    assert int(tools.cache_client.info("memory")["used_memory"]) <= MAXMEMORY * 1.1
    kept = sum(value is not None for value in tools.cache.get_many(keys))
    assert 0 < kept < len(keys)
    assert tools.cache.get(keys[-1]) == filler  # the newest is there

    assert tools.client.get(blacklisted) == "1"  # the state instance evicts nothing
    checks = RequestChecks(tools.client, tools.cache_client)
    assert checks.run(claims, f"{tools.service}:rl", Limit(10, 60), membership_key(org, user)) \
        .revoked
    tools.client.delete(blacklisted, f"{tools.service}:rl")
    tools.cache.set(membership_key(org, user), {"role": "member", "status": "active"})
    checked = checks.run(claims, f"{tools.service}:rl", Limit(10, 60), membership_key(org, user))
    assert not checked.revoked and checked.decision.allowed
    assert checked.membership == {"role": "member", "status": "active"}  # read from the cache


def test_a_cache_instance_that_is_down_fails_open_and_the_state_still_refuses(config, unique):
    down = {**config, "REDIS_CACHE_URI": "redis://127.0.0.1:1/0", "REDIS_TIMEOUT": 0.2}
    tools = RedisTools(make_client(down), f"down{unique}", 60, make_cache_client(down))
    assert tools.cache.get_or_set(f"k:{unique}", lambda: {"computed": True}) == {"computed": True}
    checks = RequestChecks(tools.client, tools.cache_client)
    claims = {"jti": f"j{unique}"}
    member = membership_key(f"o{unique}", f"u{unique}")
    checked = checks.run(claims, f"{tools.service}:rl", Limit(10, 60), member)
    assert not checked.revoked and checked.membership is None  # asked of employees instead
    tools.client.set(f"auth:blacklist:jti:{claims['jti']}", 1, ex=60)
    try:
        assert checks.run(claims, f"{tools.service}:rl", Limit(10, 60), member).revoked
    finally:
        tools.client.delete(f"auth:blacklist:jti:{claims['jti']}", f"{tools.service}:rl")
    assert checked.decision.allowed and checked.decision.remaining == 9  # counted on the state


def test_the_services_users_are_made_on_the_cache_instance_too(config, cache_server):
    """Provisioned from REDIS_URI and REDIS_CACHE_URI; each service's environment
    names its own user on both."""
    access.provision_redis(config, services=["gateway"])
    uris = access.service_uris("gateway", config["AMQP_URI"], config["REDIS_URI"],
                               config["REDIS_CACHE_URI"])
    assert uris["REDIS_CACHE_URI"].startswith("redis://wf-gateway:")
    cache = make_cache_client({**config, **uris})
    try:
        assert cache.connection_pool.connection_kwargs["port"] == cache_server.port
        assert cache.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):  # with its rules, not open
            cache.set("employees:perm:o:u", '{"role": "owner"}')
    finally:
        cache.close()


def test_a_service_whose_cache_is_down_answers_from_mongodb_and_stays_healthy(
        container_factory, config):
    """Its health names the cache as down, but counts only what it cannot work
    without (readiness): a cache outage slows it, never takes it out of service."""
    down = {**config, "REDIS_CACHE_URI": "redis://127.0.0.1:1/0", "REDIS_TIMEOUT": 0.2}
    container = container_factory(Lister, down)
    container.start()
    db = pymongo.MongoClient(down["MONGODB_URI"])[f"{down['MONGODB_DB_PREFIX']}_lister"]
    db.things.insert_many([{"name": "a"}])
    with entrypoint_hook(container, "list_things") as list_things:
        assert list_things() == ["a"]
    with entrypoint_hook(container, "health") as health:
        report = health()
    assert report["ok"] is True and report["checks"]["redis"]["ok"] is True
    assert report["checks"]["redis_cache"]["ok"] is False
