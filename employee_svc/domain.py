"""Rules of the employees service, with no I/O."""
from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

from shared.errors import Conflict, Forbidden, NotFound
from shared.permissions import (
    RANK,
    check_removal,
    check_role_change,
    permissions_for,
    role_allows,
)

INVITATION_TTL = timedelta(days=7)
# invitation emails (new and re-sent), "count/seconds"; config INVITATION_RATE_LIMITS
INVITE_RATE = {"address": "3/3600", "org": "100/3600"}
INVITE_RATE_REFUSED = {
    "address": "Too many invitations were sent to this address; try again later.",
    "org": "This organization sent too many invitations; try again later."}
_WORD = re.compile(r"[\w]+", re.UNICODE)


def new_id() -> str:
    return uuid.uuid4().hex




def keywords(name: str, email: str, job_title: str) -> list[str]:
    """Lower-case search terms (an indexed array: search is an anchored
    prefix on it, no text index): every word of the name and job title, the
    whole email and its local part."""
    email = (email or "").lower()
    words = set(_WORD.findall(f"{name or ''} {job_title or ''}".lower()))
    words.update({email, email.split("@")[0], *_WORD.findall(email)} - {""})
    return sorted(words)


def search_terms(q: str) -> list[str]:
    """The query's words, lower-cased; each must prefix some keyword."""
    return q.strip().lower().split()[:5]


def prefix_regex(term: str) -> str:
    return "^" + re.escape(term)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_invitation_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def membership(doc: dict) -> dict:
    """The membership dict of shared.tenancy, from an employee document."""
    return {"org_id": doc["org_id"], "user_id": doc["user_id"], "employee_id": doc["_id"],
            "role": doc["role"], "status": doc["status"],
            "permissions": permissions_for(doc["role"]), "teams": dict(doc.get("teams") or {})}


def check_can_add(actor_role: str, new_role: str) -> None:
    if RANK[new_role] > RANK[actor_role]:
        raise Forbidden(f"A {actor_role} cannot grant the {new_role} role.")


def check_update(actor: dict, target: dict, changes: dict, owner_count: int) -> None:
    """Raise unless ``actor`` (membership) may apply ``changes`` to ``target``."""
    if target["status"] == "removed":
        raise NotFound("Employee not found.")
    if "role" in changes and changes["role"] != target["role"]:
        check_role_change(actor["role"], target["role"], changes["role"], owner_count)
    other = {k for k in changes if k != "role"}
    if (other and actor["user_id"] != target["user_id"]) or "status" in changes:
        if not role_allows(actor["role"], "employee.update"):
            raise Forbidden("Only an admin can change other employees' details or status.")
        if target["role"] == "owner" and actor["role"] != "owner":
            raise Forbidden("Only an owner can change an owner.")
    if changes.get("status") == "inactive" and target["role"] == "owner" and owner_count <= 1:
        raise Conflict("The organization's last owner cannot be deactivated.")


def check_remove(actor: dict, target: dict, owner_count: int) -> None:
    if target["status"] == "removed":
        raise NotFound("Employee not found.")
    check_removal(actor["role"], target["role"], owner_count)


def may_join(user: dict | None, email: str) -> bool:
    """A membership for ``email`` goes only to an account that holds that address
    verified: registering someone else's address first gains nothing."""
    return bool(user and user.get("email_verified")
                and user.get("email", "").lower() == email.lower())


def check_acceptance(invitation: dict | None, user: dict | None, at: datetime) -> dict:
    """The invitation a user may accept, or why not."""
    if invitation is None or invitation["status"] != "pending" or invitation["expires_at"] < at:
        raise NotFound("Invitation not found or expired.")
    if not user or user.get("email", "").lower() != invitation["email"]:
        raise Forbidden("This invitation was sent to another email address.")
    if not user.get("email_verified"):
        raise Forbidden("Verify your email address before accepting the invitation.")
    return invitation


def task_state(status: str | None) -> str:
    return "completed" if status == "done" else "open"


class TaskChange(NamedTuple):
    """What a task event sets on the task's holder document, and the employees it names."""
    org_id: str
    task_id: str
    fields: dict
    named: frozenset


def task_change(event: dict) -> TaskChange:
    """A ``task.assigned/.reassigned/.completed/.status.changed/.deleted`` envelope as
    the holder/state it records for its task."""
    data, kind = event["data"], event["event_type"]
    if kind == "task.deleted":
        fields: dict = {"state": "deleted"}
    elif kind == "task.reassigned":
        fields = {"employee_id": data.get("new_assignee_id")}
    else:
        fields = {"employee_id": data.get("assignee_id")}
        if kind == "task.completed":
            fields["state"] = "completed"
        elif kind == "task.status.changed":
            fields["state"] = task_state(data.get("new_status"))
    named = {data.get(k) for k in ("assignee_id", "old_assignee_id", "new_assignee_id")}
    return TaskChange(data["org_id"], data["task_id"], fields, frozenset(named - {None}))


def changes_of(doc: dict, updates: dict) -> dict:
    return {k: v for k, v in updates.items() if doc.get(k) != v}
