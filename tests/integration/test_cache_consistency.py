"""No stale cache: a read that raced a change cannot store the old value, and
invalidations missed while Redis is unreachable are made when it answers again,
on a Redis that comes back from its snapshot with every stale entry it held (a
private redis-server, stopped and started)."""
import pytest
import redis

from employee_svc.contract import membership_key, membership_tag
from shared.redis import RedisTools, make_client
from shared.tenancy import cached_membership
from tests.e2e.servers import PrivateRedis


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_config(private_redis):
    """test_redis_cluster runs the race test with a cluster's instead."""
    return {"REDIS_URI": private_redis.uri}


def test_invalidations_missed_during_an_outage_are_made_when_redis_returns(private_redis):
    tools = RedisTools(make_client({"REDIS_URI": private_redis.uri}), "test", 60)
    tools.cache.set("tasks:list:a", ["old"], tags=["org:a"])
    tools.client.set("tasks:ver:org:a", 5)
    tools.cache.set(membership_key("a", "u1"), {"status": "active"}, tags=[membership_tag("a", "u1")])

    private_redis.stop()  # saves its snapshot
    tools.cache.invalidate_tags("org:a")
    tools.cache.bump_versions(["tasks:ver:org:a"])
    tools.cache.invalidate_tags(membership_tag("a", "u1"))
    with pytest.raises(redis.ConnectionError):
        tools.ping()
    assert len(tools.missed) == 3

    private_redis.start()  # ... and comes back with the stale entries
    assert tools.client.get("tasks:ver:org:a") == "5"
    tools.ping()  # healthy only once the missed invalidations are made
    assert len(tools.missed) == 0
    assert tools.cache.get("tasks:list:a") is None
    assert tools.client.get("tasks:ver:org:a") == "6"
    assert cached_membership(tools, "a", "u1") is None


def test_a_repeated_invalidation_is_kept_once(private_redis):
    tools = RedisTools(make_client({"REDIS_URI": private_redis.uri}), "test", 60)
    private_redis.stop()
    for _ in range(50):
        tools.cache.bump_versions(["tasks:ver:org:a", "tasks:ver:org:b"])
    assert len(tools.missed) == 2
    private_redis.start()
    tools.ping()
    assert tools.client.mget("tasks:ver:org:a", "tasks:ver:org:b") == ["1", "1"]


def test_many_reads_that_raced_an_invalidation_do_not_store_the_old_values(redis_config,
                                                                           unique):
    """``get_many_or_set`` (notifications' preferences): a value read while its tag was
    invalidated (the user saved new preferences meanwhile) is answered but not stored;
    the others are, and a later read stores the new value."""
    tools = RedisTools(make_client(redis_config), f"test{unique}", 60)
    tags = {"prefs:a": "user:a", "prefs:b": "user:b"}

    def slow_read(keys):  # b's change commits while the reader holds its old state
        tools.cache.invalidate_tags("user:b")
        return {key: {"email": "old"} for key in keys}

    assert tools.cache.get_many_or_set(tags, slow_read) == {
        "prefs:a": {"email": "old"}, "prefs:b": {"email": "old"}}
    assert tools.cache.get_many(["prefs:a", "prefs:b"]) == [{"email": "old"}, None]
    assert tools.cache.get_many_or_set(tags, lambda keys: {k: {"email": "new"} for k in keys}) \
        == {"prefs:a": {"email": "old"}, "prefs:b": {"email": "new"}}
    assert tools.cache.get("prefs:b") == {"email": "new"}
    tools.cache.invalidate_tags("user:a")
    assert tools.cache.get("prefs:a") is None


def test_a_read_that_raced_an_invalidation_does_not_store_the_old_value(redis_config, unique):
    tools = RedisTools(make_client(redis_config), f"test{unique}", 60)
    reads = []

    def slow_read():  # the reader loads the old state; the change commits meanwhile
        reads.append("old")
        tools.cache.invalidate_tags("team:t1")
        return {"leader": "old"}

    assert tools.cache.get_or_set("teams:team:t1", slow_read, tags=["team:t1", "org:o"]) \
        == {"leader": "old"}
    assert tools.cache.get("teams:team:t1") is None  # not stored
    assert tools.cache.get_or_set("teams:team:t1", lambda: {"leader": "new"},
                                  tags=["team:t1", "org:o"]) == {"leader": "new"}
    assert tools.cache.get("teams:team:t1") == {"leader": "new"}
    tools.cache.invalidate_tags("org:o")
    assert tools.cache.get("teams:team:t1") is None
