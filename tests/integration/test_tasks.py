"""The tasks service against real RabbitMQ, Redis and SecantusDB, with the
real teams service beside it and a fake employees service."""
import base64
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from marshmallow import ValidationError

from shared.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, ValidationFailed
from task_svc.service import TaskService
from team_svc.service import TeamService
from tests.helpers import wait_until
from tests.integration.tasks_mesh import (
    PEOPLE,
    SEEN,
    FakeEmployees,
    FakeOrganizations,
    Listener,
    call,
    database,
    dispatch,
    make_org,
    seen,
)


@pytest.fixture
def mesh(container_factory, make_config, tmp_path):
    config = make_config(TASK_FILES_DIR=str(tmp_path / "files"), TASK_BULK_CHUNK=100,
                         TASK_ATTACHMENT_MAX_BYTES=1000)
    SEEN.clear()
    for cls in (FakeEmployees, FakeOrganizations, Listener):
        container_factory(cls, config).start()
    teams, tasks = container_factory(TeamService, config), container_factory(TaskService, config)
    teams.start()
    tasks.start()
    return config, tasks, teams


def invalid(exc_info) -> dict:
    """Field errors whether the service raised ours or marshmallow's."""
    exc = exc_info.value
    return exc.errors if isinstance(exc, ValidationFailed) else exc.messages


def test_a_task_lives_through_assignment_status_changes_and_history(mesh):
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager", "bob": "member"})
    task = call(tasks, "create_task", p["boss"]["user_id"], org,
                {"title": "Ship the release", "assignee_id": p["bob"]["employee_id"],
                 "priority": "high", "due_at": "2030-01-01T10:00:00Z", "labels": ["release"]})
    assert task["status"] == "todo" and task["assignee_id"] == p["bob"]["employee_id"]
    assigned = wait_until(lambda: seen("task.assigned", task_id=task["task_id"]))
    assert assigned[0]["data"]["assignee_user_id"] == p["bob"]["user_id"]
    assert assigned[0]["data"]["assigned_by_user_id"] == p["boss"]["user_id"]
    assert assigned[0]["data"]["job_id"] is None

    bob = p["bob"]["user_id"]
    with pytest.raises(Conflict) as exc:
        call(tasks, "change_status", bob, org, task["task_id"], {"status": "done"})
    assert exc.value.extra["allowed"] == ["in_progress"]
    call(tasks, "change_status", bob, org, task["task_id"], {"status": "in_progress"})
    done = call(tasks, "change_status", bob, org, task["task_id"], {"status": "done"})
    assert done["status"] == "done" and done["completed_at"]
    completed = wait_until(lambda: seen("task.completed", task_id=task["task_id"]))
    assert completed[0]["data"]["completed_by_user_id"] == bob

    history = call(tasks, "task_history", bob, org, task["task_id"], {})["items"]
    assert [(h["field"], h["old"], h["new"]) for h in history] == [
        ("created", None, {"title": "Ship the release", "assignee_id": p["bob"]["employee_id"],
                           "priority": "high", "status": "todo", "due_at": "2030-01-01T10:00:00Z",
                           "labels": ["release"]}),
        ("status", "todo", "in_progress"), ("status", "in_progress", "done")]
    assert history[0]["actor"] == p["boss"]["user_id"] and history[0]["at"] == task["created_at"]
    assert all(h["actor"] == bob and h["at"] for h in history[1:])

    call(tasks, "update_task", p["boss"]["user_id"], org, task["task_id"], {"title": "Ship 2.0"})
    changed = call(tasks, "task_history", bob, org, task["task_id"], {})["items"][-1]
    assert (changed["field"], changed["old"], changed["new"]) == ("title", "Ship the release", "Ship 2.0")
    assert wait_until(lambda: seen("task.updated", task_id=task["task_id"]))[0]["data"]["changes"] == \
        {"title": "Ship 2.0"}

    call(tasks, "delete_task", p["boss"]["user_id"], org, task["task_id"])
    with pytest.raises(NotFound):
        call(tasks, "get_task", bob, org, task["task_id"])
    assert wait_until(lambda: seen("task.deleted", task_id=task["task_id"]))


def test_bad_input_is_refused_and_nothing_is_stored(mesh):
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager"})
    other_org, q = make_org({"stranger": "member"})
    boss = p["boss"]["user_id"]
    cases = [
        ({"title": "x", "priority": "whenever"}, "priority"),
        ({"title": "x", "due_at": "next tuesday"}, "due_at"),
        ({"title": {"$gt": ""}}, "title"),
        ({"title": "x", "assignee_id": {"$ne": None}}, "assignee_id"),
        ({"description": "no title"}, "title"),
        ({"title": "x", "assignee_id": q["stranger"]["employee_id"]}, "assignee_id"),
        ({"title": "x", "team_id": "no-such-team"}, "team_id"),
    ]
    for body, field in cases:
        with pytest.raises((ValidationFailed, ValidationError)) as exc:
            call(tasks, "create_task", boss, org, body)
        assert field in invalid(exc), (body, invalid(exc))
    with pytest.raises((ValidationFailed, ValidationError)) as exc:
        call(tasks, "create_bulk", boss, org, {"assignee_ids": [f"e{i}" for i in range(10_001)],
                                               "task": {"title": "too many"}})
    assert "assignee_ids" in invalid(exc)
    with pytest.raises((ValidationFailed, ValidationError)):
        call(tasks, "change_status", boss, org, "whatever", {"status": "finished"})
    with pytest.raises((ValidationFailed, ValidationError)):
        call(tasks, "list_tasks", boss, org, {"sort": "chaos"})
    db = database(config, "tasks")
    assert db.tasks.count_documents({}) == 0 and db.jobs.count_documents({}) == 0
    assert other_org


def test_tenancy_and_roles_decide_who_may_do_what(mesh):
    config, tasks, teams = mesh
    org, p = make_org({"boss": "manager", "lead": "member", "ann": "member", "carl": "member"})
    _, q = make_org({"outsider": "owner"})
    boss, lead, ann = p["boss"]["user_id"], p["lead"]["user_id"], p["ann"]["user_id"]
    task = call(tasks, "create_task", boss, org, {"title": "t"})
    # not a member of the org: nothing exists for them
    for method, args in [("get_task", (task["task_id"],)), ("list_tasks", ({},)),
                         ("create_task", ({"title": "x"},)), ("stats", ({},)),
                         ("task_history", (task["task_id"], {}))]:
        with pytest.raises(NotFound):
            call(tasks, method, q["outsider"]["user_id"], org, *args)
    # a plain member: own tasks yes, other people's assignments and bulk no
    mine = call(tasks, "create_task", ann, org, {"title": "mine", "assignee_id": p["ann"]["employee_id"]})
    with pytest.raises(Forbidden):
        call(tasks, "create_task", ann, org, {"title": "x", "assignee_id": p["carl"]["employee_id"]})
    with pytest.raises(Forbidden):
        call(tasks, "create_bulk", ann, org, {"assignee_ids": ["a"], "task": {"title": "x"}})
    with pytest.raises(Forbidden):
        call(tasks, "change_status", ann, org, task["task_id"], {"status": "in_progress"})
    call(tasks, "change_status", ann, org, mine["task_id"], {"status": "in_progress"})
    # a team leader assigns their team's tasks to their team's members, nobody else
    team = call(teams, "create_team", boss, org, {"name": "Core"})
    for who, role in (("lead", "leader"), ("ann", "member")):
        call(teams, "add_member", boss, org, team["team_id"],
             {"employee_id": p[who]["employee_id"], "role": role})
    team_task = call(tasks, "create_task", lead, org, {"title": "team work", "team_id": team["team_id"],
                                                      "assignee_id": p["ann"]["employee_id"]})
    assert team_task["assignee_id"] == p["ann"]["employee_id"]
    with pytest.raises(Forbidden):
        call(tasks, "assign_task", lead, org, team_task["task_id"],
             {"assignee_id": p["carl"]["employee_id"]})
    call(tasks, "change_status", lead, org, team_task["task_id"], {"status": "in_progress"})


def test_the_history_starts_with_the_creation_and_records_every_assignment(mesh):
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager", "ann": "member", "bob": "member"})
    boss = p["boss"]["user_id"]
    task = call(tasks, "create_task", boss, org, {"title": "Plan", "priority": "low"})
    for who in ("ann", "bob"):
        call(tasks, "assign_task", boss, org, task["task_id"], {"assignee_id": p[who]["employee_id"]})
    call(tasks, "assign_task", boss, org, task["task_id"], {"assignee_id": None})
    history = call(tasks, "task_history", boss, org, task["task_id"], {})["items"]
    ann, bob = p["ann"]["employee_id"], p["bob"]["employee_id"]
    assert [(h["field"], h["old"], h["new"]) for h in history] == [
        ("created", None, {"title": "Plan", "priority": "low", "status": "todo"}),
        ("assignee_id", None, ann), ("assignee_id", ann, bob), ("assignee_id", bob, None)]
    assert all(h["actor"] == boss for h in history)
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)


def test_bulk_of_500_with_3_invalid_assignees_makes_497_tasks(mesh):
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager", **{f"w{i}": "member" for i in range(496)},
                       "gone": "member"}, status={"gone": "removed"})
    _, q = make_org({"foreign": "member"})
    workers = [e["employee_id"] for n, e in p.items() if n.startswith("w")] + [p["boss"]["employee_id"]]
    ids = workers + [p["gone"]["employee_id"], q["foreign"]["employee_id"], "emp-nobody"]
    assert len(ids) == 500
    job = call(tasks, "create_bulk", p["boss"]["user_id"], org,
               {"assignee_ids": ids, "task": {"title": "Fill in the survey", "priority": "low",
                                              "due_at": "2030-05-01T00:00:00Z"}})
    assert job["status"] == "running" and job["total"] == 500
    assert job["status_url"] == f"/api/v1/orgs/{org}/tasks/bulk/{job['job_id']}"
    final = wait_until(lambda: (j := call(tasks, "get_bulk_job", p["boss"]["user_id"], org,
                                          job["job_id"]))["status"] == "done" and j,
                       timeout=60, what="the job to finish")
    assert (final["total"], final["done"], final["failed"]) == (500, 497, 3)
    assert sorted(e["assignee_id"] for e in final["errors"]) == sorted(ids[-3:])
    assert all(e["error"] == "not an active employee" for e in final["errors"])
    db = database(config, "tasks")
    assert db.tasks.count_documents({"job_id": job["job_id"]}) == 497
    # one task.bulk.assigned per chunk of 100 (5), carrying its tasks; no task.assigned each
    events = wait_until(lambda: len(seen("task.bulk.assigned", job_id=job["job_id"])) == 5 and
                        seen("task.bulk.assigned", job_id=job["job_id"]), timeout=30)
    assert sorted(e["data"]["chunk"] for e in events) == [0, 1, 2, 3, 4]
    assert {e["event_id"] for e in events} == {f"task.bulk.assigned:{job['job_id']}:{n}"
                                               for n in range(5)}
    tasks_of = [t for e in events for t in e["data"]["tasks"]]
    assert len({t["task_id"] for t in tasks_of}) == len(tasks_of) == 497
    assert all(t["assignee_user_id"] == PEOPLE_user(t["assignee_id"]) for t in tasks_of)
    assert all((e["data"]["title"], e["data"]["priority"], e["data"]["due_at"],
                e["data"]["assigned_by_user_id"]) == ("Fill in the survey", "low",
                                                      "2030-05-01T00:00:00Z", p["boss"]["user_id"])
               for e in events)
    assert seen("task.assigned", job_id=job["job_id"]) == []


def PEOPLE_user(employee_id):
    from tests.integration.tasks_mesh import PEOPLE
    return PEOPLE[employee_id]["user_id"]


def test_a_chunk_delivered_twice_creates_no_duplicates(mesh):
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager", "a": "member", "b": "member"})
    job = call(tasks, "create_bulk", p["boss"]["user_id"], org,
               {"assignee_ids": [p["a"]["employee_id"], p["b"]["employee_id"], "emp-nobody"],
                "task": {"title": "once"}})
    db = database(config, "tasks")
    wait_until(lambda: db.jobs.find_one({"_id": job["job_id"]})["status"] == "done")
    chunk = {"org_id": org, "job_id": job["job_id"], "chunk": 0,
             "assignee_ids": [p["a"]["employee_id"], p["b"]["employee_id"], "emp-nobody"],
             "task": {"title": "once", "description": "", "team_id": None, "priority": "medium",
                      "due_at": None, "labels": []},
             "creator_id": p["boss"]["employee_id"], "creator_user_id": p["boss"]["user_id"]}
    # a redelivery under a new event id: the id check cannot catch it, the data must
    dispatch(config, "tasks", "task.bulk.created", chunk)
    dispatch(config, "tasks", "task.bulk.created", chunk)
    wait_until(lambda: db.handled_events.count_documents(
        {"_id": {"$regex": "^tasks.on_bulk_chunk:"}, "state": "done"}) == 3, what="both redeliveries")
    assert db.tasks.count_documents({"job_id": job["job_id"]}) == 2
    for task in db.tasks.find({"job_id": job["job_id"]}):  # created once, in the history too
        history = call(tasks, "task_history", p["boss"]["user_id"], org, task["_id"], {})["items"]
        assert [(h["field"], h["new"]["assignee_id"], h["actor"]) for h in history] == [
            ("created", task["assignee_id"], p["boss"]["user_id"])]
    final = db.jobs.find_one({"_id": job["job_id"]})
    assert (final["done"], final["failed"], final["status"]) == (2, 1, "done")


def test_chunks_recorded_at_once_and_again_count_once_and_finish_the_job(mesh):
    import eventlet

    from task_svc.store import TaskStore
    config, _, _ = mesh
    store = TaskStore(database(config, "tasks"))
    job_id = uuid.uuid4().hex
    store.create_job({"_id": job_id, "org_id": "o", "status": "running", "total": 30, "done": 0,
                      "failed": 0, "errors": [], "chunks_total": 3, "chunks_done": [],
                      "created_by_user_id": "u", "created_at": datetime.now(timezone.utc),
                      "finished_at": None})
    error = {"assignee_id": "x", "error": "not an active employee"}
    pool = eventlet.GreenPool()
    for chunk in (0, 1, 1, 2, 0, 2, 1):  # redeliveries among them, all at once
        pool.spawn(store.record_chunk, job_id, chunk, 9, [error])
    pool.waitall()
    job = store.get_job("o", job_id)
    assert sorted(job["chunks_done"]) == [0, 1, 2]
    assert (job["done"], job["failed"], len(job["errors"]), job["status"]) == (27, 3, 3, "done")
    assert job["finished_at"] is not None
    assert store.record_chunk(job_id, 2, 9, [error])["done"] == 27  # once more: nothing


def test_a_bulk_task_is_written_with_its_created_entry_which_its_first_change_copies(mesh):
    """A chunk writes its tasks' ``created`` entries in the tasks' own insert: the job
    finishes while the history collection refuses every write (a validator). A change
    copies the entry to the history before its own write replaces it, so while the
    history refuses writes the change is refused whole (nothing written), and the
    entry is never lost."""
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager", "a": "member"})
    boss, a = p["boss"]["user_id"], p["a"]["employee_id"]
    db = database(config, "tasks")
    db.command("collMod", "history", validator={"never": {"$exists": True}})
    try:
        job = call(tasks, "create_bulk", boss, org,
                   {"assignee_ids": [a], "task": {"title": "Sign", "priority": "low"}})
        wait_until(lambda: db.jobs.find_one({"_id": job["job_id"]})["status"] == "done",
                   what="the job, with the history refusing writes")
        task_id = f"{job['job_id']}-{a}"
        with pytest.raises(Exception, match="(?i)validation"):
            call(tasks, "change_status", boss, org, task_id, {"status": "in_progress"})
    finally:
        db.command("collMod", "history", validator={})
    assert db.history.count_documents({"task_id": task_id}) == 0
    assert call(tasks, "get_task", boss, org, task_id)["status"] == "todo"

    def history():
        return [(h["field"], h["old"], h["new"], h["actor"]) for h in
                call(tasks, "task_history", boss, org, task_id, {})["items"]]

    created = ("created", None, {"title": "Sign", "priority": "low", "status": "todo",
                                 "assignee_id": a}, boss)
    assert history() == [created]
    call(tasks, "change_status", boss, org, task_id, {"status": "in_progress"})
    call(tasks, "change_status", boss, org, task_id, {"status": "done"})
    assert history() == [created, ("status", "todo", "in_progress", boss),
                         ("status", "in_progress", "done", boss)]
    assert db.history.count_documents({"task_id": task_id}) == 3


def test_employee_removed_hands_open_tasks_to_the_team_leader_or_nobody(mesh):
    config, tasks, teams = mesh
    org, p = make_org({"boss": "manager", "lead": "member", "bob": "member"})
    boss, bob = p["boss"]["user_id"], p["bob"]["employee_id"]
    team = call(teams, "create_team", boss, org, {"name": "Ops"})
    call(teams, "add_member", boss, org, team["team_id"], {"employee_id": p["lead"]["employee_id"],
                                                          "role": "leader"})
    call(teams, "add_member", boss, org, team["team_id"], {"employee_id": bob})
    in_team = call(tasks, "create_task", boss, org, {"title": "a", "assignee_id": bob,
                                                     "team_id": team["team_id"]})
    loose = call(tasks, "create_task", boss, org, {"title": "b", "assignee_id": bob})
    finished = call(tasks, "create_task", boss, org, {"title": "c", "assignee_id": bob,
                                                      "team_id": team["team_id"]})
    for status in ("in_progress", "done"):
        call(tasks, "change_status", boss, org, finished["task_id"], {"status": status})

    p["bob"]["status"] = "removed"
    dispatch(config, "employees", "employee.removed", {
        "org_id": org, "employee_id": bob, "user_id": p["bob"]["user_id"], "email": "bob@example.com",
        "name": "Bob", "org_name": "Org", "removed_by_user_id": boss}, actor_id=boss)

    def assignee(task):
        return call(tasks, "get_task", boss, org, task["task_id"])["assignee_id"]
    wait_until(lambda: assignee(in_team) == p["lead"]["employee_id"] and assignee(loose) is None,
               what="the hand-over")
    assert assignee(finished) == bob  # done tasks stay with who did them
    events = {e["data"]["task_id"]: e["data"] for e in
              wait_until(lambda: len(seen("task.reassigned")) >= 2 and seen("task.reassigned"))}
    assert events[in_team["task_id"]]["new_assignee_user_id"] == p["lead"]["user_id"]
    assert events[loose["task_id"]]["new_assignee_id"] is None
    assert finished["task_id"] not in events
    history = call(tasks, "task_history", boss, org, in_team["task_id"], {})["items"]
    assert ("assignee_id", bob, p["lead"]["employee_id"]) in [(h["field"], h["old"], h["new"])
                                                                for h in history]
    # the teams service removed them from the team as well
    wait_until(lambda: bob not in [m["employee_id"] for m in
                                   call(teams, "get_team", boss, org, team["team_id"])["members"]])
    assert seen("team.member.removed", employee_id=bob)


def test_a_deleted_team_leaves_its_tasks_without_a_team(mesh):
    config, tasks, teams = mesh
    org, p = make_org({"boss": "admin"})
    boss = p["boss"]["user_id"]
    team = call(teams, "create_team", boss, org, {"name": "Temp"})
    task = call(tasks, "create_task", boss, org, {"title": "x", "team_id": team["team_id"]})
    call(teams, "delete_team", boss, org, team["team_id"])
    wait_until(lambda: call(tasks, "get_task", boss, org, task["task_id"])["team_id"] is None)
    history = call(tasks, "task_history", boss, org, task["task_id"], {})["items"]
    assert [(h["field"], h["old"], h["new"]) for h in history][1:] == [
        ("team_id", team["team_id"], None)]
    # later changes follow the team-removed entry (whose id is not an ObjectId) page by page too
    for status in ("in_progress", "done"):
        call(tasks, "change_status", boss, org, task["task_id"], {"status": status})
    paged, cursor = [], None
    while True:
        got = call(tasks, "task_history", boss, org, task["task_id"], {"limit": 1, "cursor": cursor})
        paged += [(h["field"], h["new"]) for h in got["items"]]
        cursor = got["next_cursor"]
        if not cursor:
            break
    assert paged[1:] == [("team_id", None), ("status", "in_progress"), ("status", "done")]


def test_attachments_upload_download_and_refusals(mesh, tmp_path):
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager"})
    _, q = make_org({"outsider": "owner"})
    boss = p["boss"]["user_id"]
    task = call(tasks, "create_task", boss, org, {"title": "with files"})
    blob = b"%PDF-1.7 hello"
    meta = call(tasks, "add_attachment", boss, org, task["task_id"], {
        "filename": "report.pdf", "content_type": "application/pdf",
        "data_b64": base64.b64encode(blob).decode()})
    assert (meta["filename"], meta["size"], meta["content_type"]) == ("report.pdf", len(blob),
                                                                      "application/pdf")
    got = call(tasks, "get_attachment", boss, org, task["task_id"], meta["attachment_id"])
    assert base64.b64decode(got["data_b64"]) == blob
    assert [a["attachment_id"] for a in call(tasks, "list_attachments", boss, org,
                                             task["task_id"])["items"]] == [meta["attachment_id"]]
    with pytest.raises(NotFound):
        call(tasks, "get_attachment", q["outsider"]["user_id"], org, task["task_id"],
             meta["attachment_id"])
    with pytest.raises(PayloadTooLarge):
        call(tasks, "add_attachment", boss, org, task["task_id"], {
            "filename": "big.bin", "data_b64": base64.b64encode(b"x" * 1001).decode()})
    for name in ("../etc/passwd", "a/b.txt", "a\\b.txt", ".."):
        with pytest.raises((ValidationFailed, ValidationError)):
            call(tasks, "add_attachment", boss, org, task["task_id"], {
                "filename": name, "data_b64": base64.b64encode(b"x").decode()})
    files = [f for f in (tmp_path / "files").rglob("*") if f.is_file()]
    assert len(files) == 1 and files[0].read_bytes() == blob


def test_comments_notify_the_people_involved(mesh):
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager", "bob": "member", "cat": "member", "gone": "member"},
                      status={"gone": "removed"})
    _, q = make_org({"foreign": "member"})
    task = call(tasks, "create_task", p["boss"]["user_id"], org,
                {"title": "discuss", "assignee_id": p["bob"]["employee_id"]})
    call(tasks, "add_comment", p["cat"]["user_id"], org, task["task_id"], {"body": "first"})
    comment = call(tasks, "add_comment", p["bob"]["user_id"], org, task["task_id"],
                   {"body": "on it", "mentions": [p["cat"]["employee_id"], "emp-nobody",
                                                  p["gone"]["employee_id"],
                                                  q["foreign"]["employee_id"]]})
    assert comment["mentions"] == [p["cat"]["employee_id"]]  # active members of this org only
    event = wait_until(lambda: seen("task.comment.added", comment_id=comment["comment_id"]))[0]["data"]
    assert event["author_user_id"] == p["bob"]["user_id"] and event["preview"] == "on it"
    assert set(event["watcher_user_ids"]) == {p["boss"]["user_id"], p["cat"]["user_id"]}
    assert event["mentioned_user_ids"] == [p["cat"]["user_id"]]  # notifications tells them
    listed = call(tasks, "list_comments", p["boss"]["user_id"], org, task["task_id"], {})
    assert [c["body"] for c in listed["items"]] == ["first", "on it"]


def test_lists_filter_search_sort_page_and_are_cached_until_a_change(mesh):
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager", "bob": "member"})
    other_org, _ = make_org({"x": "member"})
    boss, bob = p["boss"]["user_id"], p["bob"]["employee_id"]
    soon = datetime.now(timezone.utc) + timedelta(days=1)
    for i in range(7):
        call(tasks, "create_task", boss, org, {
            "title": f"Deploy service {i}" if i % 2 else f"Write report {i}",
            "priority": ["low", "medium", "high", "urgent"][i % 4], "labels": ["ops"] if i < 3 else [],
            "assignee_id": bob if i < 4 else None, "due_at": (soon + timedelta(hours=i)).isoformat()})

    def titles(**args):
        out, cursor = [], None
        while True:
            page = call(tasks, "list_tasks", boss, org, {**args, "limit": 2, **({"cursor": cursor}
                                                                              if cursor else {})})
            out += [t["title"] for t in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                return out
    assert titles(sort="due") == [f"{'Deploy service' if i % 2 else 'Write report'} {i}"
                                  for i in range(7)]
    assert len(titles()) == 7
    assert titles(q="depl", sort="due") == ["Deploy service 1", "Deploy service 3", "Deploy service 5"]
    assert titles(assignee_id=bob, sort="due") == [titles(sort="due")[i] for i in range(4)]
    assert titles(labels="ops", sort="due") == titles(sort="due")[:3]
    assert titles(priority="urgent") == ["Deploy service 3"]
    assert titles(sort="priority")[0] == "Deploy service 3"
    assert titles(due_before=(soon + timedelta(minutes=90)).isoformat(), sort="due") == \
        ["Write report 0", "Deploy service 1"]
    mine = call(tasks, "my_tasks", p["bob"]["user_id"], {"sort": "due"})
    assert len(mine["items"]) == 4
    # cached: a change in the org shows at once (the event-driven invalidation)
    first = call(tasks, "list_tasks", boss, org, {"status": "in_progress"})
    assert first["items"] == []
    one = call(tasks, "list_tasks", boss, org, {"sort": "due", "limit": 1})["items"][0]
    call(tasks, "change_status", boss, org, one["task_id"], {"status": "in_progress"})
    assert [t["task_id"] for t in call(tasks, "list_tasks", boss, org,
                                       {"status": "in_progress"})["items"]] == [one["task_id"]]
    assert call(tasks, "list_tasks", boss, org, {"q": "nothing-like-this"})["items"] == []
    assert other_org


def test_stats_and_leaderboard(mesh):
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager", "ann": "member", "bob": "member"})
    boss = p["boss"]["user_id"]
    past = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    made = {}
    for who, n in (("ann", 3), ("bob", 2)):
        made[who] = [call(tasks, "create_task", boss, org, {"title": f"{who} {i}", "due_at": past,
                                                             "assignee_id": p[who]["employee_id"]})
                     for i in range(n)]
    stats = call(tasks, "stats", boss, org, {})
    assert stats["total"] == 5 and stats["overdue"] == 5 and stats["completion_rate"] == 0
    board = call(tasks, "leaderboard", boss, org, {})
    assert board["items"] == []
    for task in made["ann"][:2] + made["bob"][:1]:
        for status in ("in_progress", "done"):
            call(tasks, "change_status", boss, org, task["task_id"], {"status": status})
    stats = call(tasks, "stats", boss, org, {})  # the cached figures were dropped by the changes
    assert stats["by_status"] == {"todo": 2, "in_progress": 0, "done": 3}
    assert stats["completed_this_week"] == 3 and stats["overdue"] == 2
    assert stats["completion_rate"] == 0.6
    ann_row = next(r for r in stats["per_assignee"] if r["assignee_id"] == p["ann"]["employee_id"])
    assert (ann_row["total"], ann_row["done"]) == (3, 2)
    board = call(tasks, "leaderboard", boss, org, {})
    assert board["source"] == "mongodb"
    assert [(r["name"], r["completed"]) for r in board["items"]] == [("Ann", 2), ("Bob", 1)]
    call(tasks, "change_status", boss, org, made["bob"][1]["task_id"], {"status": "in_progress"})
    call(tasks, "change_status", boss, org, made["bob"][1]["task_id"], {"status": "done"})
    board = call(tasks, "leaderboard", boss, org, {})
    assert board["source"] == "redis"
    assert [(r["name"], r["completed"]) for r in board["items"]] == [("Ann", 2), ("Bob", 2)]


def test_the_overdue_timer_publishes_once_across_two_instances(container_factory, make_config):
    config = make_config(TASK_OVERDUE_INTERVAL=0.05)
    SEEN.clear()
    for cls in (FakeEmployees, Listener):
        container_factory(cls, config).start()
    first, second = container_factory(TaskService, config), container_factory(TaskService, config)
    org, p = make_org({"bob": "member"})
    db = database(config, "tasks")
    from task_svc.store import TaskStore
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    docs = [TaskStore.task_document(org, {"title": f"late {i}", "priority": "low", "due_at": past},
                                    p["bob"], p["bob"]) for i in range(30)]
    docs[0]["status"] = "done"  # done tasks are never overdue
    docs[1]["status"] = "in_progress"  # open too
    docs[2]["deleted"] = True  # marked, with no event
    undated = [TaskStore.task_document(org, {"title": f"some day {i}", "priority": "low"},
                                       p["bob"], p["bob"]) for i in range(10)]
    db.tasks.insert_many(docs + undated)
    first.start()
    second.start()
    wait_until(lambda: db.tasks.count_documents({"overdue_at": {"$ne": None}}) == 29, timeout=20)
    wait_until(lambda: len(seen("task.overdue")) >= 28)
    marker = call(first, "health")  # one more round trip: late duplicates would be in by now
    assert marker["ok"]
    ids = [e["data"]["task_id"] for e in seen("task.overdue")]
    assert len(ids) == 28 and len(set(ids)) == 28
    assert docs[0]["_id"] not in ids and docs[2]["_id"] not in ids and docs[1]["_id"] in ids
    assert db.tasks.count_documents({"_id": {"$in": [t["_id"] for t in undated]},
                                     "overdue_at": None}) == 10
    assert seen("task.overdue")[0]["data"]["assignee_user_id"] == p["bob"]["user_id"]


def test_tenancy_matrix_of_every_team_and_task_operation(mesh):
    """Outsiders get 404 from everything in the org; members get 403 where
    their role falls short; nothing changes either way."""
    config, tasks, teams = mesh
    org, p = make_org({"boss": "admin", "ann": "member", "bob": "member"})
    _, q = make_org({"outsider": "owner"})
    boss = p["boss"]["user_id"]
    team = call(teams, "create_team", boss, org, {"name": "T"})["team_id"]
    call(teams, "add_member", boss, org, team, {"employee_id": p["bob"]["employee_id"]})
    task = call(tasks, "create_task", boss, org, {"title": "x", "assignee_id": p["bob"]["employee_id"]})
    tid = task["task_id"]
    job = call(tasks, "create_bulk", boss, org, {"assignee_ids": [p["ann"]["employee_id"]],
                                                 "task": {"title": "b"}})["job_id"]
    att = call(tasks, "add_attachment", boss, org, tid, {"filename": "a.txt", "data_b64": "eA=="})
    emp = p["bob"]["employee_id"]
    operations = [  # (container, method, args, a plain member is refused)
        (teams, "create_team", ({"name": "N"},), True),
        (teams, "list_teams", ({},), False),
        (teams, "get_team", (team,), False),
        (teams, "update_team", (team, {"name": "M"}), True),
        (teams, "delete_team", (team,), True),
        (teams, "add_member", (team, {"employee_id": p["ann"]["employee_id"]}), True),
        (teams, "remove_member", (team, emp), True),
        (teams, "set_leader", (team, {"employee_id": emp}), True),
        (teams, "get_permissions", (team,), False),
        (teams, "set_permissions", (team, {"permissions": {}}), True),
        (tasks, "create_task", ({"title": "y", "assignee_id": emp},), True),
        (tasks, "list_tasks", ({},), False),
        (tasks, "get_task", (tid,), False),
        (tasks, "update_task", (tid, {"title": "z"}), True),
        (tasks, "delete_task", (tid,), True),
        (tasks, "assign_task", (tid, {"assignee_id": p["boss"]["employee_id"]}), True),
        (tasks, "change_status", (tid, {"status": "in_progress"}), True),
        (tasks, "create_bulk", ({"assignee_ids": [emp], "task": {"title": "b"}},), True),
        (tasks, "get_bulk_job", (job,), False),
        (tasks, "add_comment", (tid, {"body": "hi"}), False),
        (tasks, "list_comments", (tid, {}), False),
        (tasks, "add_attachment", (tid, {"filename": "b.txt", "data_b64": "eA=="}), False),
        (tasks, "list_attachments", (tid,), False),
        (tasks, "get_attachment", (tid, att["attachment_id"]), False),
        (tasks, "task_history", (tid, {}), False),
        (tasks, "stats", ({},), False),
        (tasks, "leaderboard", ({},), False),
    ]
    for container, method, args, members_refused in operations:
        with pytest.raises(NotFound):
            call(container, method, q["outsider"]["user_id"], org, *args)
        if members_refused:
            with pytest.raises(Forbidden):
                call(container, method, p["ann"]["user_id"], org, *args)
        else:
            call(container, method, p["ann"]["user_id"], org, *args)
    assert call(tasks, "get_task", boss, org, tid)["title"] == "x"
    assert call(teams, "get_team", boss, org, team)["name"] == "T"
    assert [t["task_id"] for t in call(tasks, "my_tasks", q["outsider"]["user_id"], {})["items"]] == []


def test_newest_first_pages_cover_every_task_once_across_ties_and_years(mesh):
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager"})
    from task_svc.store import TaskStore
    base = datetime.now(timezone.utc).replace(microsecond=0)
    ages = [timedelta(0)] * 6 + [timedelta(minutes=5)] * 3 + [timedelta(days=3), timedelta(days=40),
                                                              timedelta(days=800), timedelta(days=4000)]
    docs = []
    for i, age in enumerate(ages):
        doc = TaskStore.task_document(org, {"title": f"t{i}", "priority": "low"}, p["boss"], None)
        doc["created_at"] = base - age
        docs.append(doc)
    database(config, "tasks").tasks.insert_many(docs)
    expected = [d["_id"] for d in sorted(docs, key=lambda d: (d["created_at"], d["_id"]), reverse=True)]
    got, cursor = [], None
    while True:
        page = call(tasks, "list_tasks", p["boss"]["user_id"], org,
                    {"limit": 4, **({"cursor": cursor} if cursor else {})})
        got += [t["task_id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert got == expected


def test_every_sort_pages_cover_every_task_once_in_order_with_undated_and_old_tasks(mesh):
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager"})
    from task_svc import domain
    from task_svc.store import TaskStore, new_id
    base = datetime.now(timezone.utc).replace(microsecond=0)
    docs = []
    for i in range(16):  # ties in every sort key, years apart, a third without a due date,
        data = {"title": f"t{i}", "priority": domain.PRIORITIES[i % 4],  # ids of bulk jobs and
                "due_at": None if i % 3 == 0 else base + timedelta(days=(i % 5) * 200 - 300)}
        task_id = {14: f"{new_id()}-emp-1", 15: f"legacy-{i}"}.get(i)  # not ObjectIds
        doc = TaskStore.task_document(org, data, p["boss"], None, task_id=task_id)
        doc["created_at"] = base - [timedelta(0), timedelta(minutes=5), timedelta(days=900)][i % 3]
        doc["status"] = domain.STATUSES[i % 2]
        docs.append(doc)
    database(config, "tasks").tasks.insert_many(docs)
    boss = p["boss"]["user_id"]
    # one more through the service: the org's bounds then exist before the first list
    docs.append({**call(tasks, "create_task", boss, org, {"title": "new", "priority": "urgent"}),
                 "_id": None})
    stored = {d["_id"]: d for d in database(config, "tasks").tasks.find({"org_id": org})}
    for sort, (field, direction) in domain.SORTS.items():
        for args in ({}, {"status": "todo"}, {"priority": "high"}):
            expected = [d["_id"] for d in sorted(
                (d for d in stored.values() if all(d[k] == v for k, v in args.items())),
                key=lambda d: (d[field], d["_id"]), reverse=direction == -1)]
            got, cursor = [], None
            while True:
                page = call(tasks, "list_tasks", boss, org,
                            {**args, "sort": sort, "limit": 3, **({"cursor": cursor} if cursor else {})})
                got += [t["task_id"] for t in page["items"]]
                cursor = page["next_cursor"]
                if not cursor:
                    break
            assert got == expected, (sort, args)


def test_a_member_leaving_a_team_hands_that_teams_open_tasks_to_its_leader(mesh):
    config, tasks, teams = mesh
    org, p = make_org({"boss": "manager", "lead": "member", "bob": "member"})
    boss, bob = p["boss"]["user_id"], p["bob"]["employee_id"]
    team = call(teams, "create_team", boss, org, {"name": "Ops"})["team_id"]
    call(teams, "add_member", boss, org, team, {"employee_id": p["lead"]["employee_id"], "role": "leader"})
    call(teams, "add_member", boss, org, team, {"employee_id": bob})
    in_team = call(tasks, "create_task", boss, org, {"title": "a", "assignee_id": bob, "team_id": team})
    elsewhere = call(tasks, "create_task", boss, org, {"title": "b", "assignee_id": bob})
    call(teams, "remove_member", boss, org, team, bob)
    wait_until(lambda: call(tasks, "get_task", boss, org, in_team["task_id"])["assignee_id"]
               == p["lead"]["employee_id"], what="the hand-over")
    event = wait_until(lambda: seen("task.reassigned", task_id=in_team["task_id"]))[0]["data"]
    assert event["reason"] == "team.member.removed" and event["old_assignee_id"] == bob
    assert call(tasks, "get_task", boss, org, elsewhere["task_id"])["assignee_id"] == bob


def test_my_tasks_leave_out_orgs_the_user_left_or_that_were_deleted(mesh):
    config, tasks, _ = mesh
    org_a, p = make_org({"boss": "admin", "bob": "member"})
    org_b, q = make_org({"boss": "admin"})
    bob = p["bob"]
    bob_in_b = {**bob, "employee_id": f"{bob['employee_id']}-b", "org_id": org_b}
    PEOPLE[bob_in_b["employee_id"]] = bob_in_b
    for org, boss, employee in ((org_a, p["boss"], bob), (org_b, q["boss"], bob_in_b)):
        task = call(tasks, "create_task", boss["user_id"], org,
                    {"title": "Ship it", "assignee_id": employee["employee_id"]})
        call(tasks, "change_status", employee["user_id"], org, task["task_id"],
             {"status": "in_progress"})
        call(tasks, "change_status", employee["user_id"], org, task["task_id"],
             {"status": "done"})  # done tasks stay his after he leaves

    def mine():
        return sorted(t["org_id"] for t in call(tasks, "my_tasks", bob["user_id"], {})["items"])

    assert mine() == sorted([org_a, org_b])  # and now cached
    PEOPLE[bob["employee_id"]]["status"] = "removed"  # bob left org A (or it was deleted)
    assert mine() == [org_b]  # at once
    PEOPLE[bob_in_b["employee_id"]]["status"] = "removed"
    assert mine() == []


def test_search_documents_give_the_search_service_live_tasks_and_teams_with_their_text(mesh):
    config, tasks, teams = mesh
    org, p = make_org({"boss": "manager"})
    other, q = make_org({"eve": "owner"})
    boss = p["boss"]["user_id"]
    team = call(teams, "create_team", boss, org, {"name": "Mapping", "description": "maps and charts"})
    made = [call(tasks, "create_task", boss, org, {"title": f"Task {i}", "description": f"about {i}"})
            for i in range(3)]
    theirs = call(tasks, "create_task", q["eve"]["user_id"], other, {"title": "Not yours"})
    call(tasks, "add_comment", boss, org, made[0]["task_id"], {"body": "first note"})
    call(tasks, "add_comment", boss, org, made[0]["task_id"], {"body": "second note"})
    call(tasks, "delete_task", boss, org, made[2]["task_id"])
    ids = [t["task_id"] for t in made]
    found = call(tasks, "search_documents", org, [*ids, theirs["task_id"], "nope"])
    by_id = {t["task_id"]: t for t in found["items"]}
    assert set(by_id) == set(ids[:2])  # the deleted one, another org's and unknown ids: none
    assert by_id[ids[0]]["description"] == "about 0"
    assert sorted(by_id[ids[0]]["comments"]) == ["first note", "second note"]
    first = call(tasks, "search_documents", org, None, None, 1)
    rest = call(tasks, "search_documents", org, None, first["next_after"], 5)
    assert [t["task_id"] for t in first["items"] + rest["items"]] == sorted(ids[:2])
    assert rest["next_after"] is None
    everything = call(tasks, "search_documents", None, None, None, 1000)["items"]
    assert {org, other} <= {t["org_id"] for t in everything}
    (brief,) = call(teams, "search_documents", org, [team["team_id"], "nope"])["items"]
    assert (brief["name"], brief["description"]) == ("Mapping", "maps and charts")
    assert call(teams, "search_documents", other, [team["team_id"]])["items"] == []


def test_running_jobs_lists_the_unfinished_bulk_jobs_of_every_org_for_operators(mesh):
    config, tasks, _ = mesh
    jobs = database(config, "tasks").jobs
    now = datetime.now(timezone.utc)
    jobs.insert_many([
        {"_id": "job-old", "org_id": "org-a", "status": "running", "total": 10, "done": 2, "failed": 0,
         "errors": [{"assignee_id": "x", "error": "big"}], "created_at": now - timedelta(minutes=5)},
        {"_id": "job-new", "org_id": "org-b", "status": "running", "total": 4, "done": 1, "failed": 1,
         "errors": [], "created_at": now},
        {"_id": "job-done", "org_id": "org-a", "status": "done", "total": 1, "done": 1, "failed": 0,
         "errors": [], "created_at": now}])
    running = call(tasks, "running_jobs")
    assert [(j["job_id"], j["org_id"], j["done"], j["total"]) for j in running] == [
        ("job-new", "org-b", 1, 4), ("job-old", "org-a", 2, 10)]  # newest first, done left out
    assert running[1]["errors"] == []  # the list leaves the error details out
    assert [j["job_id"] for j in call(tasks, "running_jobs", 1)] == ["job-new"]


def test_a_redelivered_last_chunk_finishes_a_job_whose_first_run_died_before_marking_it_done(mesh):
    """A worker killed between counting the last chunk and marking the job done
    leaves the job running with every chunk counted; the chunk comes again (its
    claim lapsed) and must finish the job, not skip it as already counted."""
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager", "bob": "member"})
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    database(config, "tasks").jobs.insert_one({
        "_id": job_id, "org_id": org, "status": "running", "total": 1, "done": 1, "failed": 0,
        "errors": [], "chunks_total": 1, "chunks_done": [0], "created_by_user_id": p["boss"]["user_id"],
        "created_at": datetime.now(timezone.utc), "finished_at": None})
    dispatch(config, "tasks", "task.bulk.created", {
        "org_id": org, "job_id": job_id, "chunk": 0, "assignee_ids": [p["bob"]["employee_id"]],
        "task": {"title": "Again", "priority": "low"}, "creator_id": p["boss"]["employee_id"],
        "creator_user_id": p["boss"]["user_id"]})
    job = wait_until(lambda: (j := call(tasks, "get_bulk_job", p["boss"]["user_id"], org, job_id))
                     ["status"] == "done" and j, timeout=20, what="the job to be marked done")
    assert (job["total"], job["done"], job["failed"]) == (1, 1, 0)  # counted once, not twice


def test_a_change_writes_nothing_after_it_lands_and_its_history_follows(mesh):
    """A change's history entries and its events go in the task's own write, and
    nothing is written after it: with the history collection refusing writes (a
    validator: the server fails them), a status change still lands and is answered;
    its entry is in the history once the collection takes writes again, once. The
    next change, which moves the previous one's entries first, is refused before it
    writes anything."""
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager"})
    boss = p["boss"]["user_id"]
    db = database(config, "tasks")
    from task_svc.store import TaskStore
    # a task with no entry waiting in it (a create's own entry waits there like a change's,
    # and its first change moves it first: see the bulk test above)
    doc = TaskStore.task_document(org, {"title": "Cut short", "priority": "medium"}, p["boss"], None)
    db.tasks.insert_one(doc)
    task = call(tasks, "get_task", boss, org, doc["_id"])
    db.command("collMod", "history", validator={"never": {"$exists": True}})
    try:
        moved = call(tasks, "change_status", boss, org, task["task_id"], {"status": "in_progress"})
        assert moved["status"] == "in_progress" and moved["version"] == task["version"] + 1
        with pytest.raises(Exception, match="(?i)validation"):
            call(tasks, "change_status", boss, org, task["task_id"], {"status": "done"})
        assert call(tasks, "get_task", boss, org, task["task_id"])["status"] == "in_progress"
    finally:
        db.command("collMod", "history", validator={})
    changed = wait_until(lambda: seen("task.status.changed", task_id=task["task_id"]))
    assert [e["data"]["new_status"] for e in changed] == ["in_progress"]  # only what landed

    def changes():
        return [(h["field"], h["old"], h["new"]) for h in
                call(tasks, "task_history", boss, org, task["task_id"], {})["items"]]

    assert changes() == [("status", "todo", "in_progress")]
    assert changes() == [("status", "todo", "in_progress")]  # read again: not copied twice
    call(tasks, "change_status", boss, org, task["task_id"], {"status": "done"})
    assert changes() == [("status", "todo", "in_progress"), ("status", "in_progress", "done")]


def test_a_changes_events_leave_the_task_once_sent_and_the_relay_sends_what_a_crash_left(
        container_factory, mesh):
    """The events a change carries in its task are published after the call and then
    taken out of the task; those a crash left there (written, never sent) are sent by
    the relay, once its grace period is over."""
    config, tasks, _ = mesh
    org, p = make_org({"boss": "manager"})
    boss = p["boss"]["user_id"]
    task = call(tasks, "create_task", boss, org, {"title": "Carried"})
    call(tasks, "change_status", boss, org, task["task_id"], {"status": "in_progress"})
    assert wait_until(lambda: seen("task.status.changed", task_id=task["task_id"]))
    db = database(config, "tasks")
    wait_until(lambda: "outbox_at" not in db.tasks.find_one({"_id": task["task_id"]}),
               what="the sent event taken out of the task")
    assert db.tasks.find_one({"_id": task["task_id"]})["outbox_pending"] == []
    comment = call(tasks, "add_comment", boss, org, task["task_id"], {"body": "carried too"})
    assert wait_until(lambda: seen("task.comment.added", comment_id=comment["comment_id"]))
    wait_until(lambda: "outbox_at" not in db.comments.find_one({"_id": comment["comment_id"]}),
               what="the comment's sent event taken out of it")
    # what a process that died between its write and the publish leaves behind
    envelope = {**seen("task.status.changed", task_id=task["task_id"])[0],
                "event_id": f"orphan-{uuid.uuid4().hex}", "data": {
                    **seen("task.status.changed", task_id=task["task_id"])[0]["data"],
                    "new_status": "orphaned"}}
    db.tasks.update_one({"_id": task["task_id"]}, {"$set": {
        "outbox_pending": [envelope], "outbox_at": datetime(2020, 1, 1, tzinfo=timezone.utc)}})
    with_relay = container_factory(TaskService, {**config, "OUTBOX_GRACE_SECONDS": 0.1})
    with_relay.start()
    relayed = wait_until(lambda: [e for e in seen("task.status.changed", task_id=task["task_id"])
                                  if e["event_id"] == envelope["event_id"]], timeout=15,
                         what="the relayed event")
    assert relayed[0]["data"]["new_status"] == "orphaned"
    wait_until(lambda: "outbox_at" not in db.tasks.find_one({"_id": task["task_id"]}),
               what="the relayed event taken out of the task")
    health = call(tasks, "health")
    assert health["outbox"]["pending"] == 0
