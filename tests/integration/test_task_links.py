"""Subtasks, dependencies and watchers: the tasks service against real RabbitMQ,
Redis and SecantusDB (a fake employees service), then the notifications service
beside it, then the gateway's routes over HTTP."""
import pytest
from marshmallow import ValidationError

from gateway_svc.service import GatewayService
from notify_svc.service import NotificationService
from shared.errors import Conflict, NotFound, ValidationFailed
from task_svc.service import TaskService
from tests.helpers import wait_until
from tests.integration.tasks_mesh import (
    SEEN,
    FakeEmployees,
    FakeOrganizations,
    Listener,
    call,
    dispatch,
    make_org,
    problem,
    seen,
    start_api,
)


@pytest.fixture
def tasks(container_factory, make_config):
    config = make_config(TASK_SUBTASK_DEPTH=2)
    SEEN.clear()
    for cls in (FakeEmployees, FakeOrganizations, Listener):
        container_factory(cls, config).start()
    container = container_factory(TaskService, config)
    container.start()
    return config, container


def fields_of(exc_info) -> dict:
    exc = exc_info.value
    return exc.errors if isinstance(exc, ValidationFailed) else exc.messages


def test_subtasks_show_progress_keep_the_depth_limit_and_make_no_cycles(tasks):
    _, svc = tasks
    org, p = make_org({"boss": "manager"})
    _, q = make_org({"other": "manager"})
    boss = p["boss"]["user_id"]

    def new(title, parent=None):
        return call(svc, "create_task", boss, org, {"title": title, "parent_id": parent})

    top = new("Launch")
    child = new("Write docs", top["task_id"])
    grandchild = new("API page", child["task_id"])
    assert child["parent_id"] == top["task_id"]
    assert call(svc, "get_task", boss, org, top["task_id"])["subtasks"] == {"total": 1, "done": 0}
    assert call(svc, "get_task", boss, org, child["task_id"])["subtasks"] == {"total": 1, "done": 0}

    with pytest.raises(Conflict) as deep:       # TASK_SUBTASK_DEPTH=2: a third level is refused
        new("Too deep", grandchild["task_id"])
    assert deep.value.extra == {"max_depth": 2, "depth": 3}
    with pytest.raises(Conflict) as cycle:      # the top under its own grandchild
        call(svc, "update_task", boss, org, top["task_id"], {"parent_id": grandchild["task_id"]})
    assert cycle.value.extra["cycle"][-1] == top["task_id"]
    with pytest.raises(Conflict):               # moving a subtree deeper than the limit
        side = new("Side", new("Side project")["task_id"])["task_id"]
        call(svc, "update_task", boss, org, child["task_id"], {"parent_id": side})
    foreign = call(svc, "create_task", q["other"]["user_id"], q["other"]["org_id"], {"title": "x"})
    for parent in (foreign["task_id"], "no-such-task"):
        with pytest.raises((ValidationFailed, ValidationError)) as bad:
            new("Smuggled", parent)
        assert "parent_id" in fields_of(bad)

    call(svc, "change_status", boss, org, grandchild["task_id"], {"status": "in_progress"})
    call(svc, "change_status", boss, org, grandchild["task_id"], {"status": "done"})
    assert call(svc, "get_task", boss, org, child["task_id"])["subtasks"] == {"total": 1, "done": 1}
    second = new("Record the demo", top["task_id"])
    page = call(svc, "list_subtasks", boss, org, top["task_id"], {"limit": 1})
    assert [t["task_id"] for t in page["items"]] == [child["task_id"]] and page["next_cursor"]
    rest = call(svc, "list_subtasks", boss, org, top["task_id"], {"cursor": page["next_cursor"]})
    assert [t["task_id"] for t in rest["items"]] == [second["task_id"]]

    moved = call(svc, "update_task", boss, org, second["task_id"], {"parent_id": None})
    assert moved["parent_id"] is None
    assert call(svc, "get_task", boss, org, top["task_id"])["subtasks"] == {"total": 1, "done": 0}
    history = call(svc, "task_history", boss, org, second["task_id"], {})["items"]
    assert (history[-1]["field"], history[-1]["old"], history[-1]["new"]) == \
        ("parent_id", top["task_id"], None)

    call(svc, "delete_task", boss, org, child["task_id"])   # its subtask becomes top-level
    assert call(svc, "get_task", boss, org, grandchild["task_id"])["parent_id"] is None
    assert call(svc, "get_task", boss, org, top["task_id"])["subtasks"] == {"total": 0, "done": 0}


def test_blocking_tasks_keep_a_task_from_done_and_links_make_no_cycles(tasks):
    _, svc = tasks
    org, p = make_org({"boss": "manager", "ann": "member"})
    _, q = make_org({"other": "manager"})
    boss, ann = p["boss"]["user_id"], p["ann"]["user_id"]
    a, b, c = (call(svc, "create_task", boss, org, {"title": t})["task_id"]
               for t in ("Freeze the API", "Ship the SDK", "Announce"))

    links = call(svc, "add_link", boss, org, a, {"type": "blocks", "task_id": b})
    assert [t["task_id"] for t in links["blocks"]] == [b] and links["blocked_by"] == []
    call(svc, "add_link", boss, org, c, {"type": "blocked_by", "task_id": b})   # b blocks c
    call(svc, "add_link", boss, org, a, {"type": "blocks", "task_id": b})       # a repeat
    seen_b = call(svc, "get_links", ann, org, b)                                # both directions
    assert ([t["task_id"] for t in seen_b["blocked_by"]], [t["task_id"] for t in seen_b["blocks"]]) \
        == ([a], [c])
    assert seen_b["blocked_by"][0] == {"task_id": a, "title": "Freeze the API", "status": "todo"}
    wait_until(lambda: len(seen("task.link.added")) == 2, what="one event per new link")
    assert len(seen("task.link.added", task_id=a, other_task_id=b, type="blocks")) == 1

    with pytest.raises(Conflict) as cycle:                  # c blocks a: a -> b -> c -> a
        call(svc, "add_link", boss, org, c, {"type": "blocks", "task_id": a})
    assert cycle.value.extra["cycle"] == [c, a, b, c]
    with pytest.raises(Conflict):                           # the two-task cycle, named from b
        call(svc, "add_link", boss, org, b, {"type": "blocks", "task_id": a})
    foreign = call(svc, "create_task", q["other"]["user_id"], q["other"]["org_id"], {"title": "x"})
    for body in ({"type": "blocks", "task_id": foreign["task_id"]}, {"type": "blocks", "task_id": b[:-1]},
                 {"type": "blocks", "task_id": b, "extra": 1}, {"type": "precedes", "task_id": b},
                 {"type": "blocks", "task_id": a}):
        with pytest.raises((ValidationFailed, ValidationError)):
            call(svc, "add_link", boss, org, a, body)
    with pytest.raises(NotFound):                           # a foreign task in the path
        call(svc, "get_links", boss, org, foreign["task_id"])
    with pytest.raises(Exception) as denied:                # a member may not change others' tasks
        call(svc, "add_link", ann, org, a, {"type": "blocks", "task_id": c})
    assert type(denied.value).__name__ == "Forbidden"

    call(svc, "change_status", boss, org, b, {"status": "in_progress"})
    with pytest.raises(Conflict) as blocked:
        call(svc, "change_status", boss, org, b, {"status": "done"})
    assert blocked.value.extra["blocked_by"] == [{"task_id": a, "title": "Freeze the API",
                                                  "status": "todo"}]
    assert call(svc, "get_task", boss, org, b)["status"] == "in_progress"
    for status in ("in_progress", "done"):
        call(svc, "change_status", boss, org, a, {"status": status})
    assert call(svc, "change_status", boss, org, b, {"status": "done"})["status"] == "done"

    call(svc, "remove_link", boss, org, c, b)               # from either end
    assert call(svc, "get_links", boss, org, b)["blocks"] == []
    with pytest.raises(NotFound):
        call(svc, "remove_link", boss, org, b, c)
    wait_until(lambda: seen("task.link.removed", task_id=c, other_task_id=b, type="blocked_by"))
    history = [(h["field"], h["old"], h["new"]) for h in call(svc, "task_history", boss, org, c, {})["items"]]
    assert history[1:] == [("blocked_by", None, b), ("blocked_by", b, None)]
    call(svc, "delete_task", boss, org, a)                  # a deleted task blocks nobody
    assert call(svc, "get_links", boss, org, b)["blocked_by"] == []


def test_watchers_are_added_on_their_own_and_may_come_and_go(tasks):
    config, svc = tasks
    org, p = make_org({"boss": "manager", "ann": "member", "bob": "member", "cat": "member"})
    boss, ann, bob, cat = (p[n]["user_id"] for n in ("boss", "ann", "bob", "cat"))
    task = call(svc, "create_task", boss, org, {"title": "Plan the offsite",
                                                "assignee_id": p["ann"]["employee_id"]})
    k = task["task_id"]

    def watchers():
        return sorted(w["user_id"] for w in call(svc, "list_watchers", bob, org, k)["items"])
    assert watchers() == sorted([boss, ann])
    call(svc, "add_comment", bob, org, k, {"body": "I can book the venue"})
    assert watchers() == sorted([boss, ann, bob])
    assert call(svc, "watch_task", cat, org, k) == {"task_id": k, "watching": True, "watchers": 4}
    call(svc, "watch_task", cat, org, k)                     # idempotent
    call(svc, "unwatch_task", ann, org, k)
    call(svc, "unwatch_task", ann, org, k)
    assert watchers() == sorted([boss, bob, cat])

    call(svc, "add_comment", boss, org, k, {"body": "Budget approved"})
    comment = wait_until(lambda: seen("task.comment.added", task_id=k, author_user_id=boss))[0]
    assert comment["data"]["watcher_user_ids"] == sorted([bob, cat])     # ann unwatched
    call(svc, "change_status", boss, org, k, {"status": "in_progress"})
    status = wait_until(lambda: seen("task.status.changed", task_id=k))[0]["data"]
    assert status["watcher_user_ids"] == sorted([boss, bob, cat])
    assert status["changed_by_user_id"] == boss

    call(svc, "assign_task", boss, org, k, {"assignee_id": p["ann"]["employee_id"]})  # no change
    call(svc, "assign_task", boss, org, k, {"assignee_id": p["cat"]["employee_id"]})
    call(svc, "assign_task", boss, org, k, {"assignee_id": p["ann"]["employee_id"]})  # back: watches
    assert ann in watchers()
    dispatch(config, "employees", "employee.removed", {
        "org_id": org, "employee_id": p["cat"]["employee_id"], "user_id": cat})
    wait_until(lambda: cat not in watchers(), what="a leaver watches nothing")
    with pytest.raises(NotFound):
        call(svc, "watch_task", make_org({"x": "owner"})[1]["x"]["user_id"], org, k)


def test_watchers_are_notified_of_status_changes_and_comments_save_the_actor(
        container_factory, make_config, tmp_path):
    config = make_config(MAIL_DIR=str(tmp_path / "mail"))
    svc, notify = (container_factory(cls, config) for cls in (TaskService, NotificationService))
    for container in (container_factory(FakeEmployees, config),
                      container_factory(FakeOrganizations, config), svc, notify):
        container.start()
    org, p = make_org({"boss": "manager", "ann": "member", "bob": "member"})
    boss, ann, bob = (p[n]["user_id"] for n in ("boss", "ann", "bob"))
    k = call(svc, "create_task", boss, org, {"title": "Renew the lease",
                                             "assignee_id": p["ann"]["employee_id"]})["task_id"]
    call(svc, "watch_task", bob, org, k)

    def kinds(user):
        return [n["kind"] for n in call(notify, "list_notifications", user, {})["items"]]
    call(svc, "change_status", ann, org, k, {"status": "in_progress"})
    wait_until(lambda: kinds(boss) == ["task_status"] and kinds(bob) == ["task_status"],
               what="the watchers' status notifications")
    call(svc, "unwatch_task", bob, org, k)
    call(svc, "add_comment", ann, org, k, {"body": "Signed"})
    wait_until(lambda: kinds(boss) == ["task_comment", "task_status"], what="the comment")
    assert kinds(ann) == ["task_assigned"]            # the actor hears of neither
    assert kinds(bob) == ["task_status"]              # unwatched before the comment


# --- the gateway --------------------------------------------------------------------------
def test_the_routes_link_watch_and_nest_tasks_over_http(container_factory, make_config):
    config = make_config(TASK_SUBTASK_DEPTH=2)
    base, as_user = start_api(container_factory, config, (
        FakeEmployees, FakeOrganizations, Listener, TaskService, GatewayService))
    org, p = make_org({"boss": "admin", "ann": "member"})
    _, q = make_org({"outsider": "owner"})
    boss, ann, out = as_user(p["boss"]), as_user(p["ann"]), as_user(q["outsider"])
    o = f"{base}/orgs/{org}/tasks"
    parent = boss.post(o, json={"title": "Quarter close"}).json()
    child = boss.post(o, json={"title": "Invoices", "parent_id": parent["task_id"]})
    assert child.status_code == 201 and child.json()["parent_id"] == parent["task_id"]
    got = boss.get(f"{o}/{parent['task_id']}").json()
    assert got["subtasks"] == {"total": 1, "done": 0}
    assert [t["task_id"] for t in boss.get(f"{o}/{parent['task_id']}/subtasks").json()["items"]] == \
        [child.json()["task_id"]]
    smuggled = boss.post(o, json={"title": "x", "parent_id": out.post(
        f"{base}/orgs/{q['outsider']['org_id']}/tasks", json={"title": "theirs"}).json()["task_id"]})
    assert "parent_id" in problem(smuggled, 422)["errors"]

    a, b = (boss.post(o, json={"title": t}).json()["task_id"] for t in ("Audit", "Report"))
    made = boss.post(f"{o}/{a}/links", json={"type": "blocks", "task_id": b})
    assert made.status_code == 201 and made.json()["blocks"][0]["task_id"] == b
    assert "cycle" in problem(boss.post(f"{o}/{b}/links", json={"type": "blocks", "task_id": a}), 409)
    assert problem(ann.post(f"{o}/{a}/links", json={"type": "blocks", "task_id": parent["task_id"]}),
                   403)
    assert "type" in problem(boss.post(f"{o}/{a}/links", json={"type": 3, "task_id": b}), 422)["errors"]
    assert boss.post(f"{o}/{b}/status", json={"status": "in_progress"}).status_code == 200
    refused = problem(boss.post(f"{o}/{b}/status", json={"status": "done"}), 409)
    assert refused["blocked_by"] == [{"task_id": a, "title": "Audit", "status": "todo"}]
    assert ann.get(f"{o}/{b}/links").json()["blocked_by"][0]["task_id"] == a
    assert boss.delete(f"{o}/{b}/links/{a}").status_code == 204
    problem(boss.delete(f"{o}/{b}/links/{a}"), 404)

    watching = ann.put(f"{o}/{a}/watchers/me")
    assert watching.status_code == 200 and watching.json()["watching"] is True
    assert p["ann"]["user_id"] in [w["user_id"] for w in boss.get(f"{o}/{a}/watchers").json()["items"]]
    assert ann.delete(f"{o}/{a}/watchers/me").status_code == 204
    assert [w["user_id"] for w in boss.get(f"{o}/{a}/watchers").json()["items"]] == [p["boss"]["user_id"]]
    for method, path in (("GET", f"{a}/links"), ("PUT", f"{a}/watchers/me"), ("GET", f"{a}/subtasks"),
                         ("POST", f"{a}/links"), ("DELETE", f"{a}/links/{b}"), ("GET", f"{a}/watchers")):
        problem(out.request(method, f"{o}/{path}", json={"type": "blocks", "task_id": b}), 404)
