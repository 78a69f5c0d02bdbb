"""The analytics service against real RabbitMQ, Redis and SecantusDB: task events
published on the tasks exchange become figures per period in the org's time zone
(read from the organizations service, then from its settings events); a replayed
event, an event whose ledger entry is gone, and events out of order change
nothing twice; tenancy and bad input are refused."""
from __future__ import annotations

import uuid

import pytest
from marshmallow import ValidationError
from nameko.standalone.events import event_dispatcher

from analytics_svc.service import AnalyticsService
from shared.errors import NotFound, ValidationFailed
from shared.events import make_envelope, utcnow_iso
from shared.rpc import rpc
from tests.helpers import events_handled, wait_until
from tests.integration.tasks_mesh import FakeEmployees, call, database, make_org

ZONES: dict[str, dict] = {}  # org_id -> settings the fake organizations service answers
ASKED: list[str] = []


class FakeOrganizations:
    name = "organizations"

    @rpc
    def get_org(self, org_id):
        ASKED.append(org_id)
        return {"org_id": org_id, "settings": ZONES.get(org_id, {"timezone": "UTC"})}


@pytest.fixture
def analytics(container_factory, config):
    for cls in (FakeEmployees, FakeOrganizations):
        container_factory(cls, config).start()
    service = container_factory(AnalyticsService, config)
    service.start()
    return config, service


def send(config, producer, event_type, data, at, event_id=None) -> dict:
    envelope = make_envelope(event_type, data, producer=producer, org_id=data.get("org_id"),
                             event_id=event_id)
    envelope["occurred_at"] = at
    event_dispatcher(config)(producer, event_type, envelope)
    return envelope


def resend(config, envelope) -> None:
    event_dispatcher(config)(envelope["producer"], envelope["event_type"], envelope)


def handled(config, event_id) -> bool:
    """An event of a handler with a ledger (organization settings) handled."""
    return database(config, "analytics").handled_events.count_documents(
        {"_id": {"$regex": f":{event_id}$"}, "state": "done"}) > 0


def wait_handled(since: float, count: int, what: str = "the events handled") -> None:
    """``count`` more events handled than ``since`` (``events_handled``): the task
    handlers are idempotent and keep no ledger."""
    wait_until(lambda: events_handled("analytics") >= since + count, timeout=15, what=what)


def task_events(config, org, task, *, created, started=None, done=None, assignee=None,
                team=None, due=None) -> list[dict]:
    out = [send(config, "tasks", "task.created", {
        "org_id": org, "task_id": task, "title": "T", "assignee_id": assignee, "team_id": team,
        "status": "todo", "due_at": due}, created)]
    if started:
        out.append(send(config, "tasks", "task.status.changed", {
            "org_id": org, "task_id": task, "old_status": "todo", "new_status": "in_progress"},
            started))
    if done:
        out.append(send(config, "tasks", "task.status.changed", {
            "org_id": org, "task_id": task, "old_status": "in_progress", "new_status": "done"},
            done))
    return out


WEEK = {"period": "day", "from": "2026-11-01", "to": "2026-11-07"}


def test_events_become_figures_per_local_day_and_replays_change_nothing(analytics):
    config, svc = analytics
    org, p = make_org({"boss": "manager", "ann": "member"})
    ZONES[org] = {"timezone": "America/New_York", "week_start": "sun"}
    ann, boss = p["ann"]["employee_id"], p["boss"]["user_id"]
    mark = events_handled("analytics")
    sent = []
    # done at 03:00 UTC on the 3rd: still the 2nd in New York
    sent += task_events(config, org, "t1", created="2026-11-01T15:00:00.000000Z",
                        started="2026-11-02T15:00:00.000000Z", done="2026-11-03T03:00:00.000000Z",
                        assignee=ann, team="team-a")
    sent += task_events(config, org, "t2", created="2026-11-02T15:00:00.000000Z",
                        assignee=ann, due="2026-11-04T12:00:00Z")
    # t3: its completion arrives before its creation (out of order)
    sent += list(reversed(task_events(config, org, "t3", created="2026-11-03T15:00:00.000000Z",
                                      started="2026-11-03T16:00:00.000000Z",
                                      done="2026-11-05T15:00:00.000000Z")))
    wait_handled(mark, len(sent))

    summary = call(svc, "summary", boss, org, WEEK)
    assert summary["timezone"] == "America/New_York"
    by_day = {row["start"]: (row["created"], row["completed"], row["overdue"])
              for row in summary["periods"]}
    assert by_day["2026-11-01"] == (1, 0, 0)
    assert by_day["2026-11-02"] == (1, 1, 0)
    assert by_day["2026-11-03"] == (1, 0, 0)
    assert by_day["2026-11-04"] == (0, 0, 1)  # t2, due and not done
    assert by_day["2026-11-05"] == (0, 1, 0)
    assert summary["totals"] == {"created": 3, "completed": 2, "overdue": 1}

    # replays: the same events again, twice (redeliveries, an outbox relaying twice,
    # dead letters sent again): handled again, the figures do not move
    mark = events_handled("analytics")
    for envelope in sent + sent:
        resend(config, envelope)
    wait_handled(mark, 2 * len(sent), what="the replays handled")
    assert call(svc, "summary", boss, org, WEEK)["totals"] == summary["totals"]
    facts = database(config, "analytics").tasks.find_one({"_id": "t1"})
    assert len(facts["log"]) == 3  # one entry per event id, however often it came

    times = call(svc, "times", boss, org, WEEK)
    assert times["lead_time"]["count"] == 2
    lead_t1, lead_t3 = 36 * 3600.0, 48 * 3600.0
    assert times["lead_time"]["p50"] == (lead_t1 + lead_t3) / 2
    assert times["cycle_time"]["p95"] == pytest.approx(12 * 3600 + 0.95 * (47 - 12) * 3600)

    teams = call(svc, "throughput", boss, org, {**WEEK, "by": "team"})
    assert [(row["id"], row["completed"]) for row in teams["items"]] == [("team-a", 1), (None, 1)]
    people = call(svc, "throughput", boss, org, {**WEEK, "by": "assignee"})
    assert {row["id"]: row["per_period"] for row in people["items"]}[ann] == [0, 1, 0, 0, 0, 0, 0]

    load = call(svc, "workload", boss, org, {})
    assert load["items"] == [{"employee_id": ann, "open": 1, "todo": 1, "in_progress": 0,
                              "overdue": 1}]
    assert ASKED.count(org) == 1  # the zone was asked for once, then kept


def test_a_zone_change_moves_the_figures_and_the_cache_follows(analytics):
    config, svc = analytics
    org, p = make_org({"boss": "owner"})
    boss = p["boss"]["user_id"]
    mark = events_handled("analytics")
    sent = task_events(config, org, "z1", created="2026-11-02T02:00:00.000000Z",
                       started="2026-11-02T02:30:00.000000Z", done="2026-11-02T03:00:00.000000Z")
    wait_handled(mark, len(sent))
    utc = call(svc, "summary", boss, org, WEEK)  # cached now
    assert [r["start"] for r in utc["periods"] if r["completed"]] == ["2026-11-02"]

    settings = send(config, "organizations", "organization.settings.updated", {
        "org_id": org, "settings": {"timezone": "America/Los_Angeles"}}, utcnow_iso())
    wait_until(lambda: handled(config, settings["event_id"]), timeout=15, what="the settings")
    moved = call(svc, "summary", boss, org, WEEK)
    assert moved["timezone"] == "America/Los_Angeles"
    assert [r["start"] for r in moved["periods"] if r["completed"]] == ["2026-11-01"]

    # an older settings event (a replay of last month's) does not win over the newer one
    old = send(config, "organizations", "organization.settings.updated", {
        "org_id": org, "settings": {"timezone": "Asia/Tokyo"}}, "2026-11-01T00:00:00.000000Z")
    wait_until(lambda: handled(config, old["event_id"]), timeout=15, what="the old settings")
    assert call(svc, "summary", boss, org, WEEK)["timezone"] == "America/Los_Angeles"


def test_reopened_reassigned_and_deleted_tasks(analytics):
    config, svc = analytics
    org, p = make_org({"boss": "admin", "ann": "member", "bob": "member"})
    boss, ann, bob = p["boss"]["user_id"], p["ann"]["employee_id"], p["bob"]["employee_id"]
    mark = events_handled("analytics")
    sent = task_events(config, org, "r1", created="2026-11-01T10:00:00.000000Z",
                       started="2026-11-01T11:00:00.000000Z", done="2026-11-01T12:00:00.000000Z",
                       assignee=ann)
    sent.append(send(config, "tasks", "task.status.changed", {  # reopened
        "org_id": org, "task_id": "r1", "old_status": "done", "new_status": "in_progress"},
        "2026-11-02T10:00:00.000000Z"))
    sent.append(send(config, "tasks", "task.reassigned", {
        "org_id": org, "task_id": "r1", "old_assignee_id": ann, "new_assignee_id": bob},
        "2026-11-02T11:00:00.000000Z"))
    sent += task_events(config, org, "r2", created="2026-11-01T10:00:00.000000Z", assignee=ann)
    sent.append(send(config, "tasks", "task.deleted", {
        "org_id": org, "task_id": "r2", "assignee_id": ann, "status": "todo"},
        "2026-11-02T10:00:00.000000Z"))
    wait_handled(mark, len(sent))
    summary = call(svc, "summary", boss, org, WEEK)
    assert summary["totals"] == {"created": 1, "completed": 0, "overdue": 0}  # r2 deleted
    load = call(svc, "workload", boss, org, {})
    assert load["items"] == [{"employee_id": bob, "open": 1, "todo": 0, "in_progress": 1,
                              "overdue": 0}]


def test_bulk_chunks_count_each_task_once(analytics):
    config, svc = analytics
    org, p = make_org({"boss": "manager", "ann": "member", "bob": "member"})
    boss, ann, bob = p["boss"]["user_id"], p["ann"]["employee_id"], p["bob"]["employee_id"]
    job = uuid.uuid4().hex[:8]
    mark = events_handled("analytics")
    chunk = send(config, "tasks", "task.bulk.assigned", {
        "org_id": org, "job_id": job, "chunk": 0, "title": "Read", "team_id": "team-b",
        "due_at": None, "priority": "medium",
        "tasks": [{"task_id": f"{job}-a", "assignee_id": ann, "assignee_user_id": "u1"},
                  {"task_id": f"{job}-b", "assignee_id": bob, "assignee_user_id": "u2"}]},
        "2026-11-03T10:00:00.000000Z", event_id=f"task.bulk.assigned:{job}:0")
    wait_handled(mark, 1, what="the chunk")
    resend(config, chunk)  # the tasks service re-runs a chunk with the same event id
    wait_handled(mark, 2, what="the re-run")
    assert call(svc, "summary", boss, org, WEEK)["totals"]["created"] == 2
    assert sorted((r["employee_id"], r["todo"]) for r in call(svc, "workload", boss, org, {})["items"]) \
        == sorted([(ann, 1), (bob, 1)])


def test_tenancy_and_bad_input_are_refused(analytics):
    config, svc = analytics
    org, p = make_org({"boss": "owner"})
    _, q = make_org({"outsider": "owner"})
    boss = p["boss"]["user_id"]
    with pytest.raises(NotFound):
        call(svc, "summary", q["outsider"]["user_id"], org, {})
    with pytest.raises(NotFound):
        call(svc, "workload", q["outsider"]["user_id"], org, {})
    for bad in ({"period": "year"}, {"from": "yesterday"}, {"from": "2026-11-05", "to": "2026-11-01"},
                {"period": "day", "from": "2020-01-01", "to": "2026-01-01"}, {"nope": "1"}):
        # (through RPC a marshmallow error is a 422 too: shared.rpc.as_app_error)
        with pytest.raises((ValidationFailed, ValidationError)):
            call(svc, "summary", boss, org, bad)
    with pytest.raises((ValidationFailed, ValidationError)):
        call(svc, "throughput", boss, org, {"by": "planet"})
    default = call(svc, "summary", boss, org, {})  # the last 12 weeks, to this one
    assert default["period"] == "week" and len(default["periods"]) == 12



def test_writers_racing_on_the_same_tasks_keep_every_entry(config):
    """Eight writers (two replicas' batches) record events of the same five tasks at
    once, from the tasks' first events on: the inserts and the writes that lose
    a race are read and written again, so every log holds all 32 entries and
    the facts are those of the whole log (the latest event: done)."""
    import eventlet

    from analytics_svc import domain
    from analytics_svc.store import AnalyticsStore

    store = AnalyticsStore(database(config, "analytics"))
    store.ensure_indexes()
    org, tasks = f"org-{uuid.uuid4().hex[:6]}", [f"t{i}" for i in range(5)]

    def writer(n):
        for k in range(4):
            status = "done" if (n, k) == (7, 3) else "in_progress"
            batch = [{"event_id": f"w{n}-{k}-{t}", "event_type": "task.status.changed",
                      "occurred_at": f"2026-11-0{k + 1}T1{n}:00:00.000000Z",
                      "data": {"org_id": org, "task_id": t, "new_status": status}}
                     for t in tasks]
            store.record(org, domain.entries_by_org(batch)[org])

    pool = eventlet.GreenPool()
    for n in range(8):
        pool.spawn(writer, n)
    pool.waitall()
    for doc in store.tasks.find({"org_id": org}):
        assert len(doc["log"]) == 32 and len({e["e"] for e in doc["log"]}) == 32
        assert doc["status"] == "done" and doc["done_at"] is not None
        assert {k: doc[k] for k in domain.derive(doc["log"])} == domain.derive(doc["log"])
    assert store.tasks.count_documents({"org_id": org}) == 5
