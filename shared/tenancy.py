"""Tenancy, written once: is this user an active employee of this org, and
may they do this?

The membership of a user in an org is owned by the employees service
(``employees.get_membership(org_id, user_id)``), which caches it in Redis
with the one cache (``shared.redis.Cache``) at the key its contract names
(``employee_svc.contract.membership_key``) and invalidates it whenever the
membership changes. Callers read that entry directly through their own
``Cache`` (no RPC on the warm path; a hit or miss counted and logged like any
other) and ask employees on a miss. A non-member gets NotFound (404: nothing
in the org exists for them); a member without the permission gets Forbidden (403).

A membership is a dict::

    {"org_id", "user_id", "employee_id", "role", "status", "permissions": [...],
     "teams": {team_id: "leader" | "member"}}
"""
from __future__ import annotations

from employee_svc.contract import membership_key
from shared.errors import Forbidden, NotFound
from shared.permissions import role_allows


def cached_membership(redis_tools, org_id: str, user_id: str) -> dict | None:
    """The cached membership, or None (not cached, or Redis down: fail open to its owner)."""
    return redis_tools.cache.get(membership_key(org_id, user_id))


def is_active(membership: dict | None) -> bool:
    return membership is not None and membership.get("status") == "active"


def require_member(redis_tools, employees_rpc, org_id: str, user_id: str,
                   action: str | None = None, *, cached: dict | None = None) -> dict:
    """The caller's active membership of ``org_id``, or NotFound/Forbidden.

    ``redis_tools`` is a service's ``shared.redis.RedisTools``;
    ``employees_rpc`` a ``ServiceRpc("employees")``; ``cached``: the membership
    the caller already read from its cache key (the gateway reads it with its
    other per-request checks), so it is not read again."""
    membership = cached or cached_membership(redis_tools, org_id, user_id)
    if membership is None:
        membership = employees_rpc.get_membership(org_id, user_id)
    if not is_active(membership):
        raise NotFound("Organization not found.")
    if action is not None and not role_allows(membership["role"], action):
        raise Forbidden(f"Your role ({membership['role']}) may not do {action}.")
    return membership
