"""Redis behind Sentinel: one primary, one replica and three sentinels started
here from the installed redis-server. The services' client (shared.redis.
make_client with REDIS_SENTINELS) follows the primary through a failover made
in the middle of a stream of cache writes and invalidations: requests recover
within seconds, and an invalidation that failed during the failover is made
once the new primary answers, so no stale entry survives it."""
from __future__ import annotations

import subprocess
import time

import pytest
import redis

from ops import mesh
from shared import access
from shared.redis import RedisTools, make_client
from tests.helpers import wait_until

pytestmark = pytest.mark.faults

MASTER = "workforce-test"


def _start(args: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    mesh.wait_for(lambda: mesh.port_open("127.0.0.1", port), 10, f"redis on {port}")
    return proc


@pytest.fixture(scope="module")
def sentinel_group(tmp_path_factory):
    base = tmp_path_factory.mktemp("sentinel")
    primary, replica = mesh.free_port(), mesh.free_port()
    procs = {"primary": _start(["--port", str(primary), "--bind", "127.0.0.1", "--save", "",
                                "--dir", str(base)], primary),
             "replica": _start(["--port", str(replica), "--bind", "127.0.0.1", "--save", "",
                                "--dir", str(base), "--replicaof", "127.0.0.1", str(primary)],
                               replica)}
    wait_until(lambda: redis.Redis(port=replica).info("replication")["master_link_status"] == "up",
               timeout=10, what="the replica to sync")
    sentinels = []
    for n in range(3):
        port = mesh.free_port()
        conf = base / f"sentinel-{n}.conf"
        conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {base}\n"
                        f"sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n"
                        f"sentinel down-after-milliseconds {MASTER} 1000\n"
                        f"sentinel failover-timeout {MASTER} 5000\n")
        procs[f"sentinel-{n}"] = _start([str(conf), "--sentinel"], port)
        sentinels.append(port)
    group = {"primary": primary, "replica": replica, "procs": procs,
             "config": {"REDIS_URI": "redis://127.0.0.1:6379/0", "REDIS_TIMEOUT": 0.5,
                        "REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in sentinels),
                        "REDIS_SENTINEL_MASTER": MASTER}}
    # every sentinel knows the replica and the other sentinels before a failover is asked of them
    wait_until(lambda: all(
        redis.Redis(port=p).sentinel_master(MASTER)["num-other-sentinels"] == 2 and
        redis.Redis(port=p).sentinel_master(MASTER)["num-slaves"] == 1 for p in sentinels),
        timeout=30, interval=0.2, what="the sentinels to find each other")
    yield group
    for proc in procs.values():
        proc.kill()
        proc.wait(5)


def test_the_client_talks_to_the_primary_the_sentinels_name(sentinel_group, unique):
    tools = RedisTools(make_client(sentinel_group["config"]), "sentinel-test", 60)
    tools.cache.set(f"k:{unique}", {"v": 1}, tags=[f"t:{unique}"])
    assert tools.cache.get(f"k:{unique}") == {"v": 1}
    assert tools.client.connection_pool.get_master_address() == ("127.0.0.1", sentinel_group["primary"])
    with tools.lock(f"l:{unique}"):
        pass


def test_service_users_exist_on_every_node_so_they_survive_a_failover(sentinel_group):
    """ACL users are not replicated: shared.access creates them on the primary
    and on every replica the sentinels know."""
    access.provision_redis(sentinel_group["config"], services=["notifications"])
    for node in ("primary", "replica"):
        client = redis.Redis(port=sentinel_group[node], username="wf-notifications",
                             password=access.password("notifications"))
        assert client.ping(), node
        with pytest.raises(redis.exceptions.NoPermissionError):  # with its rules, not open
            client.get("auth:jwks:kid:x")
        client.close()


@pytest.mark.timeout(120)
def test_a_failover_mid_flow_recovers_within_seconds_and_loses_no_invalidation(sentinel_group, unique):
    tools = RedisTools(make_client(sentinel_group["config"]), "sentinel-test", 600)
    cached = [f"entry:{unique}:{n}" for n in range(20)]
    for n, key in enumerate(cached):
        tools.cache.set(key, {"n": n}, tags=[f"tag:{unique}"])
    wait_until(lambda: redis.Redis(port=sentinel_group["replica"], decode_responses=True)
               .exists(*[tools.cache.tag_key(f"tag:{unique}")]) == 1,
               timeout=10, what="the entries to reach the replica")

    sentinel_group["procs"]["primary"].kill()  # SIGKILL: the primary is gone for good
    killed_at = time.monotonic()
    # the change happens while there is no primary: its invalidation fails and is kept
    tools.cache.invalidate_tags(f"tag:{unique}")
    failures = 0

    def answered() -> bool:
        nonlocal failures
        try:
            tools.client.set(f"probe:{unique}", "1", ex=60)
            return True
        except redis.RedisError:
            failures += 1
            return False

    wait_until(answered, timeout=30, interval=0.1, what="a new primary")
    recovered_s = time.monotonic() - killed_at
    print(f"\nfailover: writes answered again {recovered_s:.1f} s after the primary was killed "
          f"({failures} failed attempts meanwhile)")
    assert tools.client.connection_pool.get_master_address() == \
        ("127.0.0.1", sentinel_group["replica"])
    assert failures > 0  # there was an outage to ride out
    assert recovered_s < 15
    tools.missed.replay()  # what the relay timer and the health check do every 2 s
    assert len(tools.missed) == 0
    # every entry cached before the change is unreachable now, on the new primary
    assert [tools.cache.get(key) for key in cached] == [None] * len(cached)
    tools.cache.set(f"after:{unique}", {"ok": True})
    assert tools.cache.get(f"after:{unique}") == {"ok": True}
