"""Who may do what: the one table every service uses (README has it too).

Org roles rank ``owner > admin > manager > member``; a role may do what its
``ORG_ACTIONS`` entry names plus everything of the roles below it. Team roles
(``leader``, ``member``) add ``TEAM_ACTIONS`` within their own team.
"""
from __future__ import annotations

from shared.errors import Conflict, Forbidden

ORG_ROLES = ("owner", "admin", "manager", "member")  # highest first
RANK = {role: len(ORG_ROLES) - i for i, role in enumerate(ORG_ROLES)}

# each action once, at the lowest role that may do it
_LOWEST_ROLE = {
    # organization
    "org.read": "member",
    "org.update": "admin",
    "org.settings.update": "admin",
    "org.delete": "owner",
    "org.transfer": "owner",
    # employees and invitations
    "employee.read": "member",
    "employee.add": "manager",
    "employee.update": "admin",
    "employee.update_role": "manager",
    "employee.remove": "admin",
    "invitation.manage": "manager",
    # teams
    "team.read": "member",
    "team.create": "manager",
    "team.update": "manager",
    "team.delete": "admin",
    "team.manage_members": "manager",
    "team.manage_permissions": "admin",
    # tasks
    "task.read": "member",
    "task.create": "member",
    "task.update_own": "member",
    "task.comment": "member",
    "task.assign_any": "manager",
    "task.update_any": "manager",
    "task.delete": "manager",
    "task.bulk_create": "manager",
    "task.stats": "member",
    # notifications
    "notification_templates.manage": "admin",
    # webhooks
    "webhook.manage": "admin",
    # audit
    "audit.read": "admin",
}
ACTIONS = tuple(_LOWEST_ROLE)

ORG_ACTIONS: dict[str, frozenset[str]] = {
    role: frozenset(a for a, lowest in _LOWEST_ROLE.items() if RANK[role] >= RANK[lowest])
    for role in ORG_ROLES
}

# what a team role adds, for that team's members and tasks only
TEAM_ACTIONS: dict[str, frozenset[str]] = {
    "leader": frozenset({"task.assign_team", "task.update_team", "team.manage_members"}),
    "member": frozenset(),
}


def role_allows(role: str | None, action: str) -> bool:
    if action not in _LOWEST_ROLE:
        raise KeyError(f"unknown action {action!r}")
    return role in ORG_ACTIONS and action in ORG_ACTIONS[role]


def team_role_allows(team_role: str | None, action: str) -> bool:
    return action in TEAM_ACTIONS.get(team_role or "", frozenset())


def permissions_for(role: str) -> list[str]:
    return sorted(ORG_ACTIONS.get(role, ()))


def check_role_change(actor_role: str, target_role: str, new_role: str,
                      owner_count: int) -> None:
    """Raise unless ``actor_role`` may move an employee from ``target_role``
    to ``new_role``: only an owner touches an owner; nobody grants above
    their own role; the last owner stays an owner."""
    if not role_allows(actor_role, "employee.update_role"):
        raise Forbidden("Your role may not change roles.")
    if target_role == "owner" and actor_role != "owner":
        raise Forbidden("Only an owner can change an owner's role.")
    if RANK[new_role] > RANK[actor_role]:
        raise Forbidden(f"A {actor_role} cannot grant the {new_role} role.")
    if RANK[target_role] > RANK[actor_role]:
        raise Forbidden(f"A {actor_role} cannot change the role of a {target_role}.")
    if target_role == "owner" and new_role != "owner" and owner_count <= 1:
        raise Conflict("The organization's last owner cannot be demoted; "
                       "transfer ownership first.")


def check_removal(actor_role: str, target_role: str, owner_count: int) -> None:
    """Raise unless ``actor_role`` may remove an employee holding ``target_role``."""
    if not role_allows(actor_role, "employee.remove"):
        raise Forbidden("Your role may not remove employees.")
    if target_role == "owner" and actor_role != "owner":
        raise Forbidden("Only an owner can remove an owner.")
    if target_role == "owner" and owner_count <= 1:
        raise Conflict("The organization's last owner cannot be removed.")


def markdown_table() -> str:
    """The table as Markdown, for the README (kept in step by a test)."""
    lines = ["| action | " + " | ".join(ORG_ROLES) + " |",
             "|---|" + "---|" * len(ORG_ROLES)]
    for action in ACTIONS:
        marks = ["yes" if action in ORG_ACTIONS[r] else "" for r in ORG_ROLES]
        lines.append(f"| `{action}` | " + " | ".join(marks) + " |")
    return "\n".join(lines)
