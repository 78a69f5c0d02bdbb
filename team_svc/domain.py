"""Rules of the teams service, with no I/O."""
from __future__ import annotations

from shared.errors import Forbidden, ValidationFailed
from shared.permissions import TEAM_ACTIONS, role_allows, team_role_allows

# what can be granted to one member of a team (PUT .../permissions)
GRANTABLE = frozenset().union(*TEAM_ACTIONS.values())


def team_role_of(membership: dict, team: dict) -> str | None:
    """The caller's role in ``team``: the team document is the truth for
    leadership; the membership's ``teams`` map may lag behind it."""
    if team.get("leader_id") and team["leader_id"] == membership.get("employee_id"):
        return "leader"
    for member in team.get("members", []):
        if member["employee_id"] == membership.get("employee_id"):
            return member["role"]
    return (membership.get("teams") or {}).get(team["_id"])


def may_manage_members(membership: dict, team: dict) -> bool:
    """Managers and above, a team's leader, or a member granted the right."""
    if role_allows(membership["role"], "team.manage_members"):
        return True
    if team_role_allows(team_role_of(membership, team), "team.manage_members"):
        return True
    granted = (team.get("permissions") or {}).get(membership.get("employee_id"), [])
    return "team.manage_members" in granted


def require_manage_members(membership: dict, team: dict, role: str = "member") -> None:
    if not may_manage_members(membership, team):
        raise Forbidden("Only a manager or this team's leader may change its members.")
    # the leader seat is what team.update governs (PUT .../leader): a leader, or a
    # member granted team.manage_members, cannot hand it out (nor take it over)
    if role == "leader" and not role_allows(membership["role"], "team.update"):
        raise Forbidden("Only a manager or above may make someone a team's leader.")


def permission_changes(old: dict[str, list[str]], new: dict[str, list[str]],
                       member_ids: set[str]) -> tuple[dict, list[tuple[str, str]], list[tuple[str, str]]]:
    """Validate a full replacement of a team's per-member permissions.

    Returns ``(normalised, granted, revoked)``; ``granted``/``revoked`` are
    ``(employee_id, permission)`` pairs."""
    errors: dict[str, list[str]] = {}
    normalised: dict[str, list[str]] = {}
    for employee_id, perms in new.items():
        if employee_id not in member_ids:
            errors[employee_id] = ["Not a member of this team."]
            continue
        unknown = sorted(set(perms) - GRANTABLE)
        if unknown:
            errors[employee_id] = [f"Unknown permission(s): {', '.join(unknown)}; "
                                   f"grantable: {', '.join(sorted(GRANTABLE))}."]
            continue
        if perms:
            normalised[employee_id] = sorted(set(perms))
    if errors:
        raise ValidationFailed("Some permissions cannot be granted.", errors={"permissions": errors})
    granted = [(e, p) for e, perms in normalised.items() for p in perms
               if p not in old.get(e, [])]
    revoked = [(e, p) for e, perms in old.items() for p in perms
               if p not in normalised.get(e, [])]
    return normalised, granted, revoked


def leader_after_removal(team: dict, employee_id: str) -> str | None:
    """A team loses its leader when the leader leaves; nobody is promoted
    silently (an admin picks the next one)."""
    leader = team.get("leader_id")
    return None if leader == employee_id else leader
