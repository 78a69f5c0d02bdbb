"""Recurring tasks: an RFC 5545 RRULE on a task, in its organization's time zone.

A task with a ``recurrence`` is one occurrence of a series. When it is completed, or
its due date passes while it is open (the overdue sweep), the next occurrence is
created, once: its id is derived from the series and the occurrence's index
(:func:`occurrence_id`), so two replicas (or a sweep racing a completion) insert the
same document and the second insert is a no-op. This module holds the rules (what rule
is accepted, when the next occurrence falls): plain functions with no I/O. The I/O is
``TaskFlows.recurrence_changes`` and ``TaskFlows.spawn_next`` (task_svc/flows.py), the
wire shapes ``RecurrenceSchema`` and ``RecurrenceOutSchema`` (task_svc/schemas.py).

Rules are evaluated with ``python-dateutil`` on the wall-clock time of the org's zone
(a task due Mondays 09:00 in Europe/London is due 09:00Z in winter, 08:00Z in summer).
Hostile rules are refused before dateutil sees them: no sub-daily ``FREQ`` (the time of
day is the first due date's), bounded ``COUNT``/``INTERVAL``, and only the ``BY*`` parts
whose every combination either matches within days (DAILY, WEEKLY) or is looked for
within :data:`HORIZON_YEARS` at bounded cost (MONTHLY, YEARLY; see :func:`_after`).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr
from marshmallow import ValidationError

from shared.errors import ValidationFailed
from shared.mongo import utcnow

MAX_RULE_LENGTH = 200
MAX_COUNT = 1000
MAX_INTERVAL = 99
HORIZON_YEARS = 10  # a next occurrence further away than this ends the series
# a rule is evaluated from its first due date: one far in the past (the year 1) would make
# every next occurrence iterate over centuries of dates
MAX_PAST = timedelta(days=366)
FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
COMMON_PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "WKST"}
CALENDAR_PARTS = {"BYMONTHDAY", "BYMONTH", "BYSETPOS"}  # MONTHLY and YEARLY only
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_BYDAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_UNTIL = re.compile(r"^\d{8}(T\d{6}Z)?$")
_INT = re.compile(r"^[+-]?\d{1,4}$")
_GREGORIAN_CYCLE = 400  # years after which dates fall on the same weekdays again


def _ints(key: str, value: str, low: int, high: int, zero: bool = False) -> list[int]:
    items = value.split(",")
    if len(items) > 31 or not all(_INT.match(i) for i in items):
        raise ValidationError(f"{key}: a list of at most 31 integers.")
    numbers = [int(i) for i in items]
    if any(n < low or n > high or (n == 0 and not zero) for n in numbers):
        raise ValidationError(f"{key}: each value from {low} to {high}"
                              f"{'' if zero else ', not 0'}.")
    return numbers


def parse_rule(text: str) -> dict[str, str]:
    """The rule's parts (``{"FREQ": "WEEKLY", ...}``), or ValidationError saying why not.

    Accepts one RRULE value (optionally ``RRULE:``-prefixed): no DTSTART (the task's
    due date is the start), no RDATE/EXDATE, no second line."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("An RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=MO.")
    if len(text) > MAX_RULE_LENGTH:
        raise ValidationError(f"At most {MAX_RULE_LENGTH} characters.")
    body = text.strip().upper()
    if "\n" in body or "\r" in body:
        raise ValidationError("One RRULE line: no DTSTART, RDATE or EXDATE lines.")
    body = body[len("RRULE:"):] if body.startswith("RRULE:") else body
    parts: dict[str, str] = {}
    for item in body.split(";"):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValidationError("Parts are KEY=VALUE, separated by ';'.")
        if key in parts:
            raise ValidationError(f"{key} given twice.")
        parts[key] = value
    freq = parts.get("FREQ")
    if freq not in FREQS:
        raise ValidationError(f"FREQ must be one of {', '.join(FREQS)} (no sub-daily "
                              "rules: the time of day is the due date's).")
    allowed = COMMON_PARTS | (CALENDAR_PARTS if freq in ("MONTHLY", "YEARLY") else set())
    unknown = sorted(set(parts) - allowed)
    if unknown:
        raise ValidationError(f"Not supported with FREQ={freq}: {', '.join(unknown)}.")
    if "INTERVAL" in parts:
        _ints("INTERVAL", parts["INTERVAL"], 1, MAX_INTERVAL)
    if "COUNT" in parts:
        _ints("COUNT", parts["COUNT"], 1, MAX_COUNT)
    if "COUNT" in parts and "UNTIL" in parts:
        raise ValidationError("COUNT or UNTIL, not both.")
    if "UNTIL" in parts:
        try:
            if not _UNTIL.match(parts["UNTIL"]):
                raise ValueError
            _until(parts["UNTIL"], ZoneInfo("UTC"))
        except (ValueError, OverflowError):
            raise ValidationError("UNTIL: a date (YYYYMMDD) or a UTC time (YYYYMMDDTHHMMSSZ).") from None
    if "WKST" in parts and parts["WKST"] not in WEEKDAYS:
        raise ValidationError("WKST: a weekday (MO ... SU).")
    if "BYDAY" in parts:
        days = parts["BYDAY"].split(",")
        limit = {"MONTHLY": 5, "YEARLY": 53}.get(freq, 0)
        for day in days:
            found = _BYDAY.match(day)
            n = int(found.group(1)) if found and found.group(1) else None
            if found is None or len(days) > 7 * max(limit, 1) or \
                    (n is not None and (n == 0 or abs(n) > limit)):
                raise ValidationError("BYDAY: weekdays (MO ... SU)"
                                      + (f", each optionally numbered -{limit} to {limit}"
                                         if limit else ", not numbered with this FREQ") + ".")
    if "BYMONTHDAY" in parts:
        _ints("BYMONTHDAY", parts["BYMONTHDAY"], -31, 31)
    if "BYMONTH" in parts:
        _ints("BYMONTH", parts["BYMONTH"], 1, 12)
    if "BYSETPOS" in parts:
        _ints("BYSETPOS", parts["BYSETPOS"], -366, 366)
    try:  # anything left that dateutil refuses
        rrulestr(_text(parts, without_until=True), dtstart=datetime(2000, 1, 1))
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise ValidationError(f"Not a valid RRULE: {exc}") from None
    return parts


def _text(parts: dict[str, str], without_until: bool = False) -> str:
    return ";".join(f"{k}={v}" for k, v in parts.items() if not (without_until and k == "UNTIL"))


def normalize(text: str) -> str:
    """The rule as stored and shown: upper case, no ``RRULE:`` prefix."""
    return _text(parse_rule(text))


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local(at: datetime, tz: ZoneInfo) -> datetime:
    """``at`` as the wall-clock time of ``tz``, naive (what the rule is evaluated on)."""
    return at.astimezone(tz).replace(tzinfo=None)


def _until(value: str, tz: ZoneInfo) -> datetime:
    if "T" in value:  # a UTC instant
        return local(datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc), tz)
    return datetime.strptime(value, "%Y%m%d").replace(hour=23, minute=59, second=59)


def _after(parts: dict[str, str], dtstart: datetime, after: datetime, tz: ZoneInfo) -> datetime | None:
    """The first occurrence (naive, wall clock) strictly after ``after``, within
    HORIZON_YEARS of it, or None.

    dateutil searches a rule that never matches (Feb 30) up to the year 9999, which
    takes seconds. The calendar repeats every 400 years, so the search runs on the same
    dates moved forward by a multiple of 400 years, close enough to 9999 that an empty
    search ends after a few hundred years of months, then moves the answer back."""
    shift = (9999 - HORIZON_YEARS - after.year) // _GREGORIAN_CYCLE * _GREGORIAN_CYCLE
    shift = max(shift, 0)

    def moved(d: datetime, years: int) -> datetime:
        return d.replace(year=d.year + years)

    try:  # near the year 9999 (a due date there, an UNTIL past it): nothing to find
        rule = rrulestr(_text(parts, without_until=True), dtstart=moved(dtstart, shift))
        if "UNTIL" in parts:
            until = _until(parts["UNTIL"], tz)
            if until.year + shift <= 9999:  # else it ends after the search does anyway
                rule = rule.replace(until=moved(until, shift))
        found = rule.after(moved(after, shift))
        if found is None:
            return None
        found = moved(found, -shift)
        return found if found <= after + timedelta(days=365 * HORIZON_YEARS + 3) else None
    except (ValueError, OverflowError):
        return None


def to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """A wall-clock time of ``tz`` as UTC. A time the clocks skip (02:30 on the spring
    change) is read with the offset before the change; a repeated one, the first time."""
    return wall.replace(tzinfo=tz).astimezone(timezone.utc)


def next_occurrence(recurrence: dict, now: datetime) -> datetime | None:
    """When the occurrence after ``recurrence["at"]`` is due (UTC), skipping dates that
    already passed (a task three weeks late gets one next occurrence, not 21); None when
    the series is over (COUNT, UNTIL, or nothing within HORIZON_YEARS)."""
    tz = zone(recurrence.get("timezone"))
    parts = parse_rule(recurrence["rule"])
    dtstart = datetime.fromisoformat(recurrence["dtstart"])
    after = max(local(recurrence["at"], tz), local(now, tz))
    found = _after(parts, dtstart, after, tz)
    try:
        return to_utc(found, tz) if found else None
    except OverflowError:  # past the year 9999 in UTC
        return None


def start(rule: str, due_at: datetime | None, timezone_name: str, series: dict | None,
          task_id: str, now: datetime | None = None) -> dict:
    """The ``recurrence`` of a task whose rule is set or changed now: anchored at its due
    date in the org's zone (keeping the series, index and links it had); 422 when it has
    no due date or the rule never occurs after it."""
    if due_at is None:
        raise ValidationFailed("A recurring task needs a due date.", errors={
            "recurrence": ["Set due_at: the first occurrence is the task's due date."]})
    if due_at < (now or utcnow()) - MAX_PAST:
        raise ValidationFailed("The due date is too far in the past.", errors={
            "recurrence": ["A recurring task's due date is at most a year ago."]})
    tz = zone(timezone_name)
    parts = parse_rule(rule)
    anchor = local(due_at, tz)
    if _after(parts, anchor, anchor, tz) is None:
        raise ValidationFailed("The rule never repeats.", errors={"recurrence": [
            f"No occurrence after the due date within {HORIZON_YEARS} years."]})
    series = series or {}
    return {"rule": _text(parts), "timezone": tz.key, "dtstart": anchor.isoformat(),
            "at": due_at, "series_id": series.get("series_id") or task_id,
            "index": series.get("index", 0), "previous_task_id": series.get("previous_task_id"),
            "next_task_id": series.get("next_task_id")}


def occurrence_id(series_id: str, index: int) -> str:
    """Deterministic: every replica that spawns occurrence ``index`` of a series inserts
    the same ``_id``, so it exists once (the first occurrence keeps its own id)."""
    return f"{series_id}-r{index}"


def successor(task: dict, due_at: datetime) -> dict:
    """The recurrence of the occurrence after ``task``."""
    r = task["recurrence"]
    return {**r, "at": due_at, "index": r["index"] + 1, "previous_task_id": task["_id"],
            "next_task_id": None}
