"""Cached GET answers at the gateway, with no RPC on a hit: versioned entries
of the one cache (``shared.redis.Cache``, ``versions=``).

A cached answer's key (``gateway:cache:<name>|<versions>``) includes the
current values of version counters (``shared.redis.org_version_key``) that the
owning service bumps whenever it changes something in that scope (every event
it publishes with an org_id does). Reading the counters and the entry is one
Lua call; a bumped counter makes every older entry unreachable at once, and
the TTL removes it. A list route answers with the stored JSON text as its body
(``CachedRoute.response``). A counter bump missed while Redis was unreachable
is bounded by that TTL.

A route declared with ``@api(..., cached=CachedRoute(...))`` is looked up in
the same Redis call as the request's checks (``gateway_svc.checks``, which
includes ``shared.redis.LOOKUP_FUNCTION``): when the caller's membership is
cached and active and the answer is there, the entrypoint answers with it
before any worker starts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from werkzeug.wrappers import Response

from shared.redis import RedisTools, org_version_key

_KEY_JSON = json.JSONEncoder(sort_keys=True)  # json.dumps(sort_keys=True) builds one per call


def entry_name(key: str) -> str:
    return f"gateway:cache:{key}"


def json_response(text: str) -> Response:
    """A JSON answer whose body is the stored text itself (not decoded and encoded again)."""
    return Response(text, content_type="application/json")


def cached_response(tools: RedisTools, key: str, version_keys: list[str],
                    compute: Callable[[], Any], ttl: int) -> Response:
    return json_response(tools.cache.get_or_set_text(entry_name(key), compute, ttl,
                                                     versions=version_keys))


@dataclass(frozen=True)
class CachedRoute:
    """An org's answers of one ``/orgs/<org_id>/...`` GET route, one per query
    string, cached until ``scope`` (the owning service) changes the org."""

    name: str
    scope: str
    ttl: int = 60

    def key(self, request, org_id: str) -> str:
        args = request.args.to_dict() if request.query_string else {}  # parsed only if any
        return f"{self.name}:{org_id}:{_KEY_JSON.encode(args)}"

    def version_keys(self, org_id: str) -> list[str]:
        return [org_version_key(self.scope, org_id)]

    def lookup(self, request, org_id: str) -> tuple[str, list[str]]:
        """The entry's name and version keys, for a lookup made elsewhere."""
        return entry_name(self.key(request, org_id)), self.version_keys(org_id)

    def response(self, tools: RedisTools, request, org_id: str,
                 compute: Callable[[], Any]) -> Response:
        return cached_response(tools, self.key(request, org_id), self.version_keys(org_id),
                               compute, self.ttl)
