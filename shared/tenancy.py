"""Tenancy, written once: is this user an active employee of this org, and
may they do this?

The membership of a user in an org is owned by the employees service
(``employees.get_membership(org_id, user_id)``), which caches it in Redis at
``employees:perm:{org}:{user}`` and deletes that key whenever the membership
changes. Callers read the cache directly (no RPC on the warm path) and ask
employees on a miss. A non-member gets NotFound (404: nothing in the org
exists for them); a member without the permission gets Forbidden (403).

A membership is a dict::

    {"org_id", "user_id", "employee_id", "role", "status", "permissions": [...],
     "teams": {team_id: "leader" | "member"}}
"""
from __future__ import annotations

import json
import logging

import redis

from shared.errors import Forbidden, NotFound
from shared.permissions import role_allows

log = logging.getLogger(__name__)

MEMBERSHIP_TTL = 300


def membership_key(org_id: str, user_id: str) -> str:
    return f"employees:perm:{org_id}:{user_id}"


def generation_key(org_id: str, user_id: str) -> str:
    return f"employees:perm-gen:{org_id}:{user_id}"


# Set the membership only if no change happened since the reader looked at the
# generation: a read that raced a change cannot put the old value back.
_SET_IF_SAME_GENERATION = """
if (redis.call('GET', KEYS[2]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


def membership_generation(redis_client: redis.Redis, org_id: str, user_id: str) -> str | None:
    """Read before loading a membership from the database (None: Redis is down)."""
    try:
        return redis_client.get(generation_key(org_id, user_id)) or "0"
    except redis.RedisError as exc:
        log.warning("membership cache unavailable: %s", exc)
        return None


def cache_membership(redis_client: redis.Redis, membership: dict, generation: str | None,
                     ttl: int = MEMBERSHIP_TTL) -> bool:
    """Cache what was loaded after reading ``generation``, unless it changed since."""
    if generation is None:
        return False
    org_id, user_id = membership["org_id"], membership["user_id"]
    try:
        return bool(redis_client.eval(_SET_IF_SAME_GENERATION, 2,
                                      membership_key(org_id, user_id),
                                      generation_key(org_id, user_id), generation,
                                      json.dumps(membership), ttl))
    except redis.RedisError as exc:
        log.warning("could not cache a membership: %s", exc)
        return False


def invalidate_membership(redis_tools, org_id: str, user_id: str) -> None:
    """After the change is committed: a new generation, and the cached copy gone
    (now, or as soon as Redis answers again: ``RedisTools.invalidate``)."""
    def apply(client: redis.Redis) -> None:
        pipe = client.pipeline(transaction=True)
        pipe.incr(generation_key(org_id, user_id))
        pipe.expire(generation_key(org_id, user_id), MEMBERSHIP_TTL * 2)
        pipe.delete(membership_key(org_id, user_id))
        pipe.execute()

    redis_tools.invalidate(f"invalidate membership {org_id}/{user_id}", apply)


def cached_membership(redis_client: redis.Redis, org_id: str, user_id: str) -> dict | None:
    try:
        raw = redis_client.get(membership_key(org_id, user_id))
    except redis.RedisError as exc:  # fail open to the owner of the data
        log.warning("membership cache unavailable: %s", exc)
        return None
    return json.loads(raw) if raw else None


def is_active(membership: dict | None) -> bool:
    return membership is not None and membership.get("status") == "active"


def require_member(redis_tools, employees_rpc, org_id: str, user_id: str,
                   action: str | None = None, *, cached: dict | None = None) -> dict:
    """The caller's active membership of ``org_id``, or NotFound/Forbidden.

    ``redis_tools`` is a service's ``shared.redis.RedisTools``;
    ``employees_rpc`` a ``ServiceRpc("employees")``; ``cached``: the membership
    the caller already read from its cache key (the gateway reads it with its
    other per-request checks), so it is not read again."""
    membership = cached or cached_membership(redis_tools.client, org_id, user_id)
    if membership is None:
        membership = employees_rpc.get_membership(org_id, user_id)
    if not is_active(membership):
        raise NotFound("Organization not found.")
    if action is not None and not role_allows(membership["role"], action):
        raise Forbidden(f"Your role ({membership['role']}) may not do {action}.")
    return membership
