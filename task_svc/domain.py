"""Rules of the tasks service, with no I/O: the status machine, who may do
what to a task, where an orphaned task goes, search keywords, list sorts,
attachments, subtasks, dependencies and watchers, who sees and changes a saved view,
the rows of a CSV import, estimates and time tracking."""
from __future__ import annotations

import base64
import binascii
import csv
import io
import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from shared import csvtext
from shared.errors import (
    Conflict,
    Forbidden,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.permissions import role_allows, team_role_allows

STATUSES = ("todo", "in_progress", "done")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "todo": ("in_progress",),
    "in_progress": ("todo", "done"),
    "done": ("in_progress",),
}
OPEN_STATUSES = ("todo", "in_progress")
PRIORITIES = ("low", "medium", "high", "urgent")
PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}
NO_DUE = datetime(9999, 12, 31, tzinfo=timezone.utc)  # sorts tasks without a due date last
MAX_BULK = 10_000
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


# --- status machine ----------------------------------------------------------
def check_transition(old: str, new: str) -> None:
    """Raise Conflict (409) naming the allowed moves unless ``old -> new`` is one."""
    allowed = TRANSITIONS.get(old, ())
    if new not in allowed:
        raise Conflict(f"A task cannot go from {old} to {new}.", allowed=list(allowed),
                       current=old)


# --- permissions ---------------------------------------------------------------
def team_actions(membership: dict, team: dict | None) -> set[str]:
    """What the caller's place in the task's team adds: the leader's actions
    (shared.permissions.TEAM_ACTIONS) and what was granted to them there."""
    if not team:
        return set()
    me = membership.get("employee_id")
    role = "leader" if team.get("leader_id") == me else \
        (membership.get("teams") or {}).get(team["team_id"])
    actions = {a for a in ("task.assign_team", "task.update_team") if team_role_allows(role, a)}
    return actions | set((team.get("permissions") or {}).get(me, []))


def can_assign(membership: dict, team: dict | None, assignee_id: str | None) -> bool:
    """Managers and up assign anyone; anyone may take a task themselves or
    leave it unassigned; a team leader (or a member granted task.assign_team)
    assigns their team's tasks to that team's members."""
    if role_allows(membership["role"], "task.assign_any"):
        return True
    if assignee_id is None or assignee_id == membership.get("employee_id"):
        return True
    return ("task.assign_team" in team_actions(membership, team)
            and assignee_id in (team or {}).get("member_ids", []))


def require_assign(membership: dict, team: dict | None, assignee_id: str | None) -> None:
    if not can_assign(membership, team, assignee_id):
        raise Forbidden("You may assign tasks only to yourself, or to members of a team you lead.")


def require_reassign(membership: dict, task: dict, team: dict | None, assignee_id: str | None) -> None:
    """Changing who does a task: the caller must be able to change the task
    (so nobody unassigns someone else's work) and to assign the new person."""
    require_update(membership, task, team)
    require_assign(membership, team, assignee_id)


def can_update(membership: dict, task: dict, team: dict | None) -> bool:
    """Managers and up; the assignee or the creator (own tasks); the team's leader."""
    if role_allows(membership["role"], "task.update_any"):
        return True
    own = membership.get("employee_id") in (task.get("assignee_id"), task.get("creator_id"))
    if own and role_allows(membership["role"], "task.update_own"):
        return True
    return "task.update_team" in team_actions(membership, team)


def require_update(membership: dict, task: dict, team: dict | None) -> None:
    if not can_update(membership, task, team):
        raise Forbidden("Only the assignee, the creator, the team's leader or a manager "
                        "may change this task.")


def require_delete(membership: dict, task: dict, team: dict | None) -> None:
    if role_allows(membership["role"], "task.delete"):
        return
    if "task.update_team" in team_actions(membership, team):
        return
    raise Forbidden("Only a manager or the team's leader may delete this task.")


# --- reassignment when people leave -----------------------------------------
def reassignment_target(team: dict | None, leaving_employee_id: str) -> tuple[str | None, str | None]:
    """Where an open task of someone leaving goes: to its team's leader when
    there is one other than the leaver, else nobody. ``(employee_id, user_id)``."""
    if team and team.get("leader_id") and team["leader_id"] != leaving_employee_id:
        return team["leader_id"], team.get("leader_user_id")
    return None, None


# --- history --------------------------------------------------------------------
TRACKED = ("title", "description", "assignee_id", "team_id", "priority", "status", "due_at",
           "labels", "deleted", "parent_id", "recurrence", "estimate_minutes")


def diff(old: dict, new: dict) -> list[tuple[str, object, object]]:
    """``(field, old, new)`` for each tracked field whose value changes."""
    return [(f, old.get(f), new[f]) for f in TRACKED if f in new and old.get(f) != new[f]]


def created(task: dict) -> dict:
    """What a new task starts with, for its first history entry (``field: "created"``):
    the tracked fields it was given (assignee, team, priority, due date, ...)."""
    return {f: task[f] for f in TRACKED if task.get(f) not in (None, "", [], False)}


# --- search -------------------------------------------------------------------
def keywords(*texts: str | None) -> list[str]:
    """Lower-cased words of title and description, indexed as an array
    (SecantusDB has no text index; this works on MongoDB too)."""
    words = {w.casefold()[:40] for t in texts if t for w in _WORD.findall(t)}
    return sorted(words)[:200]


def search_terms(q: str) -> list[str]:
    return [w.casefold()[:40] for w in _WORD.findall(q)][:8]


# --- lists -----------------------------------------------------------------------
SORTS = {  # sort name -> (field, direction)
    "created": ("created_at", -1),
    "-created": ("created_at", 1),
    "due": ("due_sort", 1),
    "-due": ("due_sort", -1),
    "priority": ("priority_rank", -1),
    "-priority": ("priority_rank", 1),
}


def week_start(now: datetime) -> datetime:
    day = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def completion_rate(done: int, total: int) -> float:
    return round(done / total, 4) if total else 0.0


# --- bulk ---------------------------------------------------------------------------
def unique_in_order(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def split_assignees(ids: list[str], found: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    """Active employees of the org get a task; everyone else is a reported failure."""
    valid, errors = [], []
    for employee_id in ids:
        employee = found.get(employee_id)
        if employee is None or employee.get("status") != "active":
            errors.append({"assignee_id": employee_id, "error": "not an active employee"})
        else:
            valid.append(employee)
    return valid, errors


def bulk_task_id(job_id: str, employee_id: str) -> str:
    """Deterministic: a redelivered chunk inserts the same ids and creates nothing new."""
    return f"{job_id}-{employee_id}"


def fold_stats(raw: dict) -> dict:
    """Counts by status, per team and per assignee, from (team, assignee, status) groups."""
    by_status = dict.fromkeys(STATUSES, 0)
    teams: dict = {}
    people: dict = {}
    for g in raw["groups"]:
        by_status[g["status"]] = by_status.get(g["status"], 0) + g["n"]
        for table, key in ((teams, g.get("team")), (people, g.get("assignee"))):
            row = table.setdefault(key, {"total": 0, "done": 0})
            row["total"] += g["n"]
            row["done"] += g["n"] if g["status"] == "done" else 0
    total = sum(by_status.values())

    def rows(table: dict, name: str) -> list[dict]:
        out = [{name: k, "total": v["total"], "done": v["done"],
                "completion_rate": completion_rate(v["done"], v["total"])}
               for k, v in table.items() if k is not None]
        return sorted(out, key=lambda r: (-r["total"], r[name]))[:100]

    return {"total": total, "by_status": by_status, "overdue": raw["overdue"],
            "completed_this_week": raw["completed_this_week"],
            "completion_rate": completion_rate(by_status["done"], total),
            "per_team": rows(teams, "team_id"), "per_assignee": rows(people, "assignee_id")}


# --- attachments --------------------------------------------------------------------
ATTACHMENT_MAX_BYTES = 5 * 1024 * 1024
# what may be uploaded (TASK_ATTACHMENT_TYPES): no HTML or SVG, which a browser would run
ATTACHMENT_TYPES = ("application/pdf", "application/zip", "application/json", "application/octet-stream",
                    "application/msword", "application/vnd.ms-excel",
                    "application/vnd.openxmlformats-officedocument.*", "application/vnd.oasis.opendocument.*",
                    "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain", "text/csv",
                    "text/markdown")


def allowed_types(setting: str | list | None) -> tuple[str, ...]:
    """``TASK_ATTACHMENT_TYPES``: a list or a comma-separated string; ``type/*`` and
    ``prefix.*`` patterns; empty means the built-in list."""
    if isinstance(setting, str):
        setting = [t.strip() for t in setting.split(",")]
    return tuple(t.lower() for t in setting or () if t) or ATTACHMENT_TYPES


def check_attachment_type(content_type: str, allowed: tuple[str, ...]) -> None:
    """415 unless the upload's type is one the policy allows."""
    kind = content_type.lower()
    if not any(kind == a or (a.endswith("*") and kind.startswith(a[:-1])) for a in allowed):
        raise UnsupportedMediaType(f"Files of type {content_type} cannot be attached.",
                                   allowed=list(allowed))


def content_disposition(filename: str) -> str:
    """``attachment`` with the uploaded name, RFC 6266/5987 encoded."""
    return f"attachment; filename*=UTF-8''{quote(filename, safe='')}"


def require_delete_attachment(membership: dict, task: dict, team: dict | None,
                              attachment: dict) -> None:
    """Who uploaded it, or whoever may change the task."""
    if attachment.get("uploaded_by_user_id") == membership.get("user_id"):
        return
    if not can_update(membership, task, team):
        raise Forbidden("Only who uploaded it, or who may change the task, may delete an attachment.")


def decode_attachment(data_b64: str, limit: int) -> bytes:
    """The file's bytes: 413 over ``limit`` (checked before decoding), 422 if not base64."""
    if len(data_b64) > (limit + 2) // 3 * 4 + 4:
        raise PayloadTooLarge(f"Attachments are limited to {limit} bytes.")
    try:
        blob = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed("Bad file data.", errors={"data_b64": ["Not base64."]}) from None
    if len(blob) > limit:
        raise PayloadTooLarge(f"Attachments are limited to {limit} bytes.")
    return blob


# --- subtasks, dependencies, watchers --------------------------------------------
# * A task may have a parent in its org: no cycles, and at most
#   ``TASK_SUBTASK_DEPTH`` levels of subtasks below a top-level task.
# * ``A blocks B`` is one edge (``B`` is ``blocked_by`` ``A``); the edges of an org
#   form no cycle, and a task cannot be done while a task blocking it is open.
# * Watchers: who hears of a task's changes; the creator, assignee and
#   commenters are added on their own.
#
# The graph is walked by the caller's ``expand`` function (a frontier of ids in,
# their neighbours out: one query per level), so these rules are unit-tested with
# a dict and run against the store with ``$in`` queries.
LINK_TYPES = ("blocks", "blocked_by")
SUBTASK_DEPTH = 3  # TASK_SUBTASK_DEPTH unless set
MAX_WALK = 10_000  # nodes a cycle or subtree walk visits before it gives up (a 409)

Expand = Callable[[list[str]], dict[str, list[str]]]


def edge(task_id: str, link_type: str, other_id: str) -> tuple[str, str]:
    """``(blocker, blocked)`` of a link as the task ``task_id`` names it."""
    if task_id == other_id:
        raise ValidationFailed("A task cannot block itself.",
                               errors={"task_id": ["Another task of this organization."]})
    return (task_id, other_id) if link_type == "blocks" else (other_id, task_id)


def edge_id(blocker: str, blocked: str) -> str:
    """One document per edge, whichever side named it: a repeat is the same edge."""
    return f"{blocker}>{blocked}"


def graph_path(start: str, goal: str, expand: Expand, limit: int = MAX_WALK) -> list[str] | None:
    """The ids from ``start`` to ``goal`` following ``expand`` (breadth first), or None."""
    came_from: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        if goal in came_from:
            break
        nxt: list[str] = []
        for node, neighbours in expand(frontier).items():
            for n in neighbours:
                if n not in came_from:
                    came_from[n] = node
                    nxt.append(n)
        if len(came_from) > limit:
            raise Conflict("The task graph is too large to check; remove some links first.")
        frontier = nxt
    if goal not in came_from:
        return None
    out: list[str] = []
    step: str | None = goal
    while step is not None:
        out.append(step)
        step = came_from[step]
    return out[::-1]


def check_new_edge(blocker: str, blocked: str, expand_blocks: Expand) -> None:
    """409 naming the cycle if ``blocker blocks blocked`` would close one: a path
    ``blocked -> ... -> blocker`` along existing ``blocks`` edges."""
    cycle = graph_path(blocked, blocker, expand_blocks)
    if cycle is not None:
        raise Conflict("That link would make a cycle of blocking tasks.",
                       cycle=[blocker, *cycle])


def tree_height(root: str, expand_children: Expand, limit: int = MAX_WALK) -> int:
    """Levels of subtasks below ``root`` (0: none)."""
    levels, frontier, seen = 0, [root], {root}
    while True:
        children = [c for kids in expand_children(frontier).values() for c in kids if c not in seen]
        if not children:
            return levels
        seen.update(children)
        if len(seen) > limit:
            raise Conflict("The subtask tree is too large to move.")
        levels, frontier = levels + 1, children


def check_parent(task_id: str, parent_id: str, ancestors: list[str], subtree_height: int,
                 max_depth: int) -> None:
    """Whether ``parent_id`` may become the parent of ``task_id``.

    ``ancestors``: the parent's ancestors, nearest first (its chain to the top).
    A task is its own parent, or the parent is below it: 422 / 409 (a cycle).
    The deepest subtask would end up more than ``max_depth`` levels down: 409."""
    if parent_id == task_id:
        raise ValidationFailed("A task cannot be its own parent.",
                               errors={"parent_id": ["Another task of this organization."]})
    if task_id in ancestors:
        chain = [parent_id, *ancestors[:ancestors.index(task_id) + 1]]
        raise Conflict("The parent is a subtask of this task: that would make a cycle.",
                       cycle=chain)
    depth = len(ancestors) + 1 + subtree_height
    if depth > max_depth:
        raise Conflict(f"Subtasks may go {max_depth} levels deep; this would make {depth}.",
                       max_depth=max_depth, depth=depth)


def open_blockers(blockers: Iterable[dict]) -> list[dict]:
    """The blockers that keep a task from being done: live ones not done."""
    return [b for b in blockers if not b.get("deleted") and b.get("status") != "done"]


def require_unblocked(new_status: str, blockers: list[dict]) -> None:
    """409 naming the open blockers when a blocked task would become done."""
    if new_status != "done":
        return
    still_open = open_blockers(blockers)
    if still_open:
        names = ", ".join(b["title"] for b in still_open[:5])
        raise Conflict(f"Blocked by open tasks: {names}.",
                       blocked_by=[{"task_id": b["_id"], "title": b["title"], "status": b["status"]}
                                   for b in still_open])


def subtask_progress(children: Iterable[dict]) -> dict:
    """``{total, done}`` of a parent's live subtasks."""
    live = [c for c in children if not c.get("deleted")]
    return {"total": len(live), "done": sum(1 for c in live if c.get("status") == "done")}


def initial_watchers(creator_user_id: str | None, assignee_user_id: str | None) -> list[str]:
    return sorted({u for u in (creator_user_id, assignee_user_id) if u})


def watchers_of(task: dict, commenters: Iterable[str] = ()) -> set[str]:
    """Who watches a task. Tasks stored before watchers existed have no set: their
    creator, assignee and commenters, as they were notified then."""
    if "watcher_user_ids" in task:
        return set(task["watcher_user_ids"] or [])
    return {u for u in (task.get("creator_user_id"), task.get("assignee_user_id"), *commenters) if u}


# --- saved views ----------------------------------------------------------------------
VISIBILITIES = ("private", "team", "org")


def can_see_view(view: dict, user_id: str, membership: dict) -> bool:
    """Its owner sees a view; an org view every member; a team view that team's members."""
    if view.get("owner_user_id") == user_id or view.get("visibility") == "org":
        return True
    return view.get("visibility") == "team" and view.get("team_id") in (membership.get("teams") or {})


def can_change_view(view: dict, user_id: str, membership: dict) -> bool:
    """Its owner changes or deletes a view; managers and up also a shared one."""
    if view.get("owner_user_id") == user_id:
        return True
    return view.get("visibility") != "private" and role_allows(membership["role"], "task.update_any")


def require_view_share(membership: dict, visibility: str, team_id: str | None) -> None:
    """Sharing with a team: a member of it, or a manager and up (any team)."""
    if visibility == "team" and team_id not in (membership.get("teams") or {}) \
            and not role_allows(membership["role"], "task.assign_any"):
        raise Forbidden("You may share a view only with a team you are in.")


def applied_view_args(view_filter: dict, explicit: dict) -> dict:
    """The list arguments of a request naming a view: the view's filter, with each
    parameter the request gives explicitly in place of the view's (``limit`` and
    ``cursor`` always the request's)."""
    return {**view_filter, **{k: v for k, v in explicit.items() if k != "view"}}


def member_team_ids(membership: dict) -> list[str]:
    return sorted(membership.get("teams") or {})


# --- CSV import -----------------------------------------------------------------------
# A row has the columns of IMPORT_COLUMNS (title required, the others optional, in any
# order; other columns, such as an export's task_id or status, are ignored), so an
# export imports again.
IMPORT_COLUMNS = ("title", "description", "priority", "due_at", "labels", "team_id", "assignee_id")
IMPORT_MAX_BYTES = 1024 * 1024
MAX_ROW_ERRORS = 1000  # per-row errors a job or a dry run lists (it counts them all)


def _unquote(text: str) -> str:
    """A cell as an export wrote it: the ``'`` before a formula character goes again."""
    text = text.strip()
    return text[1:] if text[:1] == "'" and text[1:2] in csvtext.FORMULA_STARTS else text


def parse_rows(text: str, max_rows: int = MAX_BULK) -> list[tuple[int, dict]]:
    """``(line number, {column: cell})`` per data row (the header is line 1); empty
    cells are left out (the field's default applies), blank lines skipped.
    ValidationFailed (422, ``errors.file``) for a file that is not such a CSV."""
    def refuse(message: str) -> ValidationFailed:
        return ValidationFailed(message, errors={"file": [message]})
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        if "title" not in header:
            raise refuse("The first line names the columns, title among them.")
        if len(set(header)) != len(header):
            raise refuse("A column is named twice.")
        rows: list[tuple[int, dict]] = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(rows) >= max_rows:
                raise refuse(f"At most {max_rows} rows per file.")
            row = {name: _unquote(cell) for name, cell in zip(header, cells, strict=False)
                   if name in IMPORT_COLUMNS and cell.strip()}
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise refuse(f"Not a CSV file: {exc}") from None
    return rows


def row_error(line: int, messages: dict) -> dict:
    """A refused row: ``{row, error, fields: {field: [messages]}}``."""
    return {"row": line, "error": "; ".join(f"{k}: {' '.join(map(str, v))}" if isinstance(v, list)
                                            else f"{k}: {v}" for k, v in messages.items()),
            "fields": messages}


def refer_rows(valid: list[dict], teams: dict[str, dict | None],
               employees: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    """The rows whose team is the org's and whose assignee an active employee of it."""
    kept, errors = [], []
    for item in valid:
        task, problems = item["task"], {}
        if task.get("team_id") and teams.get(task["team_id"]) is None:
            problems["team_id"] = ["No such team in this organization."]
        person = employees.get(task.get("assignee_id") or "")
        if task.get("assignee_id") and (person is None or person.get("status") != "active"):
            problems["assignee_id"] = ["Not an active employee of this organization."]
        if problems:
            errors.append(row_error(item["row"], problems))
        else:
            kept.append(item)
    return kept, errors


def import_task_id(job_id: str, row: int) -> str:
    """Deterministic, so a redelivered chunk creates nothing twice."""
    return f"{job_id}-r{row}"


# --- estimates and time tracking ------------------------------------------------------
MAX_ENTRY_MINUTES = 24 * 60  # one entry (or one timer run) counts at most a day
MAX_ESTIMATE_MINUTES = 100_000


def timer_id(task_id: str, user_id: str) -> str:
    """One running timer per person and task: a second start is a duplicate key."""
    return f"{task_id}:{user_id}"


def timer_minutes(started_at: datetime, stopped_at: datetime) -> int:
    """Whole minutes a timer ran, rounded up (a started timer counts at least one),
    at most MAX_ENTRY_MINUTES."""
    seconds = max((stopped_at - started_at).total_seconds(), 0)
    return min(max(math.ceil(seconds / 60), 1), MAX_ENTRY_MINUTES)


def remaining(estimate: int | None, spent: int) -> int | None:
    return None if estimate is None else max(estimate - spent, 0)


def fold_totals(groups: list[dict], estimate: int) -> dict:
    """Minutes per task, per assignee (who logged them) and per team, from
    ``{task, employee, team, minutes}`` groups; the largest first, 100 of each."""
    tables: dict[str, dict] = {"task_id": {}, "assignee_id": {}, "team_id": {}}
    for g in groups:
        for name, key in (("task_id", g.get("task")), ("assignee_id", g.get("employee")),
                          ("team_id", g.get("team"))):
            if key is not None:
                tables[name][key] = tables[name].get(key, 0) + g["minutes"]

    def rows(name: str) -> list[dict]:
        return [{name: k, "minutes": v} for k, v in
                sorted(tables[name].items(), key=lambda kv: (-kv[1], kv[0]))[:100]]

    return {"spent_minutes": sum(g["minutes"] for g in groups), "estimate_minutes": estimate,
            "per_task": rows("task_id"), "per_assignee": rows("assignee_id"),
            "per_team": rows("team_id")}
