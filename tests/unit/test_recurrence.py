"""Recurring tasks' rules (task_svc.recurrence) and time tracking's sums: which RRULEs
are accepted, when the next occurrence falls in the org's zone (DST included)."""
import time
from datetime import datetime, timedelta, timezone

import pytest
from marshmallow import ValidationError

from shared.errors import ValidationFailed
from task_svc import domain, recurrence
from task_svc.schemas import TaskCreateSchema, TaskUpdateSchema

UTC = timezone.utc
MONDAY = datetime(2027, 3, 22, 9, 0, tzinfo=UTC)  # 09:00 in London (GMT), the week before BST


def series(rule, due=MONDAY, tz="Europe/London"):
    return recurrence.start(rule, due, tz, None, "task1", now=MONDAY)


@pytest.mark.parametrize("rule,says", [
    ("FREQ=HOURLY", "FREQ must be one of"),
    ("FREQ=MINUTELY;INTERVAL=1", "FREQ must be one of"),
    ("FREQ=SECONDLY", "FREQ must be one of"),
    ("INTERVAL=2", "FREQ must be one of"),
    ("FREQ=DAILY;COUNT=1001", "COUNT"),
    ("FREQ=DAILY;COUNT=0", "COUNT"),
    ("FREQ=WEEKLY;INTERVAL=100", "INTERVAL"),
    ("FREQ=WEEKLY;INTERVAL=99999999999999999999", "INTERVAL"),
    ("FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11", "Not supported"),
    ("FREQ=DAILY;BYMINUTE=5", "Not supported"),
    ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "Not supported with FREQ=DAILY"),
    ("FREQ=WEEKLY;BYDAY=2MO", "not numbered"),
    ("FREQ=MONTHLY;BYDAY=6MO", "numbered -5 to 5"),
    ("FREQ=YEARLY;BYYEARDAY=366", "Not supported"),
    ("FREQ=WEEKLY;COUNT=3;UNTIL=20280101", "not both"),
    ("FREQ=WEEKLY;UNTIL=tomorrow", "UNTIL"),
    ("FREQ=WEEKLY;FREQ=DAILY", "twice"),
    ("FREQ=DAILY\nRDATE:20270101", "One RRULE line"),
    ("DTSTART:20270101T000000Z\nRRULE:FREQ=DAILY", "One RRULE line"),
    ("FREQ=WEEKLY;BYDAY=" + ",".join(["MO"] * 40), "BYDAY"),
    ("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY"),
    ("FREQ=WEEKLY;" + "X" * 300, "At most 200"),
    ("", "An RFC 5545 RRULE"),
])
def test_hostile_or_unsupported_rules_are_refused_with_the_reason(rule, says):
    with pytest.raises(ValidationError) as refused:
        recurrence.parse_rule(rule)
    assert says in str(refused.value.messages)


@pytest.mark.parametrize("rule", [
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",         # February 30th
    "FREQ=MONTHLY;BYMONTH=4;BYMONTHDAY=31",        # April 31st
    "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=9",            # a ninth Monday in a month
    "FREQ=WEEKLY;UNTIL=20270101",                  # over before it starts
])
def test_a_rule_that_never_repeats_is_a_422_and_answers_quickly(rule):
    started = time.perf_counter()
    with pytest.raises(ValidationFailed) as refused:
        series(rule)
    assert "recurrence" in refused.value.errors
    assert time.perf_counter() - started < 1  # dateutil alone searches to the year 9999 (seconds)


def test_the_schemas_take_a_rule_and_refuse_a_bad_one():
    loaded = TaskCreateSchema().load({"title": "Standup notes", "due_at": "2027-03-22T09:00:00Z",
                                      "recurrence": {"rule": "RRULE:FREQ=WEEKLY;BYDAY=MO"},
                                      "estimate_minutes": 30})
    assert loaded["recurrence"] == {"rule": "RRULE:FREQ=WEEKLY;BYDAY=MO"}
    assert TaskUpdateSchema().load({"recurrence": None}) == {"recurrence": None}
    for bad in ({"recurrence": {"rule": "FREQ=SECONDLY"}}, {"recurrence": "FREQ=DAILY"},
                {"estimate_minutes": -1}, {"estimate_minutes": "10"}):
        with pytest.raises(ValidationError):
            TaskUpdateSchema().load(bad)


def test_weekly_on_monday_keeps_the_wall_clock_time_across_the_spring_change():
    r = series("rrule:freq=weekly;byday=mo")
    assert r["rule"] == "FREQ=WEEKLY;BYDAY=MO" and r["timezone"] == "Europe/London"
    nxt = recurrence.next_occurrence(r, MONDAY)
    assert nxt == datetime(2027, 3, 29, 8, 0, tzinfo=UTC)  # 09:00 BST
    then = recurrence.next_occurrence({**r, "at": nxt}, MONDAY)
    assert then == datetime(2027, 4, 5, 8, 0, tzinfo=UTC)


def test_daily_across_the_autumn_change_in_new_york():
    due = datetime(2027, 11, 6, 13, 30, tzinfo=UTC)  # 09:30 EDT, the day before the change
    r = series("FREQ=DAILY", due, "America/New_York")
    assert recurrence.next_occurrence(r, due) == datetime(2027, 11, 7, 14, 30, tzinfo=UTC)  # 09:30 EST


def test_a_time_the_clocks_skip_is_read_with_the_offset_before_the_change():
    due = datetime(2027, 3, 27, 1, 30, tzinfo=UTC)  # 01:30 GMT; 01:30 on the 28th does not exist
    r = series("FREQ=DAILY", due)
    assert recurrence.next_occurrence(r, due) == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)


def test_missed_dates_are_skipped_not_created_one_by_one():
    r = series("FREQ=DAILY")
    late = MONDAY + timedelta(days=20, hours=1)
    assert recurrence.next_occurrence(r, late) == datetime(2027, 4, 12, 8, 0, tzinfo=UTC)


def test_count_and_until_end_the_series():
    r = series("FREQ=WEEKLY;COUNT=2")  # the first due date is a Monday: it is the first of two
    second = recurrence.next_occurrence(r, MONDAY)
    assert second is not None
    assert recurrence.next_occurrence({**r, "at": second}, MONDAY) is None
    u = series("FREQ=DAILY;UNTIL=20270324T120000Z")
    assert recurrence.next_occurrence({**u, "at": datetime(2027, 3, 24, 9, tzinfo=UTC)}, MONDAY) is None


def test_monthly_last_friday_and_the_occurrence_ids_are_derived():
    r = series("FREQ=MONTHLY;BYDAY=-1FR")
    assert recurrence.next_occurrence(r, MONDAY) == datetime(2027, 3, 26, 9, 0, tzinfo=UTC)
    nxt = recurrence.successor({"_id": "task1", "recurrence": r}, MONDAY)
    assert (nxt["index"], nxt["previous_task_id"], nxt["series_id"]) == (1, "task1", "task1")
    assert recurrence.occurrence_id("task1", 1) == recurrence.occurrence_id("task1", 1) == "task1-r1"


def test_a_recurring_task_needs_a_due_date():
    with pytest.raises(ValidationFailed) as refused:
        recurrence.start("FREQ=DAILY", None, "UTC", None, "task1", now=MONDAY)
    assert "recurrence" in refused.value.errors


def test_time_totals_per_task_assignee_and_team():
    totals = domain.fold_totals([
        {"task": "k1", "employee": "e1", "team": "t1", "minutes": 30},
        {"task": "k1", "employee": "e2", "team": "t1", "minutes": 15},
        {"task": "k2", "employee": "e1", "team": None, "minutes": 60}], estimate=120)
    assert totals["spent_minutes"] == 105 and totals["estimate_minutes"] == 120
    assert totals["per_task"] == [{"task_id": "k2", "minutes": 60}, {"task_id": "k1", "minutes": 45}]
    assert totals["per_assignee"] == [{"assignee_id": "e1", "minutes": 90},
                                      {"assignee_id": "e2", "minutes": 15}]
    assert totals["per_team"] == [{"team_id": "t1", "minutes": 45}]


def test_a_timer_counts_whole_minutes_rounded_up_and_at_most_a_day():
    t0 = datetime(2027, 1, 1, tzinfo=UTC)
    assert domain.timer_minutes(t0, t0 + timedelta(seconds=5)) == 1
    assert domain.timer_minutes(t0, t0 + timedelta(minutes=30, seconds=1)) == 31
    assert domain.timer_minutes(t0, t0 + timedelta(days=3)) == 24 * 60
    assert domain.remaining(60, 90) == 0 and domain.remaining(None, 5) is None


@pytest.mark.parametrize("due,rule", [
    (datetime(9999, 12, 30, 12, tzinfo=UTC), "FREQ=DAILY"),
    (datetime(9999, 12, 1, 12, tzinfo=UTC), "FREQ=YEARLY"),
    (datetime(9999, 12, 31, 23, tzinfo=UTC), "FREQ=WEEKLY"),
    (MONDAY, "FREQ=DAILY;UNTIL=99991231T235959Z"),
])
def test_dates_near_the_year_9999_end_a_series_instead_of_failing(due, rule):
    try:
        r = series(rule, due, "America/New_York")
    except ValidationFailed:
        return  # refused as never repeating: fine too
    nxt = recurrence.next_occurrence(r, due)
    assert nxt is None or nxt > due


def test_a_first_due_date_long_ago_is_refused():
    with pytest.raises(ValidationFailed) as refused:
        series("FREQ=DAILY", datetime(1, 1, 1, tzinfo=UTC))
    assert "recurrence" in refused.value.errors


def test_an_impossible_until_is_refused():
    for rule in ("FREQ=DAILY;UNTIL=00000101", "FREQ=DAILY;UNTIL=20271399"):
        with pytest.raises(ValidationError):
            recurrence.parse_rule(rule)
