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

The keys live in different hash slots; under Redis Cluster this script would
need them under one hash tag (e.g. the user id), or be split into one call
per slot.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import redis

from gateway_svc.identity import blacklist_keys
from shared.errors import Unavailable
from shared.redis import GCRA_FUNCTION, LOOKUP_FUNCTION, Decision, Limit, keys_from_argv

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
    def __init__(self, client: redis.Redis):
        self._script = client.register_script(CHECKS_LUA)

    def run(self, claims: dict, rate_key: str, limit: Limit | None,
            membership_key: str | None, answer: tuple[str, list[str]] | None = None) -> Checked:
        """``answer``: the cached answer's entry name and version keys."""
        keys = blacklist_keys(claims)
        args = [0, 0, len(keys), 0, "", 0]
        if claims.get("pat_key"):
            keys.append(claims["pat_key"])
            args[5] = 1
        if limit is not None:
            keys.append(rate_key)
            args[:2] = [limit.limit, int(limit.period * 1000)]
        if membership_key:
            keys.append(membership_key)
            args[3] = 1
            if answer is not None:
                args[4] = answer[0]
                keys.extend(answer[1])
        try:
            reply = self._script(args=[*args, *keys])
        except redis.RedisError as exc:
            log.warning("token blacklist unreachable, refusing: %s", exc)
            raise Unavailable("Cannot check the token right now; try again shortly.") from None
        revoked, rate, member, text = [*reply, None, None, None][:4]
        decision = None if rate is None or limit is None else Decision.from_script(limit, rate)
        return Checked(bool(revoked), decision,
                       json.loads(member) if member else None, text)
