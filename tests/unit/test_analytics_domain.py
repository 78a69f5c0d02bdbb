"""Analytics rules without servers: periods in a time zone (DST days of 23 and
25 hours, week starts, months), percentiles, and facts derived from a task's
log whatever the order and however often an event came."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest

from analytics_svc import domain

UTC = timezone.utc
LONDON = domain.zone("Europe/London")
NEW_YORK = domain.zone("America/New_York")


def at(text: str) -> datetime:
    return domain.parse_time(text)


# --- periods in a time zone -------------------------------------------------------------
def test_a_local_day_begins_at_local_midnight_and_dst_days_are_23_or_25_hours():
    spring, autumn = date(2026, 3, 29), date(2026, 10, 25)  # Europe's 2026 clock changes
    assert domain.local_midnight(spring, LONDON) == at("2026-03-29T00:00:00Z")
    assert domain.local_midnight(spring + timedelta(days=1), LONDON) == at("2026-03-29T23:00:00Z")
    length = {day: domain.local_midnight(day + timedelta(days=1), LONDON)
              - domain.local_midnight(day, LONDON) for day in (spring, autumn, date(2026, 7, 1))}
    assert length == {spring: timedelta(hours=23), autumn: timedelta(hours=25),
                      date(2026, 7, 1): timedelta(hours=24)}


def test_an_instant_falls_in_the_local_day_week_and_month_of_the_org():
    r = domain.make_range("day", date(2026, 10, 31), date(2026, 11, 2), NEW_YORK, 0,
                          at("2026-12-01T00:00:00Z"))
    # New York leaves DST at 06:00 UTC on Nov 1: midnight is 04:00 UTC before, 05:00 after
    assert r.since == at("2026-10-31T04:00:00Z") and r.until == at("2026-11-03T05:00:00Z")
    assert r.bucket(at("2026-11-01T03:59:59Z")) == date(2026, 10, 31)
    assert r.bucket(at("2026-11-01T04:00:00Z")) == date(2026, 11, 1)
    assert r.bucket(at("2026-11-02T04:59:59Z")) == date(2026, 11, 1)  # 23:59 EST, 25 h day
    assert r.bucket(at("2026-11-02T05:00:00Z")) == date(2026, 11, 2)
    assert r.bucket(at("2026-10-31T03:59:59Z")) is None and r.bucket(at("2026-11-03T05:00:00Z")) is None
    assert r.bucket(None) is None


@pytest.mark.parametrize("week_start,first", [("mon", date(2026, 11, 30)), ("sun", date(2026, 11, 29)),
                                              ("sat", date(2026, 11, 28))])
def test_weeks_start_on_the_orgs_week_start(week_start, first):
    start = domain.period_start(date(2026, 12, 3), "week", domain.week_start_index(week_start))
    assert start == first and domain.next_period(start, "week") == first + timedelta(days=7)


def test_months_and_ranges_widen_to_whole_periods():
    assert domain.period_start(date(2026, 2, 17), "month") == date(2026, 2, 1)
    assert domain.next_period(date(2026, 12, 1), "month") == date(2027, 1, 1)
    assert domain.next_period(date(2028, 2, 1), "month") == date(2028, 3, 1)
    r = domain.make_range("month", date(2026, 1, 20), date(2026, 3, 3), UTC, 0, at("2026-12-01T00:00:00Z"))
    assert r.starts == [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)] and r.end == date(2026, 4, 1)


def test_default_ranges_end_today_in_the_orgs_zone():
    now = at("2026-12-01T03:00:00Z")  # still Nov 30 in New York
    r = domain.make_range("day", None, None, NEW_YORK, 0, now)
    assert r.last == date(2026, 11, 30) and len(r.starts) == 30
    weeks = domain.make_range("week", None, None, UTC, 0, now)
    assert weeks.last == date(2026, 11, 30) and len(weeks.starts) == 12
    assert domain.make_range("month", None, None, UTC, 0, now).starts[0] == date(2026, 1, 1)


def test_bad_ranges_are_refused():
    now = at("2026-12-01T00:00:00Z")
    with pytest.raises(domain.BadRange):
        domain.make_range("day", date(2026, 11, 5), date(2026, 11, 1), UTC, 0, now)
    with pytest.raises(domain.BadRange):
        domain.make_range("day", date(2020, 1, 1), date(2026, 11, 1), UTC, 0, now)
    assert len(domain.make_range("day", date(2026, 1, 1), date(2027, 1, 31), UTC, 0, now).starts) == 396


def test_an_unknown_zone_is_utc():
    assert domain.zone("Mars/Olympus") == domain.zone("UTC") == domain.zone(None)


# --- percentiles ------------------------------------------------------------------------
def test_percentiles_interpolate_between_ranks():
    assert domain.percentile([], 50) is None
    assert domain.percentile([7], 95) == 7
    assert domain.percentile([1, 2, 3, 4], 50) == 2.5
    assert domain.percentile([4, 1, 3, 2], 75) == pytest.approx(3.25)
    assert domain.percentile(list(range(1, 101)), 90) == pytest.approx(90.1)
    assert domain.percentile([10, 20], 100) == 20 and domain.percentile([10, 20], 0) == 10
    assert domain.distribution([]) == {"count": 0, "mean": None, "p50": None, "p75": None,
                                       "p90": None, "p95": None}
    assert domain.distribution([3600, 7200]) == {"count": 2, "mean": 5400.0, "p50": 5400.0,
                                                 "p75": 6300.0, "p90": 6840.0, "p95": 7020.0}


# --- facts from a log ---------------------------------------------------------------------
def event(event_id, event_type, occurred_at, **data) -> dict:
    return {"event_id": event_id, "event_type": event_type, "occurred_at": occurred_at,
            "data": {"org_id": "o1", "task_id": "t1", **data}}


HISTORY = [
    event("e1", "task.created", "2026-11-01T10:00:00.000001Z", status="todo", assignee_id=None,
          team_id="team-a", due_at="2026-11-03T00:00:00Z"),
    event("e2", "task.assigned", "2026-11-01T10:00:00.000002Z", assignee_id="ann"),
    event("e3", "task.status.changed", "2026-11-02T09:00:00.000000Z", new_status="in_progress"),
    event("e4", "task.status.changed", "2026-11-02T12:00:00.000000Z", new_status="done"),
    event("e5", "task.status.changed", "2026-11-02T13:00:00.000000Z", new_status="in_progress"),
    event("e6", "task.reassigned", "2026-11-02T14:00:00.000000Z", new_assignee_id="bob"),
    event("e7", "task.updated", "2026-11-02T15:00:00.000000Z", changes={"team_id": None,
                                                                         "title": "x"}),
    event("e8", "task.status.changed", "2026-11-04T12:00:00.000000Z", new_status="done"),
]


def log_of(events) -> list[dict]:
    return [entry for e in events for entry in domain.entries(e).get("t1", [])]


def test_facts_follow_the_whole_history():
    facts = domain.derive(log_of(HISTORY))
    assert facts == {"created_at": at("2026-11-01T10:00:00.000001Z"), "status": "done",
                     "started_at": at("2026-11-02T09:00:00Z"), "done_at": at("2026-11-04T12:00:00Z"),
                     "assignee_id": "bob", "team_id": None, "due_at": at("2026-11-03T00:00:00Z"),
                     "deleted": False}
    assert domain.lead_time(facts) == (facts["done_at"] - facts["created_at"]).total_seconds()
    assert domain.cycle_time(facts) == 51 * 3600
    assert domain.overdue(facts, at("2026-12-01T00:00:00Z"))  # done after its due time


def test_any_arrival_order_and_any_duplicate_gives_the_same_facts():
    expected = domain.derive(log_of(HISTORY))
    shuffle = random.Random(16).shuffle
    for _ in range(300):
        order = list(HISTORY)
        shuffle(order)
        log = log_of(order)
        assert domain.derive(log) == expected
        assert domain.derive(log + log[:3]) == expected  # replayed entries
    assert domain.derive(log_of(reversed(HISTORY))) == expected


def test_a_replayed_event_makes_the_same_entry():
    again = dict(HISTORY[3])
    assert domain.entries(again) == domain.entries(HISTORY[3])


def test_a_reopened_task_is_not_done_and_a_deleted_one_is_marked():
    reopened = domain.derive(log_of(HISTORY[:5]))
    assert reopened["status"] == "in_progress" and reopened["done_at"] is None
    deleted = domain.derive(log_of([HISTORY[0], event("e9", "task.deleted", "2026-11-02T00:00:00Z")]))
    assert deleted["deleted"] is True


def test_a_task_whose_creation_was_never_seen_has_no_created_at():
    facts = domain.derive(log_of(HISTORY[2:4]))
    assert facts["created_at"] is None and facts["done_at"] is not None
    assert domain.lead_time(facts) is None and domain.cycle_time(facts) == 3 * 3600


def test_events_that_say_nothing_countable_make_no_entries():
    assert domain.entries(event("x", "task.updated", "2026-11-02T00:00:00Z", changes={"title": "y"})) == {}
    assert domain.entries({"event_id": "x", "event_type": "task.created", "occurred_at": "t",
                           "data": {"org_id": "o"}}) == {}


def test_a_bulk_chunk_creates_each_of_its_tasks():
    chunk = {"event_id": "task.bulk.assigned:j:0", "event_type": "task.bulk.assigned",
             "occurred_at": "2026-11-01T00:00:00Z",
             "data": {"org_id": "o1", "team_id": "team-b", "due_at": None,
                      "tasks": [{"task_id": "a", "assignee_id": "ann"},
                                {"task_id": "b", "assignee_id": "bob"}]}}
    found = domain.entries(chunk)
    assert sorted(found) == ["a", "b"]
    assert domain.derive(found["b"])["assignee_id"] == "bob"
    assert domain.derive(found["a"])["team_id"] == "team-b"


# --- figures -------------------------------------------------------------------------------
def facts(**kw) -> dict:
    base = {"created_at": None, "status": "todo", "started_at": None, "done_at": None,
            "assignee_id": None, "team_id": None, "due_at": None, "deleted": False}
    return {**base, **{k: at(v) if k.endswith("_at") and v else v for k, v in kw.items()}}


def test_summary_counts_created_completed_and_overdue_per_period():
    r = domain.make_range("day", date(2026, 11, 1), date(2026, 11, 3), UTC, 0, at("2026-12-01T00:00:00Z"))
    now = at("2026-11-03T12:00:00Z")
    late = facts(due_at="2026-11-02T12:00:00Z", done_at="2026-11-03T01:00:00Z", status="done")
    on_time = facts(due_at="2026-11-02T12:00:00Z", done_at="2026-11-02T11:00:00Z", status="done")
    open_due = facts(due_at="2026-11-01T09:00:00Z")
    not_yet = facts(due_at="2026-11-03T18:00:00Z")
    rows = domain.summary(r, [facts(created_at="2026-11-01T05:00:00Z")], [late, on_time],
                          [late, on_time, open_due, not_yet], now)
    assert [(row["start"], row["created"], row["completed"], row["overdue"]) for row in rows] == [
        ("2026-11-01", 1, 0, 1), ("2026-11-02", 0, 1, 1), ("2026-11-03", 0, 1, 0)]
    assert rows[0]["end"] == "2026-11-02"


def test_throughput_and_workload():
    r = domain.make_range("week", date(2026, 11, 2), date(2026, 11, 9), UTC, 0, at("2026-12-01T00:00:00Z"))
    done = [facts(done_at="2026-11-03T00:00:00Z", team_id="a", assignee_id="ann"),
            facts(done_at="2026-11-10T00:00:00Z", team_id="a", assignee_id="bob"),
            facts(done_at="2026-11-11T00:00:00Z", team_id=None, assignee_id="bob"),
            facts(done_at="2026-12-11T00:00:00Z", team_id="z")]  # outside
    assert domain.throughput(r, done, "team") == [{"id": "a", "completed": 2, "per_period": [1, 1]},
                                                  {"id": None, "completed": 1, "per_period": [0, 1]}]
    assert [row["id"] for row in domain.throughput(r, done, "assignee")] == ["bob", "ann"]
    now = at("2026-11-05T00:00:00Z")
    rows, nobody = domain.workload([
        facts(assignee_id="ann", status="todo", due_at="2026-11-04T00:00:00Z"),
        facts(assignee_id="ann", status="in_progress"),
        facts(assignee_id="bob", status="todo"),
        facts(status="todo"), facts(assignee_id="cy", status="done")], now)
    assert rows == [{"employee_id": "ann", "open": 2, "todo": 1, "in_progress": 1, "overdue": 1},
                    {"employee_id": "bob", "open": 1, "todo": 1, "in_progress": 0, "overdue": 0}]
    assert nobody == {"open": 1, "todo": 1, "in_progress": 0, "overdue": 0}


def test_a_batch_of_events_groups_its_entries_by_org_and_task_in_order():
    other = {**event("o2e", "task.status.changed", "2026-11-02T00:00:00Z", new_status="done"),
             "data": {"org_id": "o2", "task_id": "t9", "new_status": "done"}}
    silent = event("x", "task.updated", "2026-11-02T00:00:00Z", changes={"title": "y"})
    grouped = domain.entries_by_org([HISTORY[0], other, silent, HISTORY[2], HISTORY[3]])
    assert grouped == {"o1": {"t1": log_of([HISTORY[0], HISTORY[2], HISTORY[3]])},
                       "o2": domain.entries(other)}
    assert domain.derive(grouped["o1"]["t1"])["status"] == "done"
    assert domain.entries_by_org([silent]) == {}
