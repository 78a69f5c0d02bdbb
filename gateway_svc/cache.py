"""Cached GET answers at the gateway, with no RPC on a hit.

A cached answer's key includes the current values of version counters
(``shared.redis.org_version_key``) that the owning service bumps whenever it
changes something in that scope (every event it publishes with an org_id
does). Reading the counters and the entry is one Lua call; a bumped counter
makes every older entry unreachable at once, and the TTL removes it. A list
route answers with the stored JSON text as its body (``response``). A
counter bump missed while Redis was unreachable is bounded by that TTL.

A route declared with ``@api(..., cached=CachedRoute(...))`` is looked up in
the same Redis call as the request's checks (``gateway_svc.checks``): when
the caller's membership is cached and active and the answer is there, the
entrypoint answers with it before any worker starts.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable

import redis
from werkzeug.wrappers import Response

from shared.redis import RedisTools, org_version_key
from shared.telemetry import REDIS_ERRORS, count_cache

log = logging.getLogger(__name__)

# The keys of the gateway's scripts travel in ARGV (a local KEYS, from ARGV[first_key]
# on): EVAL wants write access to every declared key, and the gateway's Redis user may
# only read the keys of others (versions, blacklist, memberships: shared.access).
def keys_from_argv(first_key: int) -> str:
    return f"local KEYS = {{unpack(ARGV, {first_key})}}\n"


# the entry's key: its name then the versions in KEYS[first..last]; returns {key, entry or nil}
LOOKUP_FUNCTION = """
local function cached_answer(name, first, last)
  local parts = {name}
  for i = first, last do parts[#parts + 1] = redis.call('GET', KEYS[i]) or '0' end
  local key = table.concat(parts, '|')
  return {key, redis.call('GET', key)}
end
"""
LOOKUP_LUA = keys_from_argv(2) + LOOKUP_FUNCTION + "return cached_answer(ARGV[1], 1, #KEYS)\n"


def entry_name(key: str) -> str:
    return f"gateway:cache:{key}"


@dataclass(frozen=True)
class CachedRoute:
    """An org's answers of one ``/orgs/<org_id>/...`` GET route, one per query
    string, cached until ``scope`` (the owning service) changes the org."""

    name: str
    scope: str
    ttl: int = 60

    def key(self, request, org_id: str) -> str:
        return f"{self.name}:{org_id}:{json.dumps(request.args.to_dict(), sort_keys=True)}"

    def version_keys(self, org_id: str) -> list[str]:
        return [org_version_key(self.scope, org_id)]

    def lookup(self, request, org_id: str) -> tuple[str, list[str]]:
        """The entry's name and version keys, for a lookup made elsewhere."""
        return entry_name(self.key(request, org_id)), self.version_keys(org_id)

    def response(self, tools: RedisTools, request, org_id: str,
                 compute: Callable[[], Any]) -> Response:
        return ResponseCache(tools).response(self.key(request, org_id), self.version_keys(org_id),
                                             compute, ttl=self.ttl)


class ResponseCache:
    def __init__(self, tools: RedisTools, default_ttl: int = 60):
        self.tools = tools
        self.default_ttl = default_ttl
        self._lookup = tools.client.register_script(LOOKUP_LUA)

    def response(self, key: str, version_keys: list[str], compute: Callable[[], Any],
                 ttl: int | None = None) -> Response:
        """The answer as a JSON response whose body is the stored text itself:
        a hit is not decoded and encoded again."""
        return Response(self.json_text(key, version_keys, compute, ttl),
                        content_type="application/json")

    def get_or_compute(self, key: str, version_keys: list[str], compute: Callable[[], Any],
                       ttl: int | None = None) -> Any:
        return json.loads(self.json_text(key, version_keys, compute, ttl))

    def json_text(self, key: str, version_keys: list[str], compute: Callable[[], Any],
                  ttl: int | None = None) -> str:
        """The stored JSON text, or ``compute()``'s value serialised once and stored."""
        service = self.tools.service
        try:
            full_key, raw = self._lookup(args=[entry_name(key), *version_keys])
        except redis.RedisError as exc:
            REDIS_ERRORS.labels(service, "response_cache").inc()
            log.warning("response cache unavailable, answering from the service: %s", exc)
            return json.dumps(compute(), default=str)
        if raw is not None:
            count_cache(service, "hit", key)
            return raw
        count_cache(service, "miss", key)
        text = json.dumps(compute(), default=str)
        try:
            self.tools.client.set(full_key, text, ex=ttl or self.default_ttl)
        except redis.RedisError as exc:
            REDIS_ERRORS.labels(service, "response_cache").inc()
            log.warning("could not cache an answer: %s", exc)
        return text
