"""Rules of the notifications service, with no I/O: which events notify whom,
through which channels, and how a message is rendered."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

CHANNELS = ("email", "push", "in_app")
DIGEST_FREQUENCIES = ("off", "hourly", "daily")

# kind -> (event type, critical). Critical (security) messages ignore
# preferences, quiet hours and digests.
KINDS: dict[str, tuple[str, bool]] = {
    "welcome": ("user.registered", True),
    "password_reset": ("user.password.reset", True),
    "password_changed": ("user.password.changed", True),
    "email_verified": ("user.email.verified", False),
    "org_created": ("organization.created", False),
    "employee_added": ("employee.added", False),
    "employee_invited": ("employee.invited", True),
    "employee_removed": ("employee.removed", False),
    "team_member_added": ("team.member.added", False),
    "task_assigned": ("task.assigned", False),
    "task_reassigned": ("task.reassigned", False),
    "task_completed": ("task.completed", False),
    "task_overdue": ("task.overdue", False),
    "task_comment": ("task.comment.added", False),
}
KIND_OF_EVENT = {event: kind for kind, (event, _) in KINDS.items()}
# kinds that are never held for a digest (time-sensitive)
URGENT = {"task_overdue"}


def is_critical(kind: str) -> bool:
    return KINDS[kind][1]


def preferences_link(public_url: str, kind: str) -> str | None:
    """The "choose which emails you get" link of every email that is not a
    security message (the web console's settings page, this kind in focus)."""
    if kind in KINDS and is_critical(kind):
        return None
    query = f"?kind={kind}" if kind in KINDS else ""
    return f"{public_url.rstrip('/')}/settings/notifications{query}"


@dataclass
class Recipient:
    user_id: str | None          # None: an address only (an invitation)
    email: str | None = None
    name: str | None = None


@dataclass
class Plan:
    """One notification of one event for one person."""
    kind: str
    recipient: Recipient
    context: dict = field(default_factory=dict)
    link: str | None = None
    group: str | None = None     # bulk job: one message per (job, person)


def notification_id(event_id: str, who: str) -> str:
    return hashlib.sha256(f"{event_id}|{who}".encode()).hexdigest()[:24]


def group_id(group: str, who: str) -> str:
    return hashlib.sha256(f"group|{group}|{who}".encode()).hexdigest()[:24]


def plans_for(event: dict, public_url: str = "") -> list[Plan]:
    """Who hears about ``event`` and with what context."""
    kind = KIND_OF_EVENT.get(event.get("event_type"))
    if kind is None:
        return []
    d = event.get("data") or {}
    ctx = dict(d)
    app = public_url.rstrip("/")

    def one(user_id, email=None, name=None, link=None, group=None):
        return [Plan(kind, Recipient(user_id, email, name), ctx, link, group)]

    if kind == "welcome":
        return one(d.get("user_id"), d.get("email"), d.get("name"), d.get("verify_url"))
    if kind == "password_reset":
        return one(d.get("user_id"), d.get("email"), d.get("name"), d.get("reset_url"))
    if kind in ("password_changed", "email_verified"):
        return one(d.get("user_id"), d.get("email"), d.get("name"))
    if kind == "org_created":
        return one(d.get("owner_user_id"), d.get("owner_email"), d.get("owner_name"),
                   f"{app}/orgs/{d.get('org_id')}")
    if kind in ("employee_added", "employee_removed"):
        return one(d.get("user_id"), d.get("email"), d.get("name"))
    if kind == "employee_invited":
        return one(None, d.get("email"), None, d.get("accept_url"))
    if kind == "team_member_added":
        return one(d.get("user_id"))
    task_link = f"{app}/orgs/{d.get('org_id')}/tasks/{d.get('task_id')}"
    if kind == "task_assigned":
        if not d.get("assignee_user_id"):
            return []
        group = f"{d['job_id']}" if d.get("job_id") else None
        return one(d["assignee_user_id"], link=task_link, group=group)
    if kind == "task_reassigned":
        return one(d["new_assignee_user_id"], link=task_link) if d.get("new_assignee_user_id") else []
    if kind == "task_completed":
        creator = d.get("creator_user_id")
        if not creator or creator == d.get("completed_by_user_id"):
            return []
        return one(creator, link=task_link)
    if kind == "task_overdue":
        return one(d.get("assignee_user_id"), link=task_link) if d.get("assignee_user_id") else []
    if kind == "task_comment":
        author = d.get("author_user_id")
        users = [d.get("assignee_user_id"), *(d.get("watcher_user_ids") or [])]
        seen, out = set(), []
        for user in users:
            if user and user != author and user not in seen:
                seen.add(user)
                out += one(user, link=task_link)
        return out
    return []


# Preferences ---------------------------------------------------------------

def default_preferences() -> dict:
    return {"channels": {}, "quiet_hours": None, "digest": "off", "timezone": "UTC"}


def channel_on(kind: str, channel: str, prefs: dict, org_defaults: dict | None) -> bool:
    user = (prefs.get("channels") or {}).get(kind, {})
    if channel in user:
        return bool(user[channel])
    org = ((org_defaults or {}).get(kind) or {})
    if channel in org:
        return bool(org[channel])
    return True


def in_quiet_hours(prefs: dict, now: datetime) -> bool:
    quiet = prefs.get("quiet_hours")
    if not quiet:
        return False
    try:
        tz = ZoneInfo(prefs.get("timezone") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local = now.astimezone(tz).time()
    start, end = time.fromisoformat(quiet["start"]), time.fromisoformat(quiet["end"])
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def quiet_hours_end(prefs: dict, now: datetime) -> datetime:
    """The next moment quiet hours end (UTC aware)."""
    tz = ZoneInfo(prefs.get("timezone") or "UTC")
    local = now.astimezone(tz)
    end = time.fromisoformat(prefs["quiet_hours"]["end"])
    candidate = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate += timedelta(days=1)
    return candidate.astimezone(ZoneInfo("UTC"))


@dataclass
class Decision:
    in_app: bool
    email: str | None    # None (no email) | "now" | "digest" | "hold"
    push: bool
    not_before: datetime | None = None


def decide(kind: str, prefs: dict, org_defaults: dict | None, now: datetime,
           grouped: bool = False) -> Decision:
    if is_critical(kind):
        return Decision(in_app=True, email="now", push=True)
    in_app = channel_on(kind, "in_app", prefs, org_defaults)
    push = channel_on(kind, "push", prefs, org_defaults)
    email = None
    not_before = None
    if channel_on(kind, "email", prefs, org_defaults):
        if prefs.get("digest", "off") != "off" and kind not in URGENT:
            email = "digest"
        elif grouped:
            email = "hold"
        else:
            email = "now"
        if in_quiet_hours(prefs, now):
            not_before = quiet_hours_end(prefs, now)
            if email == "now":
                email = "hold"
    if push and in_quiet_hours(prefs, now):
        push = False
    return Decision(in_app=in_app, email=email, push=push, not_before=not_before)


# Templates ------------------------------------------------------------------

_env = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
_html_env = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)

TEMPLATE_PARTS = ("subject", "text", "html")


class TemplateInvalid(ValueError):
    def __init__(self, part: str, message: str, line: int | None):
        self.part, self.message, self.line = part, message, line
        super().__init__(f"{part}: line {line}: {message}")


@lru_cache(maxsize=512)
def _compiled(part: str, source: str):
    return (_html_env if part == "html" else _env).from_string(source)


def render_part(part: str, source: str, context: dict) -> str:
    try:
        return _compiled(part, source).render(**context)
    except TemplateError as exc:
        raise TemplateInvalid(part, exc.message or str(exc), getattr(exc, "lineno", None)) from None


def render(template: dict, context: dict) -> dict:
    return {part: render_part(part, template[part], context).strip() if part == "subject"
            else render_part(part, template[part], context)
            for part in TEMPLATE_PARTS if template.get(part)}


def sample_context(kind: str) -> dict:
    """Values every template of ``kind`` may use, for validation on save."""
    sample = {"user_id": "u1", "email": "someone@example.com", "name": "Sam", "org_id": "o1",
              "org_name": "Acme", "title": "Write the report", "task_id": "t1",
              "verify_url": "https://x/verify", "reset_url": "https://x/reset",
              "accept_url": "https://x/accept", "team_name": "Team", "role": "member",
              "preview": "Looks good", "due_at": "2026-01-01T00:00:00Z", "priority": "normal",
              "reason": "", "job_id": None, "count": 1, "tasks": [], "link": "https://x/",
              "recipient_name": "Sam", "items": [], "owner_name": "Sam"}
    return {**sample, "kind": kind}


def validate_template(kind: str, template: dict) -> None:
    render(template, sample_context(kind))
