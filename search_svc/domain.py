"""Search rules, no I/O: which kinds a member may see, how a query is planned
(words, typo tolerance, the word still being typed), what a task, employee or
team looks like in the index, and what an event means for it."""
from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import ValidationFailed
from shared.permissions import role_allows

# what can be searched, and the permission that reads it (shared/permissions.py)
TYPE_PERMISSIONS = {"task": "task.read", "employee": "employee.read", "team": "team.read"}
TYPES = tuple(TYPE_PERMISSIONS)

# ranking: BM25 in each field, weighted; an exact word counts more than a fuzzy
# or prefix one
FIELD_BOOSTS = {"title": 3.0, "body": 1.0, "comments": 0.5}
EXACT_BOOST = 2.0
PREFIX_BOOST = 0.8

MAX_TERMS = 8          # words of a query that count
MAX_TERM_CHARS = 40    # tantivy's default tokenizer drops longer tokens
MAX_OFFSET = 1000      # how deep the pages of one query go
MAX_COMMENT_CHARS = 20_000
WORD = re.compile(r"[^\W_]+")  # tantivy's default tokenizer: alphanumeric runs, lower-cased


@dataclass(frozen=True)
class PlannedTerm:
    text: str
    distance: int   # edits a typo may have (0: exact only)
    prefix: bool    # the word still being typed: also any word it begins


@dataclass(frozen=True)
class QueryPlan:
    terms: tuple[PlannedTerm, ...]


def words(text: str) -> list[str]:
    return [w for w in WORD.findall((text or "").lower()) if len(w) <= MAX_TERM_CHARS]


def typo_distance(word: str) -> int:
    """Edits tolerated: none for short words (too many neighbours), one from four
    letters, two from eight."""
    return 0 if len(word) < 4 else 1 if len(word) < 8 else 2


def plan_query(q: str) -> QueryPlan:
    """Every word must match (exactly, within its typo distance, or, for the last
    word when the query does not end in a space, as a prefix)."""
    found = words(q)[:MAX_TERMS]
    typing = bool(q) and not q[-1].isspace()
    return QueryPlan(tuple(PlannedTerm(w, typo_distance(w), prefix=typing and i == len(found) - 1)
                           for i, w in enumerate(found)))


def plan_suggest(prefix: str) -> QueryPlan:
    """As-you-type: the last word is always a prefix (with one typo from four letters)."""
    found = words(prefix)[:MAX_TERMS]
    last = len(found) - 1
    return QueryPlan(tuple(PlannedTerm(w, min(1, typo_distance(w)) if i == last else typo_distance(w),
                                       prefix=i == last)
                           for i, w in enumerate(found)))


def readable_types(role: str, requested: list[str] | None) -> tuple[str, ...]:
    """The kinds to search: those asked for (all when none), less those the role may
    not read. Asking only for kinds one may not read is a 403 (the caller asked for
    something, not for nothing)."""
    wanted = tuple(requested) if requested else TYPES
    allowed = tuple(t for t in wanted if role_allows(role, TYPE_PERMISSIONS[t]))
    return allowed


def parse_types(text: str | None) -> list[str]:
    """``types=task,team`` -> ``["task", "team"]``; unknown names are a 422."""
    names = [t.strip() for t in (text or "").split(",") if t.strip()]
    unknown = sorted(set(names) - set(TYPES))
    if unknown:
        raise ValidationFailed("Unknown types.", errors={
            "types": [f"Not a searchable type: {', '.join(unknown)} (one of {', '.join(TYPES)})."]})
    return list(dict.fromkeys(names))


def doc_key(org_id: str, type_: str, id_: str) -> str:
    return f"{org_id}:{type_}:{id_}"


# --- what the owners' records become in the index -------------------------------------
def task_fields(task: dict) -> dict:
    comments = "\n".join(c for c in task.get("comments") or [] if c)[:MAX_COMMENT_CHARS]
    return {"org_id": task["org_id"], "type": "task", "id": task["task_id"],
            "title": task.get("title") or "", "body": task.get("description") or "",
            "comments": comments,
            "meta": {k: task.get(k) for k in ("status", "priority", "assignee_id", "team_id")}}


def employee_fields(employee: dict) -> dict:
    return {"org_id": employee["org_id"], "type": "employee", "id": employee["employee_id"],
            "title": employee.get("name") or employee.get("email") or "",
            "body": " ".join(filter(None, (employee.get("email"), employee.get("job_title")))),
            "meta": {k: employee.get(k) for k in ("email", "job_title", "role", "status",
                                                   "user_id")}}


def team_fields(team: dict) -> dict:
    return {"org_id": team["org_id"], "type": "team", "id": team["team_id"],
            "title": team.get("name") or "", "body": team.get("description") or "",
            "meta": {"member_count": team.get("member_count", 0)}}


FIELDS = {"task": task_fields, "employee": employee_fields, "team": team_fields}
ID_FIELD = {"task": "task_id", "employee": "employee_id", "team": "team_id"}


# --- what an event means for the index ---------------------------------------------------
@dataclass(frozen=True)
class Change:
    """Refresh ``ids`` of ``type`` in ``org_id`` from their owner (upsert what it still
    has, delete the rest), or ``delete`` them outright, or ``clear_org``."""

    org_id: str
    type: str = ""
    ids: tuple[str, ...] = ()
    delete: bool = False
    clear_org: bool = False


DELETING = {"task.deleted", "employee.removed", "team.deleted"}


def merged(changes: list[Change]) -> list[Change]:
    """A batch's changes with each run of neighbours that do the same to the same
    type of one org as one (their ids together, each once): one owner call and one
    index commit instead of one per event. Order is kept, so a deletion and a
    refresh of one id still happen in the order their events came."""
    out: list[Change] = []
    for change in changes:
        last = out[-1] if out else None
        if last is not None and (last.org_id, last.type, last.delete, last.clear_org) == (
                change.org_id, change.type, change.delete, change.clear_org):
            ids = last.ids + tuple(i for i in change.ids if i not in last.ids)
            out[-1] = Change(last.org_id, last.type, ids, last.delete, last.clear_org)
        else:
            out.append(change)
    return out


def change_for(event: dict) -> Change | None:
    """Events carry ids (and not always the text: a task's description, a team's
    description); the owner is asked for the current state, so a replay, a
    duplicate or events out of order all end in what the owner holds now."""
    d, kind = event.get("data") or {}, event.get("event_type", "")
    org_id = d.get("org_id") or event.get("org_id")
    if not org_id:
        return None
    if kind == "organization.deleted":
        return Change(org_id, clear_org=True)
    if kind == "task.bulk.assigned":
        return Change(org_id, "task", tuple(t["task_id"] for t in d.get("tasks") or []
                                            if t.get("task_id")))
    type_ = kind.split(".", 1)[0]
    if type_ not in ID_FIELD or not d.get(ID_FIELD[type_]):
        return None
    return Change(org_id, type_, (d[ID_FIELD[type_]],), delete=kind in DELETING)


def page_offset(cursor_text: str | None) -> int:
    """The offset an opaque cursor (shared.pagination) stands for; 422 when it is not one."""
    if not cursor_text:
        return 0
    if not cursor_text.isdigit() or int(cursor_text) > MAX_OFFSET:
        raise ValidationFailed("Bad cursor.", errors={"cursor": ["Not a valid cursor."]})
    return int(cursor_text)
