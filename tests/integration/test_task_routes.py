"""The team and task routes of the gateway on a real socket."""
import pytest
import requests

from gateway_svc.service import GatewayService
from shared.redis import RedisTools, make_client

ROUTES = [
    ("POST", "/orgs/o1/teams"), ("GET", "/orgs/o1/teams"), ("GET", "/orgs/o1/teams/t1"),
    ("PATCH", "/orgs/o1/teams/t1"), ("DELETE", "/orgs/o1/teams/t1"),
    ("POST", "/orgs/o1/teams/t1/members"), ("DELETE", "/orgs/o1/teams/t1/members/e1"),
    ("PUT", "/orgs/o1/teams/t1/leader"), ("GET", "/orgs/o1/teams/t1/permissions"),
    ("PUT", "/orgs/o1/teams/t1/permissions"),
    ("POST", "/orgs/o1/tasks"), ("GET", "/orgs/o1/tasks"), ("POST", "/orgs/o1/tasks/bulk"),
    ("GET", "/orgs/o1/tasks/bulk/j1"), ("GET", "/me/tasks"), ("GET", "/orgs/o1/tasks/stats"),
    ("GET", "/orgs/o1/leaderboard"), ("GET", "/orgs/o1/tasks/k1"), ("PATCH", "/orgs/o1/tasks/k1"),
    ("DELETE", "/orgs/o1/tasks/k1"), ("POST", "/orgs/o1/tasks/k1/assign"),
    ("POST", "/orgs/o1/tasks/k1/status"), ("POST", "/orgs/o1/tasks/k1/comments"),
    ("GET", "/orgs/o1/tasks/k1/comments"), ("POST", "/orgs/o1/tasks/k1/attachments"),
    ("GET", "/orgs/o1/tasks/k1/attachments"), ("GET", "/orgs/o1/tasks/k1/attachments/a1"),
    ("GET", "/orgs/o1/tasks/k1/history"),
]


@pytest.fixture
def gateway(container_factory, config):
    container_factory(GatewayService, config).start()
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"


def test_every_team_and_task_route_refuses_a_caller_without_a_token(gateway):
    for method, path in ROUTES:
        response = requests.request(method, f"{gateway}{path}", json={"title": "x"})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"
    bad = requests.get(f"{gateway}/orgs/o1/tasks", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401


# --- with real access tokens (tests/tokens.py) ------------------------------------

from task_svc.service import TaskService  # noqa: E402
from team_svc.service import TeamService  # noqa: E402
from tests.helpers import wait_until  # noqa: E402
from tests.integration.tasks_mesh import (  # noqa: E402
    FakeEmployees,
    FakeOrganizations,
    Listener,
    database,
    make_org,
    problem,
    seen,
    start_api,
)


@pytest.fixture
def api(container_factory, make_config, tmp_path):
    config = make_config(TASK_FILES_DIR=str(tmp_path / "files"), TASK_ATTACHMENT_MAX_BYTES=1000,
                         ATTACHMENT_MAX_BODY_BYTES=5000)
    base, as_user = start_api(container_factory, config, (
        FakeEmployees, FakeOrganizations, Listener, TeamService, TaskService, GatewayService))
    return config, base, as_user


def test_the_routes_answer_owners_members_and_outsiders_as_they_should(api):
    config, base, as_user = api
    org, p = make_org({"boss": "admin", "ann": "member", "bob": "member"})
    _, q = make_org({"outsider": "owner"})
    boss, ann, out = as_user(p["boss"]), as_user(p["ann"]), as_user(q["outsider"])
    o = f"{base}/orgs/{org}"
    team = boss.post(f"{o}/teams", json={"name": "Core"})
    assert team.status_code == 201, team.text
    t = f"{o}/teams/{team.json()['team_id']}"
    assert boss.post(f"{t}/members", json={"employee_id": p["bob"]["employee_id"]}).status_code == 201
    task = boss.post(f"{o}/tasks", json={"title": "x", "assignee_id": p["bob"]["employee_id"]})
    assert task.status_code == 201, task.text
    k = f"{o}/tasks/{task.json()['task_id']}"
    bulk = boss.post(f"{o}/tasks/bulk", json={"assignee_ids": [p["ann"]["employee_id"]],
                                              "task": {"title": "b"}})
    assert bulk.status_code == 202 and bulk.headers["Location"] == bulk.json()["status_url"]
    upload = boss.post(f"{k}/attachments", files={"file": ("a.txt", b"hello", "text/plain")})
    assert upload.status_code == 201, upload.text
    att = f"{k}/attachments/{upload.json()['attachment_id']}"
    bob = p["bob"]["employee_id"]
    routes = [  # method, url, json body, a plain member is refused
        ("POST", f"{o}/teams", {"name": "N"}, True), ("GET", f"{o}/teams", None, False),
        ("GET", t, None, False), ("PATCH", t, {"name": "M"}, True),
        ("POST", f"{t}/members", {"employee_id": p["ann"]["employee_id"]}, True),
        ("DELETE", f"{t}/members/{bob}", None, True), ("PUT", f"{t}/leader", {"employee_id": bob}, True),
        ("GET", f"{t}/permissions", None, False), ("PUT", f"{t}/permissions", {"permissions": {}}, True),
        ("POST", f"{o}/tasks", {"title": "y", "assignee_id": bob}, True),
        ("GET", f"{o}/tasks", None, False),
        ("POST", f"{o}/tasks/bulk", {"assignee_ids": [bob], "task": {"title": "b"}}, True),
        ("GET", f"{base}{bulk.json()['status_url'][len('/api/v1'):]}", None, False),
        ("GET", f"{o}/tasks/stats", None, False), ("GET", f"{o}/leaderboard", None, False),
        ("GET", k, None, False), ("PATCH", k, {"title": "z"}, True),
        ("POST", f"{k}/assign", {"assignee_id": None}, True),
        ("POST", f"{k}/status", {"status": "in_progress"}, True),
        ("POST", f"{k}/comments", {"body": "hi"}, False), ("GET", f"{k}/comments", None, False),
        ("GET", f"{k}/attachments", None, False), ("GET", att, None, False),
        ("GET", f"{k}/history", None, False), ("DELETE", k, None, True), ("DELETE", t, None, True),
    ]
    for method, url, body, refused in routes:
        problem(out.request(method, url, json=body), 404)
        answer = ann.request(method, url, json=body)
        if refused:
            problem(answer, 403)
        else:
            assert answer.status_code in (200, 201), (method, url, answer.text)
    assert boss.get(k).json()["title"] == "x"  # nothing changed by the refused calls
    assert boss.get(att).content == b"hello"
    assert out.get(f"{base}/me/tasks").json() == {"items": [], "next_cursor": None}
    mine = as_user(p["bob"]).get(f"{base}/me/tasks").json()["items"]
    assert [m["task_id"] for m in mine] == [task.json()["task_id"]]


def test_bad_input_gets_clear_4xx_and_stores_nothing(api):
    config, base, as_user = api
    org, p = make_org({"boss": "manager"})
    _, q = make_org({"stranger": "member"})
    boss = as_user(p["boss"])
    o = f"{base}/orgs/{org}"
    problem(boss.post(f"{o}/tasks", data=b"{not json", headers={"Content-Type": "application/json"}), 400)
    problem(boss.post(f"{o}/tasks", data=b"title=x", headers={"Content-Type": "text/plain"}), 415)
    problem(boss.post(f"{o}/tasks", json=["a list"]), 400)
    for body, field in [({"title": {"$gt": ""}}, "title"), ({"title": "x", "priority": "asap"}, "priority"),
                        ({"title": "x", "due_at": "31/12/2030"}, "due_at"),
                        ({"title": "x", "assignee_id": q["stranger"]["employee_id"]}, "assignee_id")]:
        assert field in problem(boss.post(f"{o}/tasks", json=body), 422)["errors"]
    too_many = boss.post(f"{o}/tasks/bulk", json={"assignee_ids": [f"e{i}" for i in range(10_001)],
                                                  "task": {"title": "x"}})
    assert "assignee_ids" in problem(too_many, 422)["errors"]
    problem(boss.get(f"{o}/tasks", params={"limit": "many"}), 422)
    problem(boss.get(f"{o}/tasks", params={"cursor": "forged"}), 422)
    task = boss.post(f"{o}/tasks", json={"title": "x"}).json()
    k = f"{o}/tasks/{task['task_id']}"
    moved = problem(boss.post(f"{k}/status", json={"status": "done"}), 409)
    assert moved["allowed"] == ["in_progress"] and moved["current"] == "todo"
    problem(boss.post(f"{k}/status", json={"status": "finished"}), 422)
    problem(boss.post(f"{k}/attachments", files={"file": ("big.bin", b"x" * 3000)}), 413)  # tasks' limit
    problem(boss.post(f"{k}/attachments", files={"file": ("big.bin", b"x" * 6000)}), 413)  # gateway's
    for name in ("../../etc/passwd", "dir/a.txt", "dir\\a.txt"):
        problem(boss.post(f"{k}/attachments", files={"file": (name, b"x")}), 422)
    problem(boss.get(f"{k}/attachments/nope"), 404)
    assert boss.get(f"{k}/attachments").json()["items"] == []
    assert [h["field"] for h in boss.get(f"{k}/history").json()["items"]] == ["created"]
    db = database(config, "tasks")
    assert db.tasks.count_documents({}) == 1 and db.jobs.count_documents({}) == 0


def test_bulk_through_the_gateway_and_a_download_refused_to_a_foreign_user(api):
    config, base, as_user = api
    org, p = make_org({"boss": "manager", "a": "member", "b": "member"})
    _, q = make_org({"outsider": "owner"})
    boss = as_user(p["boss"])
    o = f"{base}/orgs/{org}"
    job = boss.post(f"{o}/tasks/bulk", json={"assignee_ids": [p["a"]["employee_id"], p["b"]["employee_id"],
                                                              "emp-nobody"], "task": {"title": "b"}})
    assert job.status_code == 202
    status = wait_until(lambda: (r := boss.get(f"{base}{job.json()['status_url'][len('/api/v1'):]}")
                                 .json())["status"] == "done" and r)
    assert (status["total"], status["done"], status["failed"]) == (3, 2, 1)
    listed = boss.get(f"{o}/tasks", params={"sort": "due"}).json()["items"]
    assert len(listed) == 2
    k = f"{o}/tasks/{listed[0]['task_id']}"
    pdf = b"%PDF-1.4 " + bytes(range(256))
    meta = boss.post(f"{k}/attachments", files={"file": ("r\u00e9sum\u00e9.pdf", pdf, "application/pdf")})
    assert meta.status_code == 201, meta.text
    url = f"{k}/attachments/{meta.json()['attachment_id']}"
    got = as_user(p["a"]).get(url)
    assert got.status_code == 200 and got.content == pdf
    assert got.headers["Content-Type"] == "application/pdf"
    assert got.headers["Content-Disposition"] == "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
    problem(as_user(q["outsider"]).get(url), 404)


def test_deleting_a_team_shows_in_the_gateways_cached_task_list_at_once(api):
    config, base, as_user = api
    org, p = make_org({"boss": "admin"})
    boss = as_user(p["boss"])
    o = f"{base}/orgs/{org}"
    team = boss.post(f"{o}/teams", json={"name": "Short-lived"}).json()
    task = boss.post(f"{o}/tasks", json={"title": "x", "team_id": team["team_id"]}).json()
    listed = boss.get(f"{o}/tasks").json()["items"]  # now in the gateway's cache (60 s)
    assert [t["team_id"] for t in listed] == [team["team_id"]]
    assert boss.delete(f"{o}/teams/{team['team_id']}").status_code == 204
    wait_until(lambda: boss.get(f"{o}/tasks").json()["items"][0]["team_id"] is None, timeout=5,
               what="the cached list to show the task without its team")
    assert boss.get(f"{o}/tasks/{task['task_id']}").json()["team_id"] is None


def test_a_comment_keeps_the_gateways_cached_task_list_and_a_task_change_does_not(api):
    config, base, as_user = api
    org, p = make_org({"boss": "admin", "ann": "member"})
    boss, ann = as_user(p["boss"]), as_user(p["ann"])
    o = f"{base}/orgs/{org}"
    task = boss.post(f"{o}/tasks", json={"title": "before"}).json()
    k = f"{o}/tasks/{task['task_id']}"
    wait_until(lambda: seen("task.created", task_id=task["task_id"]), what="the create's events")

    def titles():
        return [t["title"] for t in boss.get(f"{o}/tasks").json()["items"]]
    assert titles() == ["before"]  # now in the gateway's cache (60 s)
    # behind the service's back, and out of its own cache: only the gateway's entry (the
    # answer with no call to the tasks service) still says "before"
    database(config, "tasks").tasks.update_one({"_id": task["task_id"]}, {"$set": {"title": "renamed"}})
    RedisTools(make_client(config), "tasks", 60).cache.invalidate_tags(f"org:{org}")
    for who in (boss, ann):  # a watcher's comment, then a newcomer's (who then watches)
        comment = who.post(f"{k}/comments", json={"body": "noted"})
        assert comment.status_code == 201, comment.text
        comment_id = comment.json()["comment_id"]
        wait_until(lambda: seen("task.comment.added", comment_id=comment_id),  # noqa: B023
                   what="the comment's events (sent after any version bump)")
        assert titles() == ["before"]
    watchers = {w["user_id"] for w in boss.get(f"{k}/watchers").json()["items"]}
    assert watchers == {p["boss"]["user_id"], p["ann"]["user_id"]}
    assert len(boss.get(f"{k}/comments").json()["items"]) == 2
    assert boss.post(f"{k}/status", json={"status": "in_progress"}).status_code == 200
    wait_until(lambda: [(t["title"], t["status"]) for t in boss.get(f"{o}/tasks").json()["items"]]
               == [("renamed", "in_progress")], timeout=5, what="the list after a task change")
