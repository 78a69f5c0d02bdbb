"""Recurring tasks and time tracking against real RabbitMQ, Redis and SecantusDB: the
next occurrence is created exactly once when two task-service replicas race (a
completion on one, the overdue sweep on the other), and the HTTP routes for rules,
estimates, time entries, timers and the stats' time totals."""
from datetime import datetime, timedelta, timezone

import eventlet
import pytest

from gateway_svc.service import GatewayService
from task_svc import recurrence
from task_svc.service import TaskService
from task_svc.store import TaskStore
from team_svc.service import TeamService
from tests.helpers import wait_until
from tests.integration.tasks_mesh import (
    SEEN,
    ZONES,
    FakeEmployees,
    FakeOrganizations,
    Listener,
    call,
    database,
    make_org,
    problem,
    seen,
    start_api,
)

SERIES = 12


def test_two_replicas_create_each_next_occurrence_exactly_once(container_factory, make_config):
    config = make_config(TASK_OVERDUE_INTERVAL=0.05)  # both replicas sweep all the time
    SEEN.clear()
    for cls in (FakeEmployees, FakeOrganizations, Listener):
        container_factory(cls, config).start()
    replicas = [container_factory(TaskService, config), container_factory(TaskService, config)]
    org, p = make_org({"bob": "member"})
    bob = p["bob"]
    db = database(config, "tasks")
    due = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)  # passed already
    docs = []
    for i in range(SERIES):
        doc = TaskStore.task_document(org, {"title": f"standup {i}", "priority": "low", "due_at": due},
                                      bob, bob)
        doc.update(status="in_progress", recurrence=recurrence.start(
            "FREQ=DAILY", due, "Europe/London", None, doc["_id"]))
        docs.append(doc)
    db.tasks.insert_many(docs)
    for replica in replicas:
        replica.start()
    # while the sweeps find them passed, complete every one, alternating replicas
    pool = eventlet.GreenPool(SERIES)
    for i, doc in enumerate(docs):
        pool.spawn(call, replicas[i % 2], "change_status", bob["user_id"], org, doc["_id"],
                   {"status": "done"})
    pool.waitall()

    nexts = wait_until(lambda: len(db.tasks.find({"recurrence.index": 1}).to_list()) == SERIES
                       and db.tasks.find({"recurrence.index": 1}).to_list(), timeout=20,
                       what="every next occurrence")
    assert sorted(t["recurrence"]["previous_task_id"] for t in nexts) == sorted(d["_id"] for d in docs)
    assert {t["_id"] for t in nexts} == {recurrence.occurrence_id(d["_id"], 1) for d in docs}
    tomorrow = (due + timedelta(days=1)).astimezone(timezone.utc)
    assert all(t["due_at"] >= tomorrow - timedelta(hours=1) and t["status"] == "todo" for t in nexts)
    wait_until(lambda: len(seen("task.recurred")) >= SERIES, what="task.recurred")
    assert call(replicas[0], "health")["ok"]  # one more round trip: a late duplicate is in by now
    recurred = [e["data"]["task_id"] for e in seen("task.recurred")]
    assert sorted(recurred) == sorted(t["_id"] for t in nexts)  # once each
    created = [e["data"]["task_id"] for e in seen("task.created")]
    assert sorted(created) == sorted(recurred)

    # the link is lost (a crash after the insert): completing again still makes no second one
    first = docs[0]["_id"]
    db.tasks.update_one({"_id": first}, {"$set": {"recurrence.next_task_id": None}})
    for replica, status in ((replicas[0], "in_progress"), (replicas[1], "done")):
        call(replica, "change_status", bob["user_id"], org, first, {"status": status})
    assert db.tasks.count_documents({"recurrence.series_id": first}) == 2
    assert db.tasks.count_documents({"recurrence.index": 2}) == 0
    assert call(replicas[1], "health")["ok"]
    assert len(seen("task.recurred")) == SERIES


@pytest.fixture
def api(container_factory, make_config, tmp_path):
    config = make_config(TASK_FILES_DIR=str(tmp_path / "files"))
    base, as_user = start_api(container_factory, config, (
        FakeEmployees, FakeOrganizations, Listener, TeamService, TaskService, GatewayService))
    return base, as_user, config


def test_a_weekly_task_in_the_orgs_zone_and_its_next_occurrence(api):
    base, as_user, config = api
    org, p = make_org({"boss": "manager", "bob": "member"})
    ZONES[org] = "Europe/London"
    boss, bob = as_user(p["boss"]), as_user(p["bob"])
    tasks = f"{base}/orgs/{org}/tasks"

    for rule in ("FREQ=SECONDLY", "FREQ=DAILY;COUNT=100000", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"):
        body = problem(boss.post(tasks, json={"title": "x", "due_at": "2040-03-19T09:00:00Z",
                                             "recurrence": {"rule": rule}}), 422)
        assert "recurrence" in body["errors"], body
    assert "recurrence" in problem(boss.post(tasks, json={
        "title": "x", "recurrence": {"rule": "FREQ=WEEKLY"}}), 422)["errors"]  # no due date

    made = boss.post(tasks, json={"title": "Weekly report", "assignee_id": p["bob"]["employee_id"],
                                  "due_at": "2040-03-19T09:00:00Z", "estimate_minutes": 45,
                                  "recurrence": {"rule": "FREQ=WEEKLY;BYDAY=MO"}})
    assert made.status_code == 201, made.text
    task = made.json()
    assert task["recurrence"] == {"rule": "FREQ=WEEKLY;BYDAY=MO", "timezone": "Europe/London",
                                  "series_id": task["task_id"], "index": 0,
                                  "previous_task_id": None, "next_task_id": None}
    assert (task["estimate_minutes"], task["time_spent_minutes"], task["time_remaining_minutes"]) == \
        (45, 0, 45)
    url = f"{tasks}/{task['task_id']}"
    assert bob.post(f"{url}/status", json={"status": "in_progress"}).status_code == 200
    done = bob.post(f"{url}/status", json={"status": "done"}).json()
    nid = done["recurrence"]["next_task_id"]
    assert nid and bob.get(url).json()["recurrence"]["next_task_id"] == nid
    nxt = bob.get(f"{tasks}/{nid}").json()
    assert nxt["due_at"] == "2040-03-26T08:00:00Z"  # Monday 09:00 in London, now on summer time
    assert (nxt["status"], nxt["assignee_id"], nxt["estimate_minutes"]) == \
        ("todo", p["bob"]["employee_id"], 45)
    assert nxt["recurrence"]["previous_task_id"] == task["task_id"]
    assert nxt["recurrence"]["index"] == 1
    history = bob.get(f"{url}/history").json()["items"]
    assert ("recurrence.next_task_id", None, nid) in [(h["field"], h["old"], h["new"]) for h in history]

    stopped = bob.patch(f"{tasks}/{nid}", json={"recurrence": None})
    assert stopped.status_code == 200 and stopped.json()["recurrence"] is None
    assert "due_at" in problem(boss.patch(url, json={"due_at": None}), 422)["errors"]


def test_time_is_logged_by_hand_and_by_timer_and_totalled_in_stats(api):
    base, as_user, config = api
    org, p = make_org({"boss": "manager", "bob": "member", "ann": "member"})
    boss, bob, ann = as_user(p["boss"]), as_user(p["bob"]), as_user(p["ann"])
    tasks = f"{base}/orgs/{org}/tasks"
    team = boss.post(f"{base}/orgs/{org}/teams", json={"name": "Ops"}).json()["team_id"]
    task = boss.post(tasks, json={"title": "Migrate", "assignee_id": p["bob"]["employee_id"],
                                  "team_id": team, "estimate_minutes": 120}).json()
    url = f"{tasks}/{task['task_id']}"

    logged = bob.post(f"{url}/time", json={"minutes": 90, "note": "schema"})
    assert logged.status_code == 201, logged.text
    assert (logged.json()["minutes"], logged.json()["source"]) == (90, "logged")
    for bad in ({"minutes": 0}, {"minutes": 100000}, {"minutes": "10"}, {},
                {"minutes": 5, "started_at": "2999-01-01T00:00:00Z"}):
        assert "errors" in problem(bob.post(f"{url}/time", json=bad), 422)
    problem(ann.post(f"{url}/time", json={"minutes": 5}), 403)  # not hers to change

    assert bob.post(f"{url}/time/start").status_code == 201
    problem(bob.post(f"{url}/time/start"), 409)
    stop = bob.post(f"{url}/time/stop")
    assert stop.status_code == 200 and stop.json()["minutes"] == 1 and stop.json()["source"] == "timer"
    problem(bob.post(f"{url}/time/stop"), 409)

    entries = bob.get(f"{url}/time").json()
    assert [e["minutes"] for e in entries["items"]] == [90, 1] and entries["next_cursor"] is None
    now = bob.get(url).json()
    assert (now["time_spent_minutes"], now["time_remaining_minutes"]) == (91, 29)
    stats = boss.get(f"{tasks}/stats").json()["time"]
    assert stats["spent_minutes"] == 91 and stats["estimate_minutes"] == 120
    assert stats["per_task"] == [{"task_id": task["task_id"], "minutes": 91}]
    assert stats["per_assignee"] == [{"assignee_id": p["bob"]["employee_id"], "minutes": 91}]
    assert stats["per_team"] == [{"team_id": team, "minutes": 91}]
    logged_events = wait_until(lambda: len(seen("task.time.logged", task_id=task["task_id"])) == 2
                               and seen("task.time.logged", task_id=task["task_id"]))
    assert sorted(e["data"]["minutes"] for e in logged_events) == [1, 90]
