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


def cached_membership(redis_client: redis.Redis, org_id: str, user_id: str) -> dict | None:
    try:
        raw = redis_client.get(membership_key(org_id, user_id))
    except redis.RedisError as exc:  # fail open to the owner of the data
        log.warning("membership cache unavailable: %s", exc)
        return None
    return json.loads(raw) if raw else None


def require_member(redis_tools, employees_rpc, org_id: str, user_id: str,
                   action: str | None = None) -> dict:
    """The caller's active membership of ``org_id``, or NotFound/Forbidden.

    ``redis_tools`` is a service's ``shared.redis.RedisTools``;
    ``employees_rpc`` a ``ServiceRpc("employees")``."""
    membership = cached_membership(redis_tools.client, org_id, user_id)
    if membership is None:
        membership = employees_rpc.get_membership(org_id, user_id)
    if not membership or membership.get("status") != "active":
        raise NotFound("Organization not found.")
    if action is not None and not role_allows(membership["role"], action):
        raise Forbidden(f"Your role ({membership['role']}) may not do {action}.")
    return membership
