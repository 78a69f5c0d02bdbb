"""What the employees service promises others outside RPC and events: the
cached membership of a user in an org, which every service (and the gateway's
one-call request checks) reads straight from Redis (shared.tenancy).

The entry is written by ``employees.get_membership`` through the service's
``shared.redis.Cache`` under the tag ``membership_tag``; a change invalidates
that tag (a new generation, the entry deleted), so a read that raced the
change cannot put the old membership back. Other services may only read it
(shared.access: ``employees:perm:*``)."""
from __future__ import annotations

MEMBERSHIP_TTL = 300
MEMBERSHIP_PATTERN = "employees:perm:*"


def membership_key(org_id: str, user_id: str) -> str:
    """The membership's JSON (``domain.membership``), or nothing when not cached."""
    return f"employees:perm:{org_id}:{user_id}"


def membership_tag(org_id: str, user_id: str) -> str:
    return f"member:{org_id}:{user_id}"
