"""Analytics rules, no I/O: what a task event says about its task, a task's
facts derived from everything said so far, period buckets in an org's time
zone, percentiles, and the figures folded from facts (docs/analytics.md).

The read model keeps, per task, the *log* of what each event said (one entry
per event id) and derives the task's current facts from the whole log, in
the events' own order (``occurred_at``). So a replayed event (same id) adds
nothing, an event that arrives late or out of order lands where it belongs,
and no figure is ever an increment that a replay could apply twice."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERIODS = ("day", "week", "month")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OPEN = ("todo", "in_progress")
PERCENTILES = (50, 75, 90, 95)
MAX_BUCKETS = 400
# how far back a range goes when ``from`` is not given: this many periods, ``to``'s included
DEFAULT_SPAN = {"day": 30, "week": 12, "month": 12}

# --- events -> log entries ------------------------------------------------------------
# kinds of log entry; at the same instant a creation comes before what follows it
CREATED, ASSIGNEE, TEAM, DUE, STATUS, DELETED = "created", "assignee", "team", "due", "status", "deleted"
_KIND_ORDER = {CREATED: 0, ASSIGNEE: 1, TEAM: 1, DUE: 1, STATUS: 2, DELETED: 3}

TASK_EVENTS = ("task.created", "task.bulk.assigned", "task.assigned", "task.reassigned",
               "task.updated", "task.status.changed", "task.deleted")


def _entry(event: dict, kind: str, value) -> dict:
    # the event's own time as published (microseconds; its ISO text sorts in time order)
    return {"e": event["event_id"], "at": event["occurred_at"], "k": kind, "v": value}


def entries(event: dict) -> dict[str, list[dict]]:
    """``{task_id: [log entry, ...]}``: what one task event says (nothing if it says
    nothing analytics counts, e.g. a title change)."""
    kind, d = event["event_type"], event.get("data") or {}
    if kind == "task.bulk.assigned":  # a chunk of a bulk job: each task created, assigned
        return {t["task_id"]: [_entry(event, CREATED, {
            "status": "todo", "assignee_id": t.get("assignee_id"), "team_id": d.get("team_id"),
            "due_at": d.get("due_at")})] for t in d.get("tasks") or [] if t.get("task_id")}
    task_id = d.get("task_id")
    if not task_id:
        return {}
    if kind == "task.created":
        found = [_entry(event, CREATED, {"status": d.get("status") or "todo",
                                         "assignee_id": d.get("assignee_id"),
                                         "team_id": d.get("team_id"), "due_at": d.get("due_at")})]
    elif kind == "task.assigned":
        found = [_entry(event, ASSIGNEE, d.get("assignee_id"))]
    elif kind == "task.reassigned":
        found = [_entry(event, ASSIGNEE, d.get("new_assignee_id"))]
    elif kind == "task.updated":
        changes = d.get("changes") or {}
        found = [_entry(event, field_kind, changes[name])
                 for name, field_kind in (("team_id", TEAM), ("due_at", DUE)) if name in changes]
    elif kind == "task.status.changed":
        found = [_entry(event, STATUS, d.get("new_status"))]
    elif kind == "task.deleted":
        found = [_entry(event, DELETED, True)]
    else:
        found = []
    return {task_id: found} if found else {}


def entries_by_org(events: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """``{org_id: {task_id: [log entry, ...]}}`` of events that arrived together
    (a batch), in their order; events without an org or anything counted add nothing."""
    out: dict[str, dict[str, list[dict]]] = {}
    for event in events:
        org_id = (event.get("data") or {}).get("org_id") or event.get("org_id")
        found = entries(event)
        if org_id and found:
            tasks = out.setdefault(org_id, {})
            for task_id, mine in found.items():
                tasks.setdefault(task_id, []).extend(mine)
    return out


def with_entries(log: list[dict], found: list[dict]) -> list[dict] | None:
    """``log`` with the entries of ``found`` it lacks (an event's entry is known by its
    event id and kind), or None when it has them all (a replayed event)."""
    seen, added = {(entry["e"], entry["k"]) for entry in log}, []
    for entry in found:
        if (entry["e"], entry["k"]) not in seen:
            seen.add((entry["e"], entry["k"]))
            added.append(entry)
    return [*log, *added] if added else None


def parse_time(text: str | None) -> datetime | None:
    """An ISO time of an event (``...Z`` or with an offset) as an aware UTC datetime."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def ordered(log: list[dict]) -> list[dict]:
    return sorted(log, key=lambda e: (parse_time(e["at"]) or datetime.min.replace(tzinfo=timezone.utc),
                                      _KIND_ORDER.get(e["k"], 9), e["e"]))


def derive(log: list[dict]) -> dict:
    """A task's facts from its whole log (docs/analytics.md): ``created_at`` (None when
    its creation was never seen), ``status``, ``started_at`` (first move to
    in_progress), ``done_at`` (when it last became done, if it is done now),
    ``assignee_id``, ``team_id``, ``due_at`` and ``deleted``."""
    facts: dict = {"created_at": None, "status": None, "started_at": None, "done_at": None,
                   "assignee_id": None, "team_id": None, "due_at": None, "deleted": False}
    for entry in ordered(log):
        kind, value, at = entry["k"], entry["v"], parse_time(entry["at"])
        if kind == CREATED:
            value = value or {}
            facts["created_at"] = at
            facts["status"] = facts["status"] or value.get("status") or "todo"
            for name in ("assignee_id", "team_id", "due_at"):
                # a change seen before the creation (out of order) is newer: it stays
                if not facts.get(f"_{name}_set"):
                    facts[name] = value.get(name)
        elif kind in (ASSIGNEE, TEAM, DUE):
            name = {ASSIGNEE: "assignee_id", TEAM: "team_id", DUE: "due_at"}[kind]
            facts[name], facts[f"_{name}_set"] = value, True
        elif kind == STATUS:
            facts["status"] = value
            if value == "in_progress" and facts["started_at"] is None:
                facts["started_at"] = at
            facts["done_at"] = at if value == "done" else None
        elif kind == DELETED:
            facts["deleted"] = True
    facts["status"] = facts["status"] or "todo"
    facts["due_at"] = parse_time(facts["due_at"])
    return {k: v for k, v in facts.items() if not k.startswith("_")}


# --- time zones and periods -------------------------------------------------------------
def zone(name: str | None) -> ZoneInfo:
    """The org's IANA zone; an unknown or missing one is UTC."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def week_start_index(week_start: str | None) -> int:
    return DAYS.index(week_start) if week_start in DAYS else 0


def period_start(day: date, period: str, week_start: int = 0) -> date:
    """The first local day of the period holding ``day``."""
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=(day.weekday() - week_start) % 7)
    return day.replace(day=1)


def next_period(start: date, period: str) -> date:
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant a local day begins (DST-aware: a day is 23, 24 or 25 hours)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(timezone.utc)


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


@dataclass(frozen=True)
class Range:
    """Whole periods from ``first`` to the period starting at ``last``, local days."""

    period: str
    first: date
    last: date
    tz: ZoneInfo
    week_start: int = 0

    @property
    def starts(self) -> list[date]:
        out, start = [], self.first
        while start <= self.last:
            out.append(start)
            start = next_period(start, self.period)
        return out

    @property
    def end(self) -> date:
        """The first local day after the range."""
        return next_period(self.last, self.period)

    @property
    def since(self) -> datetime:
        return local_midnight(self.first, self.tz)

    @property
    def until(self) -> datetime:
        return local_midnight(self.end, self.tz)

    def bucket(self, at: datetime | None) -> date | None:
        """The period start ``at`` falls in, or None outside the range."""
        if at is None or not (self.since <= at < self.until):
            return None
        return period_start(local_day(at, self.tz), self.period, self.week_start)


class BadRange(ValueError):
    """A range the caller must fix (the service answers 422 naming the field)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def make_range(period: str, first: date | None, last: date | None, tz: ZoneInfo,
               week_start: int, now: datetime) -> Range:
    """``from``..``to`` (local dates, both included, widened to whole periods);
    ``to`` defaults to today in the org's zone, ``from`` to DEFAULT_SPAN periods back."""
    last = period_start(last or local_day(now, tz), period, week_start)
    if first is None:
        first = last
        for _ in range(DEFAULT_SPAN[period] - 1):
            first = period_start(first - timedelta(days=1), period, week_start)
    first = period_start(first, period, week_start)
    if first > last:
        raise BadRange("from", "from is after to.")
    found = Range(period, first, last, tz, week_start)
    if len(found.starts) > MAX_BUCKETS:
        raise BadRange("from", f"At most {MAX_BUCKETS} {period}s at once.")
    return found


# --- figures ------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default,
    Excel's PERCENTILE.INC); None for no values."""
    if not values:
        return None
    ordered_values = sorted(values)
    rank = (len(ordered_values) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered_values) - 1)
    return ordered_values[low] + (ordered_values[high] - ordered_values[low]) * (rank - low)


def distribution(values: list[float]) -> dict:
    """``{count, mean, p50, p75, p90, p95}`` in seconds (None when empty)."""
    out: dict = {"count": len(values),
                 "mean": round(sum(values) / len(values), 3) if values else None}
    for p in PERCENTILES:
        value = percentile(values, p)
        out[f"p{p}"] = None if value is None else round(value, 3)
    return out


def lead_time(facts: dict) -> float | None:
    """Created -> done, seconds."""
    if facts.get("created_at") and facts.get("done_at"):
        return max(0.0, (facts["done_at"] - facts["created_at"]).total_seconds())
    return None


def cycle_time(facts: dict) -> float | None:
    """First in_progress -> done, seconds."""
    if facts.get("started_at") and facts.get("done_at"):
        return max(0.0, (facts["done_at"] - facts["started_at"]).total_seconds())
    return None


def overdue(facts: dict, now: datetime) -> bool:
    """Its due time has passed and it was not done by then."""
    due = facts.get("due_at")
    if due is None or due > now:
        return False
    done = facts.get("done_at")
    return done is None or done > due


def summary(r: Range, created: list[dict], completed: list[dict], due: list[dict],
            now: datetime) -> list[dict]:
    """Per period: tasks created, completed, overdue (their due time in it, passed,
    not done by then). Each list holds the facts of the tasks whose ``created_at``,
    ``done_at`` or ``due_at`` falls in the range."""
    rows = {start: {"created": 0, "completed": 0, "overdue": 0} for start in r.starts}
    for at, name in ([(f.get("created_at"), "created") for f in created]
                     + [(f.get("done_at"), "completed") for f in completed]
                     + [(f.get("due_at"), "overdue") for f in due if overdue(f, now)]):
        start = r.bucket(at)
        if start is not None:
            rows[start][name] += 1
    return [{"start": s.isoformat(), "end": next_period(s, r.period).isoformat(), **rows[s]}
            for s in r.starts]


def times(r: Range, completed: list[dict]) -> tuple[dict, list[dict]]:
    """Lead and cycle time distributions of the tasks completed in the range, over all
    of it and per period."""
    per: dict = {start: ([], []) for start in r.starts}
    for facts in completed:
        start = r.bucket(facts.get("done_at"))
        if start is None:
            continue
        for values, value in zip(per[start], (lead_time(facts), cycle_time(facts)), strict=True):
            if value is not None:
                values.append(value)
    leads = [v for lead, _ in per.values() for v in lead]
    cycles = [v for _, cycle in per.values() for v in cycle]
    rows = [{"start": s.isoformat(), "end": next_period(s, r.period).isoformat(),
             "lead_time": distribution(per[s][0]), "cycle_time": distribution(per[s][1])}
            for s in r.starts]
    return {"lead_time": distribution(leads), "cycle_time": distribution(cycles)}, rows


def throughput(r: Range, completed: list[dict], by: str) -> list[dict]:
    """Tasks completed in the range per team or assignee (``id`` None: no team, or
    unassigned), most first, with their count per period."""
    field = "team_id" if by == "team" else "assignee_id"
    index = {start: i for i, start in enumerate(r.starts)}
    groups: dict = {}
    for facts in completed:
        start = r.bucket(facts.get("done_at"))
        if start is None:
            continue
        counts = groups.setdefault(facts.get(field), [0] * len(index))
        counts[index[start]] += 1
    rows = [{"id": key, "completed": sum(counts), "per_period": counts}
            for key, counts in groups.items()]
    return sorted(rows, key=lambda row: (-row["completed"], row["id"] is None, row["id"] or ""))


def workload(open_tasks: list[dict], now: datetime) -> tuple[list[dict], dict]:
    """Open tasks per assignee (todo, in_progress, overdue among them), most first;
    and those with no assignee."""
    def empty() -> dict:
        return {"open": 0, "todo": 0, "in_progress": 0, "overdue": 0}

    people: dict = {}
    nobody = empty()
    for facts in open_tasks:
        if facts.get("status") not in OPEN:
            continue
        row = people.setdefault(facts["assignee_id"], empty()) if facts.get("assignee_id") else nobody
        row["open"] += 1
        row[facts["status"]] += 1
        row["overdue"] += overdue(facts, now)
    rows = [{"employee_id": e, **row} for e, row in people.items()]
    return sorted(rows, key=lambda row: (-row["open"], row["employee_id"])), nobody
