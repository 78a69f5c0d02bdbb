"""Redis for a service: the client, and on top of it a JSON cache, locks and
an atomic rate limiter.

Redis is a cache and a coordinator here, never the only copy of anything. The
cache therefore *fails open*: a Redis error is logged and counted and the
caller goes to the database. Rate limits fail open too (docs/architecture.md);
callers that must fail closed (the token blacklist) use the client directly
and let ``redis.RedisError`` become a 503.

Two instances, or one: ``REDIS_URI`` holds the state that must never be evicted
(blacklists, lockouts, rate limits, locks, idempotency keys, timer claims; run it
with ``noeviction``), ``REDIS_CACHE_URI`` the one cache (:class:`Cache`: its
entries, tag sets, generations and version counters; run it with ``maxmemory``
and ``allkeys-lru``). Unset, the cache shares ``REDIS_URI``.

``REDIS_CLUSTER_NODES`` makes the state client a ``redis.RedisCluster`` (and the
cache's too, unless ``REDIS_CACHE_URI`` names a single instance). A cluster runs
no script over keys of several hash slots: where one node runs one script (the
cache's generation check, its versioned look-up, the gateway's request checks),
a cluster runs single-key commands in an order that keeps the same guarantees
(see :meth:`Cache.set` and :meth:`Cache.lookup`).
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import redis
from nameko.extensions import DependencyProvider
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from shared.telemetry import REDIS_ERRORS, count_cache

log = logging.getLogger(__name__)

_MISS = object()
MAX_MISSED_INVALIDATIONS = 10_000
# how long the callers that miss one versioned entry wait for the one computing it
FLIGHT_S = 5.0
VERSION_TTL = 24 * 3600  # version and generation counters


def clustered(client: Any) -> bool:
    """A Redis Cluster client: no multi-key command or script across hash slots."""
    return isinstance(client, RedisCluster)


def mget(client: redis.Redis, keys: list[str]) -> list[Any]:
    """MGET, or on a cluster one MGET per hash slot (redis-py's ``mget_nonatomic``)."""
    if clustered(client):
        return client.mget_nonatomic(keys)
    return client.mget(keys)


class MissedInvalidations:
    """Cache invalidations that failed while Redis was unreachable, run again as
    soon as it answers (after the next invalidation that succeeds, the health
    check, the service's relay timer every 2 s). So a cached entry does not
    outlive a change made during an outage, even when Redis comes back with
    its data (a restart from its snapshot, a network partition). Only a process
    that dies during the outage loses its list; the entries' TTLs bound that.

    Each invalidation is named; a repeat of a pending one replaces it, so a
    long outage keeps at most one of each (and at most MAX_MISSED_INVALIDATIONS)."""

    def __init__(self, client: redis.Redis, service: str):
        self.client = client
        self.service = service
        self._pending: dict[str, Callable[[redis.Redis], Any]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def run(self, name: str, apply: Callable[[redis.Redis], Any]) -> bool:
        """``apply(client)`` now, or later if Redis is unreachable (True: done now)."""
        try:
            apply(self.client)
        except redis.RedisError as exc:
            REDIS_ERRORS.labels(self.service, "invalidate").inc()
            log.warning("could not %s now, again when Redis answers: %s", name, exc)
            self._pending.pop(name, None)
            self._pending[name] = apply
            while len(self._pending) > MAX_MISSED_INVALIDATIONS:
                dropped = next(iter(self._pending))
                del self._pending[dropped]
                log.error("dropped the missed invalidation %s (its TTL bounds it)", dropped)
            return False
        self.replay()
        return True

    def replay(self) -> int:
        """Run the missed invalidations, oldest first, until one fails."""
        done = 0
        for name, apply in list(self._pending.items()):
            try:
                apply(self.client)
            except redis.RedisError:
                break
            if self._pending.get(name) is apply:
                del self._pending[name]
            done += 1
        if done:
            log.info("ran %d invalidations missed while Redis was unreachable", done)
        return done


# Store a computed value only if no tag of it was invalidated since the reader
# read the generations (KEYS: the key, n generation keys, the tag sets;
# ARGV: value, ttl, n, the n generations read).
_SET_IF_SAME_GENERATIONS = """
local n = tonumber(ARGV[3])
for i = 1, n do
  if (redis.call('GET', KEYS[1 + i]) or '0') ~= ARGV[3 + i] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
for i = n + 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2]) + 60)
end
return 1
"""


# The keys of a script in ARGV (a local KEYS, from ARGV[first_key] on): EVAL wants write
# access to every declared key, and a service's Redis user may only read the keys of
# others (versions, blacklist, memberships: shared.access).
def keys_from_argv(first_key: int) -> str:
    return f"local KEYS = {{unpack(ARGV, {first_key})}}\n"


# A versioned entry's key: its name then the versions in KEYS[first..last], joined
# with '|'; returns {key, entry or nil}. The gateway's per-request checks
# (gateway_svc.checks) include the function, so they read an entry Cache wrote.
LOOKUP_FUNCTION = """
local function cached_answer(name, first, last)
  local parts = {name}
  for i = first, last do parts[#parts + 1] = redis.call('GET', KEYS[i]) or '0' end
  local key = table.concat(parts, '|')
  return {key, redis.call('GET', key)}
end
"""
LOOKUP_LUA = keys_from_argv(2) + LOOKUP_FUNCTION + "return cached_answer(ARGV[1], 1, #KEYS)\n"


def versioned_key(name: str, versions: list[str | None]) -> str:
    """What ``cached_answer`` builds: the name, then the counters' values ('0' if unset)."""
    return "|".join([name, *(v or "0" for v in versions)])


class Cache:
    """The one cache: JSON values with a TTL, dropped by tags or made stale by versions.

    Tags, for what the service itself invalidates: a tag is a Redis set of the keys
    cached under it (``{service}:tag:{tag}``) and a generation counter
    (``{service}:tag-gen:{tag}``). ``invalidate_tags`` advances the generations,
    then deletes every key in the sets. ``get_or_set`` reads the generations
    before computing and stores the value only if they did not move meanwhile:
    a read that raced a change cannot put the old value back.

    Versions, for what another service changes (``org_version_key``): with
    ``versions=[...]`` the entry's key is ``key|v1|v2...``, the counters' current
    values, read with the entry in one script call; ``bump_versions`` makes every
    older entry unreachable at once (the TTL removes it). ``get_or_set_text``
    answers the stored JSON text itself (no decode on a hit).

    Every look-up counts a hit, miss or error and logs it at debug
    (``telemetry.count_cache``). Redis errors fail open (the value is computed).
    An invalidation that fails while Redis is unreachable is run again when it
    answers (:class:`MissedInvalidations`); every key has a TTL too.
    """

    def __init__(self, client: redis.Redis, service: str, default_ttl: int = 300,
                 missed: MissedInvalidations | None = None):
        self.client = client
        self.service = service
        self.default_ttl = default_ttl
        self.missed = missed if missed is not None else MissedInvalidations(client, service)
        self.clustered = clustered(client)
        self._set_if_same = client.register_script(_SET_IF_SAME_GENERATIONS)
        self._lookup = client.register_script(LOOKUP_LUA)

    def _failed(self, what: str, exc: Exception) -> None:
        REDIS_ERRORS.labels(self.service, what).inc()
        log.warning("redis %s failed, bypassing cache: %s", what, exc)

    def get(self, key: str) -> Any:
        """The cached value, or ``_MISS`` (see :meth:`get_or_set`) as None."""
        value = self._get(key)
        return None if value is _MISS else value

    def _get(self, key: str) -> Any:
        try:
            raw = self.client.get(key)
        except redis.RedisError as exc:
            self._failed("cache_get", exc)
            count_cache(self.service, "error", key)
            return _MISS
        count_cache(self.service, "miss" if raw is None else "hit", key)
        return _MISS if raw is None else json.loads(raw)

    def get_many(self, keys: list[str]) -> list[Any]:
        """The cached values of ``keys`` in one read (None for each miss)."""
        if not keys:
            return []
        try:
            raws = mget(self.client, keys)
        except redis.RedisError as exc:
            self._failed("cache_get", exc)
            for key in keys:
                count_cache(self.service, "error", key)
            return [None] * len(keys)
        for key, raw in zip(keys, raws, strict=True):
            count_cache(self.service, "miss" if raw is None else "hit", key)
        return [None if raw is None else json.loads(raw) for raw in raws]

    def get_many_or_set(self, tags: dict[str, str], compute: Callable[[list[str]], dict],
                        ttl: int | None = None) -> dict[str, Any]:
        """:meth:`get_or_set` for many keys, each cached under one tag (``{key: tag}``):
        one read for all, ``compute(missing keys)`` (``{key: value}``) once for the misses,
        stored in one round trip, each only if its tag was not invalidated meanwhile."""
        found = dict(zip(tags, self.get_many(list(tags)), strict=True))
        missing = [key for key, value in found.items() if value is None]
        if not missing:
            return found
        generations = self.generations(tags[key] for key in missing)
        computed = compute(missing)
        found.update(computed)
        if generations is None:  # Redis is down: answered, not stored
            return found
        ttl = ttl or self.default_ttl
        try:
            if self.clustered:  # the keys are in several slots: each by itself
                for key, generation in zip(missing, generations, strict=True):
                    self.set(key, computed[key], ttl, [tags[key]], [generation])
                return found
            pipe = self.client.pipeline(transaction=False)
            for key, generation in zip(missing, generations, strict=True):
                self._set_if_same(keys=[key, self.generation_key(tags[key]), self.tag_key(tags[key])],
                                  args=[json.dumps(computed[key], default=str), ttl, 1, generation],
                                  client=pipe)
            pipe.execute()
        except redis.RedisError as exc:
            self._failed("cache_set", exc)
        return found

    def generations(self, tags: Iterable[str]) -> list[str] | None:
        """Read before computing a value to ``set`` under these tags (None: Redis is down)."""
        tags = list(tags)
        if not tags:
            return []
        try:
            return [g or "0" for g in mget(self.client, [self.generation_key(t) for t in tags])]
        except redis.RedisError as exc:
            self._failed("cache_get", exc)
            return None

    def set(self, key: str, value: Any, ttl: int | None = None, tags: Iterable[str] = (),
            generations: list[str] | None = None) -> bool:
        """Store ``value``; with ``generations`` (from :meth:`generations`, for the same
        tags), only if none of the tags was invalidated since they were read."""
        ttl = ttl or self.default_ttl
        tags = list(tags)
        if generations is None:
            generations = self.generations(tags)
            if generations is None:
                return False
        try:
            if self.clustered:
                return self._set_then_check(key, json.dumps(value, default=str), ttl, tags,
                                            generations)
            return bool(self._set_if_same(
                keys=[key, *map(self.generation_key, tags), *map(self.tag_key, tags)],
                args=[json.dumps(value, default=str), ttl, len(tags), *generations]))
        except redis.RedisError as exc:
            self._failed("cache_set", exc)
            return False

    def _set_then_check(self, key: str, text: str, ttl: int, tags: list[str],
                        generations: list[str]) -> bool:
        """On a cluster (the keys are in several slots): store the entry, add it to its
        tag sets, then read the generations and drop the entry if one moved. As safe as
        the one-script check: an invalidation advances a generation before it reads the
        tag set, so one that this check did not see reads a set that lists the entry."""
        if not tags:
            self.client.set(key, text, ex=ttl)
            return True
        if self._generations_now(tags) != generations:
            return False  # moved already: do not store at all
        pipe = self.client.pipeline(transaction=False)
        pipe.set(key, text, ex=ttl)
        for tag in tags:
            pipe.sadd(self.tag_key(tag), key)
            pipe.expire(self.tag_key(tag), ttl + 60)
        pipe.execute()
        if self._generations_now(tags) != generations:
            self.client.delete(key)
            return False
        return True

    def _generations_now(self, tags: list[str]) -> list[str]:
        return [g or "0" for g in mget(self.client, [self.generation_key(t) for t in tags])]

    def get_or_set(self, key: str, compute: Callable[[], Any], ttl: int | None = None,
                   tags: Iterable[str] = (), versions: Iterable[str] = (),
                   cache_none: bool = True) -> Any:
        """The cached value, or ``compute()``'s, stored under ``tags`` (or, with
        ``versions``, under the counters' current values). ``cache_none=False``:
        a None is answered but not stored (no negative caching)."""
        versions = list(versions)
        if versions:
            return json.loads(self.get_or_set_text(key, compute, ttl, versions,
                                                   cache_none=cache_none))
        value = self._get(key)
        if value is _MISS:
            tags = list(tags)
            generations = self.generations(tags)
            value = compute()
            if generations is not None and (cache_none or value is not None):
                self.set(key, value, ttl=ttl, tags=tags, generations=generations)
        return value

    def get_or_set_text(self, key: str, compute: Callable[[], Any], ttl: int | None = None,
                        versions: Iterable[str] = (), cache_none: bool = True) -> str:
        """The stored JSON text of a versioned entry (one script call reads the
        versions and the entry), or ``compute()``'s value serialised once and stored."""
        try:
            full_key, raw = self.lookup(key, versions)
        except redis.RedisError as exc:
            self._failed("cache_get", exc)
            count_cache(self.service, "error", key)
            return json.dumps(compute(), default=str)
        if raw is not None:
            count_cache(self.service, "hit", key)
            return raw
        count_cache(self.service, "miss", key)
        return self._compute_once(full_key, compute, ttl, cache_none)

    def _compute_once(self, full_key: str, compute: Callable[[], Any], ttl: int | None,
                      cache_none: bool) -> str:
        """A missing versioned entry, computed by one caller at a time across processes
        (a ``{key}|flight`` lock; no stampede when a bump empties a busy entry): the
        others wait for its text while the lock lasts, and one of them computes if it
        goes without one (its computer failed), all within ``FLIGHT_S``. A versioned key
        names the versions it was computed at, so waiting never answers older data."""
        flight, leader, raw = f"{full_key}|flight", False, None
        give_up, pause = time.monotonic() + FLIGHT_S, 0.005
        try:
            while not (leader := bool(self.client.set(flight, "1", nx=True,
                                                      px=int(FLIGHT_S * 1000)))):
                raw, flying = mget(self.client, [full_key, flight])
                if raw is not None:
                    return raw
                if time.monotonic() > give_up:
                    break
                if flying is not None:
                    time.sleep(pause)
                    pause = min(pause * 2, 0.1)
            raw = self.client.get(full_key)  # one may have landed since our look-up
        except redis.RedisError as exc:
            self._failed("cache_flight", exc)
        try:
            if raw is not None:
                return raw
            value = compute()
            text = json.dumps(value, default=str)
            if cache_none or value is not None:
                self.store_text(full_key, text, ttl)
            return text
        finally:
            if leader:
                try:
                    self.client.delete(flight)
                except redis.RedisError as exc:
                    self._failed("cache_flight", exc)

    def lookup(self, name: str, versions: Iterable[str]) -> tuple[str, str | None]:
        """(the versioned entry's key, its text or None): one script on one node; on a
        cluster the counters (one MGET per slot), then the entry."""
        versions = list(versions)
        if not self.clustered:
            full_key, raw = self._lookup(args=[name, *versions])
            return full_key, raw
        full_key = versioned_key(name, mget(self.client, versions) if versions else [])
        return full_key, self.client.get(full_key)

    def store_text(self, full_key: str, text: str, ttl: int | None = None) -> None:
        """Store a versioned entry's JSON text under the key its look-up returned."""
        try:
            self.client.set(full_key, text, ex=ttl or self.default_ttl)
        except redis.RedisError as exc:
            self._failed("cache_set", exc)

    def bump_versions(self, keys: Iterable[str]) -> None:
        """Advance version counters: entries keyed on them go stale (a bump
        missed while Redis is unreachable is made when it answers)."""
        for key in sorted(set(keys)):
            self.missed.run(f"bump {key}", functools.partial(_bump, key=key))

    def delete(self, *keys: str) -> None:
        if keys:
            self.missed.run(f"delete {' '.join(keys)}", lambda client: client.delete(*keys))

    def tag_key(self, tag: str) -> str:
        return f"{self.service}:tag:{tag}"

    def generation_key(self, tag: str) -> str:
        return f"{self.service}:tag-gen:{tag}"

    def invalidate_tags(self, *tags: str) -> None:
        tag_keys = [self.tag_key(tag) for tag in tags]

        def apply(client: redis.Redis) -> None:
            pipe = client.pipeline(transaction=False)
            for tag in tags:  # first: a value computed before this is not stored any more
                pipe.incr(self.generation_key(tag))
                pipe.expire(self.generation_key(tag), VERSION_TTL)
            for tag_key in tag_keys:
                pipe.smembers(tag_key)
            keys = {k for group in pipe.execute()[2 * len(tags):] for k in group}
            client.delete(*keys, *tag_keys)

        if tag_keys:
            self.missed.run(f"invalidate tags {' '.join(tags)}", apply)


# GCRA (generic cell rate algorithm) in one atomic script: no read-then-write
# race between concurrent callers. The key holds the "theoretical arrival
# time" in milliseconds. ``gcra(key, limit, period_ms)`` returns
# {allowed, remaining, retry_after_ms, reset_after_ms}; other scripts that
# count a request among other checks (the gateway's) include the function.
# The key's expiry is at least 1 ms: SET PX 0 is an error, and ``new_tat - now``
# rounds to 0 when the interval is below the precision of a millisecond clock
# held in a double (a limit above ~8 million a second); the arguments come from
# ``Limit.script_args`` (a period of at least 1 ms, else the interval is 0).
GCRA_FUNCTION = """
local function gcra(key, limit, period)
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  local interval = period / limit
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if allow_at > now then
    return {0, 0, math.ceil(allow_at - now), math.ceil(tat - now)}
  end
  redis.call('SET', key, new_tat, 'PX', math.max(1, math.ceil(new_tat - now)))
  local remaining = math.floor((now - allow_at) / interval)
  return {1, remaining, 0, math.ceil(new_tat - now)}
end
"""
GCRA_LUA = GCRA_FUNCTION + "return gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))\n"


@dataclass(frozen=True)
class Limit:
    """``limit`` requests per ``period`` seconds, written ``"100/60"``."""

    limit: int
    period: float

    @classmethod
    def parse(cls, text: str) -> "Limit":
        count, _, period = str(text).partition("/")
        limit, seconds = int(count), float(period or 60)
        if limit <= 0 or seconds <= 0:
            raise ValueError(f"bad rate limit {text!r}")
        return cls(limit, seconds)

    def script_args(self) -> list[int]:
        """``[limit, period_ms]`` for ``gcra``: a period under 1 ms counts as 1 ms
        (stricter, never looser; a period of 0 ms would make every interval 0)."""
        return [self.limit, max(1, round(self.period * 1000))]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: float  # seconds

    @classmethod
    def from_script(cls, limit: Limit, reply: list) -> "Decision":
        allowed, remaining, retry_ms = int(reply[0]), int(reply[1]), int(reply[2])
        return cls(bool(allowed), limit.limit, max(0, min(remaining, limit.limit)), retry_ms / 1000)

    def headers(self) -> dict[str, str]:
        headers = {"X-RateLimit-Limit": str(self.limit),
                   "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers


class RateLimiter:
    def __init__(self, client: redis.Redis, service: str):
        self.client = client
        self.service = service
        self._script = client.register_script(GCRA_LUA)

    def hit(self, key: str, limit: Limit) -> Decision:
        """Count one request against ``key``; fails open when Redis is down."""
        try:
            reply = self._script(keys=[key], args=limit.script_args())
        except redis.RedisError as exc:
            REDIS_ERRORS.labels(self.service, "ratelimit").inc()
            log.warning("rate limiter unavailable, failing open: %s", exc)
            return Decision(True, limit.limit, limit.limit, 0)
        return Decision.from_script(limit, reply)




def org_version_key(service: str, org_id: str) -> str:
    """A counter bumped whenever ``service`` changes anything in ``org_id``:
    cache keys that include it go stale at once (see gateway_svc.cache)."""
    return f"{service}:ver:org:{org_id}"


class RedisTools:
    """What a worker gets: the raw client (the state instance: locks, rate limits,
    anything that must not be evicted) plus the cache (on ``cache_client``, the
    evicting instance, when there is one), limiter and locks."""

    def __init__(self, client: redis.Redis, service: str, default_ttl: int,
                 cache_client: redis.Redis | None = None):
        self.client = client
        self.cache_client = client if cache_client is None else cache_client
        self.service = service
        self.missed = MissedInvalidations(self.cache_client, service)
        self.cache = Cache(self.cache_client, service, default_ttl, self.missed)
        self.limiter = RateLimiter(client, service)

    def invalidate(self, name: str, apply: Callable[[redis.Redis], Any]) -> bool:
        """Run a cache invalidation now, or as soon as Redis answers again."""
        return self.missed.run(name, apply)

    def lock(self, name: str, timeout: float = 10, blocking_timeout: float = 5):
        """A distributed lock (redis-py's, token-checked release)."""
        return self.client.lock(f"{self.service}:lock:{name}", timeout=timeout,
                                blocking_timeout=blocking_timeout)

    @property
    def separate_cache(self) -> bool:
        return self.cache_client is not self.client

    def ping(self) -> float:
        """Latency in ms. Redis is not healthy again until the invalidations it
        missed are made: until then cached answers may be stale. With the cache on
        its own instance, this is the state instance alone (:meth:`ping_cache`)."""
        started = time.perf_counter()
        self.client.ping()
        latency = (time.perf_counter() - started) * 1000
        if not self.separate_cache:
            self._missed_made()
        return latency

    def ping_cache(self) -> float:
        """The cache instance's latency in ms, once the invalidations it missed are made."""
        started = time.perf_counter()
        self.cache_client.ping()
        latency = (time.perf_counter() - started) * 1000
        self._missed_made()
        return latency

    def _missed_made(self) -> None:
        self.missed.replay()
        if self.missed:
            raise redis.ConnectionError(f"{len(self.missed)} missed cache invalidations not made yet")


def _bump(client: redis.Redis, key: str) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, VERSION_TTL)
    pipe.execute()


def sentinel_hosts(text: str) -> list[tuple[str, int]]:
    """``"10.0.0.1:26379,10.0.0.2:26379"`` -> [(host, port), ...]."""
    hosts = []
    for item in text.split(","):
        host, _, port = item.strip().rpartition(":")
        hosts.append((host or "127.0.0.1", int(port or 26379)))
    return hosts


@contextlib.contextmanager
def _outage_as_connection_error():
    """redis-py's RedisCluster reports "no node reachable" as RedisClusterException, not
    a RedisError: made a ConnectionError, so every caller fails open (the cache, rate
    limits) or closed (the blacklist) as it does on one node. Its other
    RedisClusterExceptions are programming errors and stay as they are."""
    try:
        yield
    except RedisClusterException as exc:
        # "cannot be connected" comes with the last node's error as its cause, or with
        # none once redis-py has dropped every node it knew (seen after all were killed)
        if isinstance(exc.__cause__, (redis.ConnectionError, redis.TimeoutError)) or \
                "cannot be connected" in str(exc):
            raise redis.ConnectionError(str(exc)) from exc
        raise


class Cluster(RedisCluster):
    """The services' cluster client: an unreachable cluster is a ``redis.ConnectionError``."""

    def execute_command(self, *args, **kwargs):
        with _outage_as_connection_error():
            return super().execute_command(*args, **kwargs)

    def pipeline(self, transaction=None, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def guarded(raise_on_error: bool = True):
            with _outage_as_connection_error():
                return execute(raise_on_error)

        pipe.execute = guarded
        return pipe


def cluster_nodes(text: str) -> list[ClusterNode]:
    """``"10.0.0.1:7000,10.0.0.2:7000"`` -> the cluster's startup nodes."""
    return [ClusterNode(host or "127.0.0.1", int(port or 6379))
            for host, _, port in (item.strip().rpartition(":") for item in text.split(","))
            if port or host]


def make_client(config: dict, decode_responses: bool = True) -> redis.Redis:
    """The client for ``REDIS_URI``; with ``REDIS_CLUSTER_NODES`` set, a Redis
    Cluster client that starts from those nodes (user and password from
    ``REDIS_URI``; a cluster has only database 0), follows the slots as they move
    and a replica promoted after a primary's loss; with ``REDIS_SENTINELS`` set,
    the current primary of ``REDIS_SENTINEL_MASTER`` as the sentinels name it
    (database and password still from ``REDIS_URI``), followed through a failover:
    a command that meets the old primary reconnects to the new one and is retried
    once. ``decode_responses=False``: bytes (the web console's pickled sessions)."""
    timeout = float(config.get("REDIS_TIMEOUT", 1.0))
    # one immediate retry on a connection error: the first command after a Redis
    # restart meets a dead pooled connection; a refused connect fails fast again
    options = dict(decode_responses=decode_responses, socket_timeout=timeout, socket_connect_timeout=timeout,
                   health_check_interval=30, retry=Retry(NoBackoff(), 1),
                   retry_on_error=[redis.ConnectionError])
    nodes = config.get("REDIS_CLUSTER_NODES")
    if nodes:
        from redis.connection import parse_url

        url = parse_url(config["REDIS_URI"])
        return Cluster(startup_nodes=cluster_nodes(nodes), username=url.get("username"),
                       password=url.get("password"), **options)
    sentinels = config.get("REDIS_SENTINELS")
    if not sentinels:
        return redis.Redis.from_url(config["REDIS_URI"], **options)
    from redis.connection import parse_url
    from redis.sentinel import Sentinel

    url = parse_url(config["REDIS_URI"])
    sentinel = Sentinel(sentinel_hosts(sentinels),
                        sentinel_kwargs={"socket_timeout": timeout,
                                         "password": config.get("REDIS_SENTINEL_PASSWORD") or None})
    return sentinel.master_for(config.get("REDIS_SENTINEL_MASTER") or "workforce",
                               db=url.get("db", 0), password=url.get("password"),
                               username=url.get("username"), **options)


def separate_cache(config: dict) -> bool:
    """Does the cache live on its own instance (``REDIS_CACHE_URI``, not ``REDIS_URI``)?"""
    uri = config.get("REDIS_CACHE_URI")
    return bool(uri) and uri != config.get("REDIS_URI")


def make_cache_client(config: dict, state: redis.Redis | None = None) -> redis.Redis:
    """The client of the evicting cache instance ``REDIS_CACHE_URI`` (one node; its
    entries may be lost at any time), or ``state`` (else a new client like
    :func:`make_client`'s) when the cache shares ``REDIS_URI``."""
    if not separate_cache(config):
        return state if state is not None else make_client(config)
    return make_client({"REDIS_URI": config["REDIS_CACHE_URI"],
                        "REDIS_TIMEOUT": config.get("REDIS_TIMEOUT", 1.0)})


class Redis(DependencyProvider):
    def setup(self) -> None:
        config = self.container.config
        self.client = make_client(config)
        self.cache_client = make_cache_client(config, self.client)
        self.tools = RedisTools(self.client, self.container.service_name,
                                int(config.get("CACHE_TTL", 300)), self.cache_client)

    def stop(self) -> None:
        self.client.close()
        if self.cache_client is not self.client:
            self.cache_client.close()

    kill = stop

    def get_dependency(self, worker_ctx) -> RedisTools:
        return self.tools
