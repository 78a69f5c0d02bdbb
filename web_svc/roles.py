"""What the signed-in person may do in an organization, so a page can leave out
what the API would refuse. The API still decides (a form posted anyway gets
its 403); this reads the caller's employee record through the API and the one
permission table every service uses (shared.permissions)."""
from __future__ import annotations

from flask import g

from shared.permissions import role_allows, team_role_allows
from web_svc import auth


def me_in(org_id: str) -> dict:
    """The caller's employee record in ``org_id`` (once per request): role, teams."""
    cache = g.setdefault("me_in", {})
    if org_id not in cache:
        user = auth.current_user() or {}
        page = auth.api("GET", f"/orgs/{org_id}/employees", params={"q": user.get("email", "")})
        cache[org_id] = next((e for e in page["items"] if e.get("user_id") == user.get("user_id")),
                             {"role": None, "teams": {}})
    return cache[org_id]


def can(org_id: str, action: str) -> bool:
    return role_allows(me_in(org_id).get("role"), action)


def can_manage_members(org_id: str, team: dict, grants: dict | None = None) -> bool:
    """Managers and up, the team's leader, or a member granted the right."""
    me = me_in(org_id)
    if role_allows(me.get("role"), "team.manage_members"):
        return True
    employee_id = me.get("employee_id")
    team_role = "leader" if team.get("leader_id") and team.get("leader_id") == employee_id else \
        next((m["role"] for m in team.get("members", []) if m["employee_id"] == employee_id), None)
    return team_role_allows(team_role, "team.manage_members") or \
        "team.manage_members" in (grants or {}).get(employee_id, [])
