"""Rules of the notifications service, with no I/O: which events notify whom,
through which channels, and how a message is rendered."""
from __future__ import annotations

import hashlib
from collections.abc import Sized
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import lru_cache
from time import thread_time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment, SecurityError

CHANNELS = ("email", "push", "in_app")
DIGEST_FREQUENCIES = ("off", "hourly", "daily", "weekly")
DIGEST_SECONDS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400}  # the default windows

# kind -> (event type, critical). Critical (security) messages ignore
# preferences, quiet hours and digests.
KINDS: dict[str, tuple[str, bool]] = {
    "welcome": ("user.registered", True),
    "verify_email": ("user.email.verification.requested", True),
    "password_reset": ("user.password.reset", True),
    "account_unlock": ("user.unlock.requested", True),
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
    "task_status": ("task.status.changed", False),  # the task's watchers (task_svc/domain.py)
    "task_comment": ("task.comment.added", False),
    "task_mention": ("task.comment.added", False),  # the comment's @mentioned members
    "webhook_disabled": ("webhook.endpoint.disabled", False),
}
KIND_OF_EVENT = {event: kind for kind, (event, _) in reversed(KINDS.items())}  # first kind wins
# kinds that are never held for a digest (time-sensitive)
URGENT = {"task_overdue"}
# kinds whose link is a secret (a reset, verification or invitation token): it
# goes by email only, sealed in the event (shared.sealed) and opened only while
# the email is rendered; the in-app item and the push carry a notice instead
SECRET_LINK_KINDS = {"welcome", "verify_email", "password_reset", "account_unlock",
                     "employee_invited"}
# event fields never copied into a notification, a delivery or a stream; the
# unsealed names are those of events published before links were sealed
SECRET_FIELDS = {"sealed_link", "token", "reset_token", "verification_token", "reset_url",
                 "verify_url", "accept_url"}


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
    sealed_link: str | None = None  # SECRET_LINK_KINDS: the emailed link, sealed


def notification_id(event_id: str, who: str) -> str:
    return hashlib.sha256(f"{event_id}|{who}".encode()).hexdigest()[:24]


def group_id(group: str, who: str) -> str:
    return hashlib.sha256(f"group|{group}|{who}".encode()).hexdigest()[:24]


def plans_for(event: dict, public_url: str = "") -> list[Plan]:
    """Who hears about ``event`` and with what context."""
    kind = KIND_OF_EVENT.get(event.get("event_type") or "")
    if kind is None:
        return []
    d = event.get("data") or {}
    ctx = {k: v for k, v in d.items() if k not in SECRET_FIELDS}
    app = public_url.rstrip("/")

    def one(user_id, email=None, name=None, link=None, group=None):
        sealed = d.get("sealed_link") if kind in SECRET_LINK_KINDS else None
        return [Plan(kind, Recipient(user_id, email, name), ctx, link, group, sealed)]

    if kind in ("welcome", "verify_email", "password_reset", "account_unlock"):
        return one(d.get("user_id"), d.get("email"), d.get("name"))
    if kind in ("password_changed", "email_verified"):
        return one(d.get("user_id"), d.get("email"), d.get("name"))
    if kind == "org_created":
        return one(d.get("owner_user_id"), d.get("owner_email"), d.get("owner_name"),
                   f"{app}/orgs/{d.get('org_id')}")
    if kind in ("employee_added", "employee_removed"):
        return one(d.get("user_id"), d.get("email"), d.get("name"))
    if kind == "employee_invited":
        return one(None, d.get("email"))
    if kind == "team_member_added":
        return one(d.get("user_id"))
    if kind == "webhook_disabled":  # the admin who registered the endpoint
        return one(d.get("created_by_user_id"),
                   link=f"{app}/orgs/{d.get('org_id')}/webhooks/{d.get('webhook_id')}")
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
    if kind == "task_status":  # watchers, not who made the change; done: not the creator,
        actor = d.get("changed_by_user_id")  # who hears of it as task_completed
        skip = {actor, d.get("creator_user_id") if d.get("new_status") == "done" else None}
        return [Plan(kind, Recipient(u), ctx, task_link)
                for u in sorted(set(d.get("watcher_user_ids") or [])) if u and u not in skip]
    if kind == "task_comment":  # each person once: a mention, else a comment they follow
        author = d.get("author_user_id")
        mentioned = [("task_mention", u) for u in d.get("mentioned_user_ids") or []]
        # the task's watchers (who unwatched it is not among them); the assignee for an
        # event of a producer that sent no watchers
        followers = sorted(set(d["watcher_user_ids"])) if d.get("watcher_user_ids") is not None \
            else [d.get("assignee_user_id")]
        watching = [("task_comment", u) for u in followers]
        seen, out = set(), []
        for plan_kind, user in mentioned + watching:
            if user and user != author and user not in seen:
                seen.add(user)
                out.append(Plan(plan_kind, Recipient(user), ctx, task_link))
        return out
    return []


def bulk_plans(event: dict, public_url: str = "") -> list[Plan]:
    """``task.bulk.assigned`` (one chunk of a bulk job): each of its tasks is
    heard about as the ``task.assigned`` it stands for."""
    d = event.get("data") or {}
    common = {k: v for k, v in d.items() if k not in ("tasks", "chunk")}
    return [plan for task in d.get("tasks") or []
            for plan in plans_for({**event, "event_type": "task.assigned",
                                   "data": {**common, **task}}, public_url)]


# Preferences ---------------------------------------------------------------

def default_preferences() -> dict:
    # digest None: not chosen, the org's default applies (digest_of)
    return {"channels": {}, "quiet_hours": None, "digest": None, "timezone": "UTC"}


def digest_of(prefs: dict, org_defaults: dict | None) -> str:
    """The user's digest frequency; else the org's default (organizations'
    ``notification_defaults.digest``: off / daily / weekly); else off."""
    return prefs.get("digest") or (org_defaults or {}).get("digest") or "off"


def channel_on(kind: str, channel: str, prefs: dict, org_defaults: dict | None) -> bool:
    """The user's choice for this kind; else the org's default for the channel
    (organizations' ``settings.notification_defaults``: ``{email, in_app, push, digest}``,
    one switch per channel for every kind); else on."""
    user = (prefs.get("channels") or {}).get(kind, {})
    if channel in user:
        return bool(user[channel])
    org = org_defaults or {}
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
        if digest_of(prefs, org_defaults) != "off" and kind not in URGENT:
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
# Org admins write templates, so a template must never stall the service nor
# let one org slow the others: every render has a time budget and an output
# cap, loops are few and short, and what could build a huge value in one step
# (repetition, %-formatting, padding filters and str methods) is refused. The
# budget is CPU time of the rendering thread (a render never yields), not the
# wall clock: on a busy machine a plain template waited past a wall-clock budget
# and its email failed for good.
RENDER_BUDGET_SECONDS = 0.1
MAX_OUTPUT_CHARS = 100_000
MAX_RANGE = 100
MAX_LOOP_DEPTH = 2
SAFE_FILTERS = ("abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape",
                "first", "float", "forceescape", "groupby", "int", "items", "join", "last",
                "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
                "reverse", "round", "safe", "select", "selectattr", "sort", "string",
                "striptags", "sum", "title", "tojson", "trim", "truncate", "unique", "upper",
                "urlencode", "wordcount")
SAFE_METHODS = {"upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip",
                "startswith", "endswith", "get", "items", "keys", "values"}
REFUSED_NODES = (nodes.Macro, nodes.CallBlock, nodes.Import, nodes.FromImport, nodes.Include,
                 nodes.Extends)

_deadline: ContextVar[float] = ContextVar("template_deadline", default=float("inf"))


def _within_budget() -> None:
    if thread_time() > _deadline.get():
        raise SecurityError(f"the template takes over {RENDER_BUDGET_SECONDS}s to render")


def _budgeted(iterable):
    """Every loop iterates through this (added by TemplateSandbox._parse)."""
    for item in iterable:
        _within_budget()
        yield item


def _range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items")
    return rng


def _check_tree(node, depth: int = 0) -> None:
    if isinstance(node, REFUSED_NODES):
        raise TemplateSyntaxError(f"{type(node).__name__.lower()} is not allowed in templates",
                                  node.lineno)
    if isinstance(node, nodes.For):
        depth += 1
        if depth > MAX_LOOP_DEPTH:
            raise TemplateSyntaxError(f"loops may nest at most {MAX_LOOP_DEPTH} deep",
                                      node.lineno)
        if node.recursive:
            raise TemplateSyntaxError("recursive loops are not allowed", node.lineno)
        node.iter = nodes.Filter(node.iter, "_budgeted", [], [], None, None,
                                 lineno=node.lineno)
    for child in node.iter_child_nodes():
        _check_tree(child, depth)


class TemplateSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **kwargs):
        super().__init__(undefined=StrictUndefined, **kwargs)
        self.filters = {name: self.filters[name] for name in SAFE_FILTERS}
        self.filters["_budgeted"] = _budgeted
        self.globals = {"range": _range, "dict": dict}

    def _parse(self, source, name, filename):
        tree = super()._parse(source, name, filename)
        _check_tree(tree)
        return tree

    def call_binop(self, context, operator, left, right):
        _within_budget()
        if operator == "**":
            raise SecurityError("** is not allowed in templates")
        if operator == "*" and (isinstance(left, Sized) or isinstance(right, Sized)):
            raise SecurityError("repeating text or lists is not allowed in templates")
        if operator == "%" and isinstance(left, str):
            raise SecurityError("%-formatting is not allowed in templates")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (jinja's signature)
        _within_budget()
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(method, "__self__", None)
        if isinstance(owner, (str, bytes, list, tuple, dict)) and \
                getattr(method, "__name__", "") not in SAFE_METHODS:
            raise SecurityError(f"{getattr(__obj, '__name__', 'this')}() is not allowed "
                                "in templates")
        return super().call(__context, __obj, *args, **kwargs)


_env = TemplateSandbox(autoescape=False)
_html_env = TemplateSandbox(autoescape=True)

TEMPLATE_PARTS = ("subject", "text", "html")


class TemplateInvalid(ValueError):
    def __init__(self, part: str, message: str, line: int | None):
        self.part, self.message, self.line = part, message, line
        super().__init__(f"{part}: line {line}: {message}")


@lru_cache(maxsize=512)
def _compiled(part: str, source: str):
    return (_html_env if part == "html" else _env).from_string(source)


def render_part(part: str, source: str, context: dict) -> str:
    budget = None
    try:
        compiled = _compiled(part, source)  # parsing is bounded by the source's size
        budget = _deadline.set(thread_time() + RENDER_BUDGET_SECONDS)
        out, size = [], 0
        for chunk in compiled.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise SecurityError(f"the template renders over {MAX_OUTPUT_CHARS} characters")
            _within_budget()
            out.append(chunk)
        return "".join(out)
    except TemplateError as exc:
        raise TemplateInvalid(part, exc.message or str(exc), getattr(exc, "lineno", None)) from None
    except RecursionError:
        raise TemplateInvalid(part, "the template is nested too deeply", None) from None
    finally:
        if budget is not None:
            _deadline.reset(budget)


def render(template: dict, context: dict) -> dict:
    """Each part of ``template``; the subject on one line (it is a mail header)."""
    return {part: " ".join(render_part(part, template[part], context).split())
            if part == "subject" else render_part(part, template[part], context)
            for part in TEMPLATE_PARTS if template.get(part)}


def sample_context(kind: str) -> dict:
    """Values every template of ``kind`` may use, for validation on save (lists
    of a realistic length, so the render budget is tried on save)."""
    tasks = [{"task_id": f"t{i}", "title": f"Task {i}"} for i in range(50)]
    sample = {"user_id": "u1", "email": "someone@example.com", "name": "Sam", "org_id": "o1",
              "org_name": "Acme", "title": "Write the report", "task_id": "t1",
              "team_name": "Team", "role": "member",
              "preview": "Looks good",
              "old_status": "todo", "new_status": "in_progress",
              "due_at": "2026-01-01T00:00:00Z", "priority": "normal",
              "reason": "", "job_id": None, "count": 1, "tasks": tasks, "link": "https://x/",
              "recipient_name": "Sam", "items": [{"subject": t["title"], "link": "https://x/"}
                                                 for t in tasks], "owner_name": "Sam",
              "url": "https://hooks.example.com/x", "webhook_id": "w1"}
    return {**sample, "kind": kind}


def validate_template(kind: str, template: dict) -> None:
    render(template, sample_context(kind))
