"""What every authenticated ``@api`` request checks in Redis, in one round trip.

One script, in this order, stopping at the first refusal: the token's
blacklist keys (``auth:blacklist:jti:*``, ``auth:blacklist:sid:*``), or for
a personal access token its record (``auth:pat:*``, which must be there and
not ``revoked``), the
rate limit (``shared.redis`` GCRA, counted only for a token not revoked),
on an ``/orgs/<org_id>`` route the caller's cached membership
(``employee_svc.contract.membership_key``), and, when it is there, on a route with
a ``CachedRoute`` its cached answer (``gateway_svc.cache``). It fails
closed: Redis unreachable is a 503, as the blacklist check alone was.

That is one round trip on one Redis. The keys live in different hash slots,
and the cached half on the cache instance when it has its own
(``REDIS_CACHE_URI``), so otherwise the checks are split, in the same order,
stopping at the same refusals: the state half (blacklist, token record, rate
limit) on ``REDIS_URI``, failing closed, then the cached half (membership,
answer) on the cache instance, failing open (a miss: the route asks employees).
On one node each half is the same script; on a cluster it is single-key
commands (one pipeline for the blacklist and the record, the GCRA script on
the rate key, one pipeline for the membership and the answer's counters, then
the answer: ``shared.redis.versioned_key``, the key ``Cache.lookup`` reads).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import redis
from redis.exceptions import RedisClusterException

from gateway_svc.identity import blacklist_keys
from shared.errors import Unavailable
from shared.redis import (
    GCRA_FUNCTION,
    GCRA_LUA,
    LOOKUP_FUNCTION,
    Decision,
    Limit,
    clustered,
    keys_from_argv,
    versioned_key,
)

log = logging.getLogger(__name__)

# KEYS (in ARGV after the six arguments: shared.redis.keys_from_argv): n blacklist
# keys, the token record that must be live (if ARGV[6] = 1), the rate-limit key (if
# ARGV[1] > 0), the membership key (if ARGV[4] = 1), then the cached answer's version
# keys. ARGV: limit, period_ms, n, membership?, the cached answer's name (or ''), live
# record?. Returns {revoked, gcra reply or nil, membership or nil, cached answer or nil}.
CHECKS_LUA = keys_from_argv(7) + GCRA_FUNCTION + LOOKUP_FUNCTION + """
local n = tonumber(ARGV[3])
if n > 0 and redis.call('EXISTS', unpack(KEYS, 1, n)) > 0 then return {1} end
local i = n + 1
if ARGV[6] == '1' then
  local record = redis.call('GET', KEYS[i])
  if not record or record == 'revoked' then return {1} end
  i = i + 1
end
local rate = false
if tonumber(ARGV[1]) > 0 then
  rate = gcra(KEYS[i], tonumber(ARGV[1]), tonumber(ARGV[2]))
  i = i + 1
  if rate[1] == 0 then return {0, rate} end
end
if ARGV[4] ~= '1' then return {0, rate} end
local member = redis.call('GET', KEYS[i])
if not member or ARGV[5] == '' then return {0, rate, member} end
return {0, rate, member, cached_answer(ARGV[5], i + 1, #KEYS)[2]}
"""


@dataclass(frozen=True)
class Checked:
    revoked: bool
    decision: Decision | None  # None: the route has no rate limit
    membership: dict | None    # None: not asked, or not cached
    answer: str | None         # the cached answer's JSON text, if asked and there


class RequestChecks:
    def __init__(self, client: redis.Redis, cache_client: redis.Redis | None = None):
        self.client = client
        self.cache_client = client if cache_client is None else cache_client
        # one script for everything only where every key is on one node
        self.split = self.cache_client is not client or clustered(client)
        self._script = client.register_script(CHECKS_LUA)
        self._cached_script = self.cache_client.register_script(CHECKS_LUA)
        self._gcra = client.register_script(GCRA_LUA)

    def run(self, claims: dict, rate_key: str, limit: Limit | None,
            membership_key: str | None, answer: tuple[str, list[str]] | None = None) -> Checked:
        """``answer``: the cached answer's entry name and version keys."""
        keys = blacklist_keys(claims)
        pat_key = claims.get("pat_key")
        try:
            if not self.split:
                reply = self._script(args=[*self._args(keys, pat_key, limit, membership_key,
                                                       answer),
                                           *keys, *([pat_key] if pat_key else []),
                                           *([rate_key] if limit is not None else []),
                                           *self._cached_keys(membership_key, answer)])
            else:
                reply = self._state(keys, pat_key, rate_key, limit)
        except (redis.RedisError, RedisClusterException) as exc:
            log.warning("token blacklist unreachable, refusing: %s", exc)
            raise Unavailable("Cannot check the token right now; try again shortly.") from None
        revoked, rate, member, text = [*reply, None, None, None][:4]
        if self.split and not revoked and (rate is None or rate[0]) and membership_key:
            member, text = self._cached(membership_key, answer)
        decision = None if rate is None or limit is None else Decision.from_script(limit, rate)
        return Checked(bool(revoked), decision,
                       json.loads(member) if member else None, text)

    @staticmethod
    def _args(keys: list[str], pat_key: str | None, limit: Limit | None,
              membership_key: str | None, answer: tuple[str, list[str]] | None) -> list:
        args = [0, 0, len(keys), 0, "", 0]
        if pat_key:
            args[5] = 1
        if limit is not None:
            args[:2] = limit.script_args()
        if membership_key:
            args[3] = 1
            if answer is not None:
                args[4] = answer[0]
        return args

    @staticmethod
    def _cached_keys(membership_key: str | None,
                     answer: tuple[str, list[str]] | None) -> list[str]:
        if not membership_key:
            return []
        return [membership_key, *(answer[1] if answer is not None else [])]

    def _state(self, keys: list[str], pat_key: str | None, rate_key: str | None,
               limit: Limit | None) -> list:
        """{revoked} or {0, gcra reply or None}, from the state instance."""
        if not clustered(self.client):
            return self._script(args=[*self._args(keys, pat_key, limit, None, None), *keys,
                                      *([pat_key] if pat_key else []),
                                      *([rate_key] if limit is not None else [])])
        pipe = self.client.pipeline(transaction=False)
        for key in keys:  # one key each: the jti's and the session's are in other slots
            pipe.exists(key)
        if pat_key:
            pipe.get(pat_key)
        found = pipe.execute() if keys or pat_key else []
        if any(found[:len(keys)]):
            return [1]
        if pat_key and found[-1] in (None, "revoked"):
            return [1]
        if limit is None:
            return [0, None]
        return [0, self._gcra(keys=[rate_key], args=limit.script_args())]

    def _cached(self, membership_key: str,
                answer: tuple[str, list[str]] | None) -> tuple[str | None, str | None]:
        """(membership, cached answer) from the cache instance; (None, None) when it is
        unreachable: the route then asks the employees service, as on a miss."""
        try:
            if not clustered(self.cache_client):
                reply = self._cached_script(args=[
                    *self._args([], None, None, membership_key, answer),
                    *self._cached_keys(membership_key, answer)])
                member, text = [*reply, None, None, None, None][2:4]
                return member, text
            # the membership and the answer's counters in one pipeline, then the answer
            pipe = self.cache_client.pipeline(transaction=False)
            pipe.get(membership_key)
            for version in answer[1] if answer is not None else []:
                pipe.get(version)
            member, *versions = pipe.execute()
            if not member or answer is None:
                return member, None
            return member, self.cache_client.get(versioned_key(answer[0], versions))
        except (redis.RedisError, RedisClusterException) as exc:
            log.warning("cached membership unreachable, asking its owner: %s", exc)
            return None, None
