"""Saved views and the CSV files through the gateway, on a real socket: a view
applied to the list (and never served to someone who may not see it), the
streamed exports, and the import with its dry run and its bulk job."""
import csv
import io

import pytest

from gateway_svc.service import GatewayService
from shared.pagination import page
from shared.rpc import rpc
from task_svc.service import TaskService
from task_svc.store import TaskStore
from team_svc.service import TeamService
from tests.helpers import wait_until
from tests.integration.tasks_mesh import (
    PEOPLE,
    FakeEmployees,
    FakeOrganizations,
    Listener,
    database,
    dispatch,
    make_org,
    problem,
    seen,
    start_api,
)


class Employees(FakeEmployees):
    """The shared fake, with the list the employee export pages through."""

    @rpc
    def list_employees(self, user_id, org_id, query):
        rows = sorted(({**p, "_id": p["employee_id"]} for p in PEOPLE.values()
                       if p["org_id"] == org_id), key=lambda p: p["_id"])  # one page: a few people
        return page(rows, int(query.get("limit", 50)),
                    lambda p: {k: v for k, v in p.items() if k != "_id"})


@pytest.fixture
def api(container_factory, make_config, tmp_path):
    config = make_config(TASK_FILES_DIR=str(tmp_path / "files"), TASK_IMPORT_MAX_BYTES=4000,
                         TASK_BULK_CHUNK=2)
    base, as_user = start_api(container_factory, config, (
        Employees, FakeOrganizations, Listener, TeamService, TaskService, GatewayService))
    return config, base, as_user


def csv_rows(response):
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_a_view_filters_the_list_for_those_who_may_see_it_and_404s_for_the_rest(api):
    config, base, as_user = api
    org, p = make_org({"boss": "admin", "ann": "member", "bob": "member"})
    _, q = make_org({"outsider": "owner"})
    boss, ann, bob, out = (as_user(x) for x in (p["boss"], p["ann"], p["bob"], q["outsider"]))
    o = f"{base}/orgs/{org}"
    team = boss.post(f"{o}/teams", json={"name": "Docs"}).json()
    PEOPLE[p["ann"]["employee_id"]]["teams"] = {team["team_id"]: "member"}
    for title, labels in (("notes", ["docs"]), ("blog", ["docs"]), ("deploy", ["ops"])):
        assert boss.post(f"{o}/tasks", json={"title": title, "labels": labels}).status_code == 201
    blog = next(t for t in boss.get(f"{o}/tasks").json()["items"] if t["title"] == "blog")
    assert boss.post(f"{o}/tasks/{blog['task_id']}/status",
                     json={"status": "in_progress"}).status_code == 200

    mine = ann.post(f"{o}/tasks/views", json={"name": "Docs to do",
                                              "filter": {"labels": "docs", "status": "todo"}})
    assert mine.status_code == 201, mine.text
    assert mine.json()["filter"] == {"labels": ["docs"], "status": "todo"}
    view_id = mine.json()["view_id"]
    titles = [t["title"] for t in ann.get(f"{o}/tasks", params={"view": view_id}).json()["items"]]
    assert titles == ["notes"]
    # an explicit parameter replaces the view's, the others stay
    override = ann.get(f"{o}/tasks", params={"view": view_id, "status": "in_progress"})
    assert [t["title"] for t in override.json()["items"]] == ["blog"]
    # right after ann's answer (the gateway caches lists): still not for bob or another org
    assert problem(bob.get(f"{o}/tasks", params={"view": view_id}), 404)["status"] == 404
    problem(bob.get(f"{o}/tasks/views/{view_id}"), 404)
    problem(out.get(f"{base}/orgs/{q['outsider']['org_id']}/tasks", params={"view": view_id}), 404)
    problem(boss.delete(f"{o}/tasks/views/{view_id}"), 404)  # private: not even an admin sees it

    shared = ann.post(f"{o}/tasks/views", json={"name": "Team docs", "filter": {"labels": ["docs"]},
                                                "visibility": "team", "team_id": team["team_id"]})
    assert shared.status_code == 201, shared.text
    problem(bob.get(f"{o}/tasks", params={"view": shared.json()["view_id"]}), 404)
    everyone = boss.post(f"{o}/tasks/views", json={"name": "Ops", "filter": {"labels": ["ops"]},
                                                   "visibility": "org"}).json()
    assert [t["title"] for t in bob.get(f"{o}/tasks", params={"view": everyone["view_id"]})
            .json()["items"]] == ["deploy"]
    assert [v["name"] for v in ann.get(f"{o}/tasks/views").json()["items"]] == \
        ["Docs to do", "Team docs", "Ops"]
    assert [v["name"] for v in bob.get(f"{o}/tasks/views").json()["items"]] == ["Ops"]
    problem(bob.delete(f"{o}/tasks/views/{everyone['view_id']}"), 403)
    renamed = boss.patch(f"{o}/tasks/views/{everyone['view_id']}", json={"name": "Ops work"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Ops work"
    assert boss.delete(f"{o}/tasks/views/{everyone['view_id']}").status_code == 204
    problem(bob.get(f"{o}/tasks", params={"view": everyone["view_id"]}), 404)


def test_a_bad_view_is_a_422_or_409_and_stores_nothing_more(api):
    config, base, as_user = api
    org, p = make_org({"ann": "member"})
    ann = as_user(p["ann"])
    o = f"{base}/orgs/{org}"
    for body, field in [({"name": "x", "filter": {"status": "someday"}}, "filter"),
                        ({"name": "x", "filter": {"cursor": "abc"}}, "filter"),
                        ({"name": "x", "visibility": "team"}, "team_id"),
                        ({"name": "x", "visibility": "team", "team_id": "no-such-team"}, None),
                        ({"filter": {}}, "name")]:
        refused = ann.post(f"{o}/tasks/views", json=body)
        if field is None:  # a team ann is not in (and that does not exist): 403
            problem(refused, 403)
        else:
            assert field in problem(refused, 422)["errors"], refused.text
    assert ann.post(f"{o}/tasks/views", json={"name": "Mine"}).status_code == 201
    problem(ann.post(f"{o}/tasks/views", json={"name": "Mine"}), 409)
    problem(ann.get(f"{o}/tasks", params={"view": "no-such-view"}), 404)
    assert database(config, "tasks").views.count_documents({}) == 1


def test_the_task_export_streams_every_page_of_a_view_and_quotes_formulas(api):
    config, base, as_user = api
    org, p = make_org({"boss": "manager"})
    boss = as_user(p["boss"])
    o = f"{base}/orgs/{org}"
    creator = {"employee_id": p["boss"]["employee_id"], "user_id": p["boss"]["user_id"]}
    docs = [TaskStore.task_document(org, {"title": f"task {i:03}", "priority": "low", "labels": ["bulk"]},
                                    creator, None) for i in range(450)]
    docs.append(TaskStore.task_document(org, {"title": "=HYPERLINK(\"http://evil\")", "priority": "high",
                                              "labels": []}, creator, None))
    database(config, "tasks").tasks.insert_many(docs)
    rows = csv_rows(boss.get(f"{o}/tasks.csv", params={"labels": "bulk", "limit": "3"}))
    assert len(rows) == 450 and len({r["task_id"] for r in rows}) == 450
    assert rows[0]["labels"] == "bulk" and rows[0]["priority"] == "low"
    view = boss.post(f"{o}/tasks/views", json={"name": "Urgent", "filter": {"priority": "high"}}).json()
    export = boss.get(f"{o}/tasks.csv", params={"view": view["view_id"]})
    assert 'filename="tasks-' in export.headers["Content-Disposition"]
    assert export.headers["Cache-Control"] == "no-store"
    assert [r["title"] for r in csv_rows(export)] == ["'=HYPERLINK(\"http://evil\")"]
    problem(boss.get(f"{o}/tasks.csv", params={"status": "someday"}), 422)
    problem(as_user(make_org({"x": "owner"})[1]["x"]).get(f"{o}/tasks.csv"), 404)


def test_the_employee_export_is_a_csv_of_the_list(api):
    config, base, as_user = api
    org, p = make_org({"boss": "owner", "ann": "member"})
    PEOPLE[p["ann"]["employee_id"]]["job_title"] = "@risky"
    rows = csv_rows(as_user(p["ann"]).get(f"{base}/orgs/{org}/employees.csv"))
    assert sorted(r["email"] for r in rows) == ["ann@example.com", "boss@example.com"]
    assert next(r for r in rows if r["name"] == "Ann")["job_title"] == "'@risky"


def test_the_import_dry_run_creates_nothing_and_the_real_one_reports_per_row_errors(api):
    config, base, as_user = api
    org, p = make_org({"boss": "manager", "ann": "member"})
    _, q = make_org({"outsider": "owner"})
    boss, ann = as_user(p["boss"]), as_user(p["ann"])
    o = f"{base}/orgs/{org}"
    text = ("title,priority,assignee_id,labels,due_at\r\n"
            f"Write notes,high,{p['ann']['employee_id']},\"docs,release\",2026-12-31T17:00:00Z\r\n"
            ",low,,,\r\n"
            f"Borrowed,low,{q['outsider']['employee_id']},,\r\n"
            "Ship,someday,,,\r\n"
            "Plain,,,,\r\n"
            "Last,urgent,,,\r\n")
    def upload(body):
        return {"files": {"file": ("tasks.csv", body, "text/csv")}}
    check = boss.post(f"{o}/tasks/import", params={"dry_run": "true"}, **upload(text))
    assert check.status_code == 200, check.text
    answer = check.json()
    assert (answer["dry_run"], answer["rows"], answer["would_create"], answer["failed"]) == \
        (True, 6, 3, 3)
    assert [(e["row"], list(e["fields"])) for e in answer["errors"]] == \
        [(3, ["title"]), (4, ["assignee_id"]), (5, ["priority"])]
    assert boss.get(f"{o}/tasks").json()["items"] == []

    started = boss.post(f"{o}/tasks/import", **upload(text.encode()))
    assert started.status_code == 202, started.text
    assert started.headers["Location"] == started.json()["status_url"]
    job = wait_until(lambda: (j := boss.get(f"{base}{started.json()['status_url'][len('/api/v1'):]}")
                              .json())["status"] == "done" and j, what="the import job")
    assert (job["total"], job["done"], job["failed"]) == (6, 3, 3)
    assert [e["row"] for e in job["errors"]] == [3, 4, 5]
    listed = {t["title"]: t for t in boss.get(f"{o}/tasks").json()["items"]}
    assert sorted(listed) == ["Last", "Plain", "Write notes"]
    notes = listed["Write notes"]
    assert (notes["assignee_id"], notes["labels"], notes["priority"], notes["job_id"]) == \
        (p["ann"]["employee_id"], ["docs", "release"], "high", job["job_id"])
    wait_until(lambda: seen("task.assigned", task_id=notes["task_id"]), what="the assignment event")
    assert len(seen("task.created", org_id=org)) == 3

    problem(ann.post(f"{o}/tasks/import", **upload(text)), 403)
    problem(boss.post(f"{o}/tasks/import", json={"csv": text}), 415)
    problem(boss.post(f"{o}/tasks/import", **upload("title\r\n" + "x" * 5000)), 413)
    problem(boss.post(f"{o}/tasks/import", **upload(b"title\r\n\xff\xfe")), 400)
    assert "file" in problem(boss.post(f"{o}/tasks/import", **upload("name\r\nx\r\n")),
                             422)["errors"]
    assert database(config, "tasks").tasks.count_documents({}) == 3


def test_an_import_chunk_delivered_again_creates_and_announces_nothing_twice(api):
    config, base, as_user = api
    org, p = make_org({"boss": "manager", "ann": "member"})
    boss = as_user(p["boss"])
    text = f"title,assignee_id\r\nOne,{p['ann']['employee_id']}\r\nTwo,\r\n"
    started = boss.post(f"{base}/orgs/{org}/tasks/import",
                        files={"file": ("tasks.csv", text, "text/csv")}).json()
    db = database(config, "tasks")
    wait_until(lambda: db.jobs.find_one({"_id": started["job_id"]})["status"] == "done")
    chunk = {"org_id": org, "job_id": started["job_id"], "chunk": 0,
             "rows": [{"row": 2, "task": {"title": "One", "assignee_id": p["ann"]["employee_id"]}},
                      {"row": 3, "task": {"title": "Two"}}],
             "creator_id": p["boss"]["employee_id"], "creator_user_id": p["boss"]["user_id"]}
    # a redelivery under a new event id: the id check cannot catch it, the data must
    dispatch(config, "tasks", "task.import.created", chunk)
    dispatch(config, "tasks", "task.import.created", chunk)
    wait_until(lambda: db.handled_events.count_documents(
        {"_id": {"$regex": "^tasks.on_import_chunk:"}, "state": "done"}) == 3, what="both redeliveries")
    assert sorted(t["title"] for t in db.tasks.find({"job_id": started["job_id"]})) == ["One", "Two"]
    final = db.jobs.find_one({"_id": started["job_id"]})
    assert (final["total"], final["done"], final["failed"]) == (2, 2, 0)
    wait_until(lambda: len(seen("task.assigned", org_id=org)) >= 1, what="the assignment")
    # the re-runs published under the same derived ids: the outbox holds each event once
    assert db.outbox.count_documents({"envelope.event_type": "task.created",
                                      "envelope.org_id": org}) == 2
