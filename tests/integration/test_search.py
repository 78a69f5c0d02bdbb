"""The search service against real RabbitMQ, Redis and SecantusDB, with a real
tantivy index on disk: events in -> searchable (the text read from the owner),
deletes and replays, another org's data never returned, the rebuild. The
owners (tasks, employees, teams) are small fakes holding their records."""
from __future__ import annotations

import pytest

from search_svc.service import SearchService
from shared.errors import NotFound
from shared.rpc import rpc
from tests.helpers import events_handled, wait_until
from tests.integration.tasks_mesh import PEOPLE, call, dispatch, make_org
from tests.integration.tasks_mesh import FakeEmployees as MembershipEmployees

TASKS: dict[str, dict] = {}
TEAMS: dict[str, dict] = {}


def _export(records: dict, org_id, ids, after, limit, keep=lambda r: True):
    mine = {k: v for k, v in sorted(records.items())
            if (org_id is None or v["org_id"] == org_id) and keep(v)}
    if ids is not None:
        return {"items": [mine[i] for i in ids if i in mine], "next_after": None}
    keys = [k for k in mine if after is None or k > after][:limit]
    return {"items": [mine[k] for k in keys], "next_after": keys[-1] if len(keys) == limit else None}


class FakeEmployees(MembershipEmployees):
    name = "employees"

    @rpc
    def search_documents(self, org_id, employee_ids=None, after=None, limit=200):
        return _export(PEOPLE, org_id, employee_ids, after, limit,
                       keep=lambda p: p["status"] != "removed")


class FakeTasks:
    name = "tasks"

    @rpc
    def search_documents(self, org_id, task_ids=None, after=None, limit=200):
        return _export(TASKS, org_id, task_ids, after, limit)


class FakeTeams:
    name = "teams"

    @rpc
    def search_documents(self, org_id, team_ids=None, after=None, limit=200):
        return _export(TEAMS, org_id, team_ids, after, limit)


@pytest.fixture
def search(container_factory, make_config, tmp_path):
    config = make_config(SEARCH_INDEX_DIR=str(tmp_path / "index"), SEARCH_REBUILD_WHEN_EMPTY="0")
    for fake in (FakeEmployees, FakeTasks, FakeTeams):
        container_factory(fake, config).start()
    service = container_factory(SearchService, config)
    service.start()
    return config, service


def _task(org_id: str, task_id: str, title: str, description: str = "", comments=()) -> dict:
    TASKS[task_id] = {"task_id": task_id, "org_id": org_id, "title": title,
                      "description": description, "comments": list(comments), "status": "todo",
                      "priority": "medium", "assignee_id": None, "team_id": None}
    return TASKS[task_id]


def _ids(svc, user_id, org_id, q, **args):
    return [h["id"] for h in call(svc, "search", user_id, org_id, {"q": q, **args})["items"]]


def test_a_created_task_becomes_searchable_by_its_description_and_only_in_its_org(search, unique):
    config, svc = search
    org, p = make_org({"ann": "member"})
    other, q = make_org({"bob": "owner"})
    ann, bob = p["ann"]["user_id"], q["bob"]["user_id"]
    mine = _task(org, f"t-{unique}", "Quarterly report", f"reconcile the zebra{unique} ledger")
    theirs = _task(other, f"x-{unique}", f"zebra{unique} in the other org")
    for task in (mine, theirs):  # the event carries no description: the owner is asked
        dispatch(config, "tasks", "task.created", {"org_id": task["org_id"], "task_id": task["task_id"],
                                                   "title": task["title"]})
    word = f"zebra{unique}"
    wait_until(lambda: _ids(svc, ann, org, word), timeout=10, what="the task to be indexed")
    assert _ids(svc, ann, org, word) == [mine["task_id"]]
    wait_until(lambda: _ids(svc, bob, other, word), timeout=10, what="the other org's task")
    assert _ids(svc, bob, other, word) == [theirs["task_id"]]
    with pytest.raises(NotFound):  # not a member: nothing of the org exists for them
        call(svc, "search", bob, org, {"q": word})
    with pytest.raises(NotFound):
        call(svc, "suggest", bob, org, {"q": "quar"})
    assert [s["id"] for s in call(svc, "suggest", ann, org, {"q": "quar"})["items"]] == [mine["task_id"]]


def test_comments_updates_and_deletes_follow_the_owner_and_replays_change_nothing(search, unique):
    config, svc = search
    org, p = make_org({"ann": "member"})
    ann = p["ann"]["user_id"]
    task = _task(org, f"t-{unique}", f"Plan the offsite{unique}")
    created = dispatch(config, "tasks", "task.created", {"org_id": org, "task_id": task["task_id"],
                                                         "title": task["title"]})
    wait_until(lambda: _ids(svc, ann, org, f"offsite{unique}"), timeout=10, what="indexed")
    task["comments"].append(f"book the walrus{unique} room")
    dispatch(config, "tasks", "task.comment.added", {"org_id": org, "task_id": task["task_id"],
                                                     "comment_id": "c1"})
    wait_until(lambda: _ids(svc, ann, org, f"walrus{unique}"), timeout=10, what="the comment")
    task["title"] = f"Plan the retreat{unique}"
    dispatch(config, "tasks", "task.updated", {"org_id": org, "task_id": task["task_id"],
                                               "changes": {"title": task["title"]}})
    wait_until(lambda: not _ids(svc, ann, org, f"offsite{unique}"), timeout=10, what="the rename")
    assert _ids(svc, ann, org, f"retreat{unique}") == [task["task_id"]]
    del TASKS[task["task_id"]]
    dispatch(config, "tasks", "task.deleted", {"org_id": org, "task_id": task["task_id"]})
    wait_until(lambda: not _ids(svc, ann, org, f"retreat{unique}"), timeout=10, what="the delete")
    # the creation replayed late (a dead letter sent again, under a new id): the owner
    # no longer has the task, so it stays gone
    mark = events_handled("search", "on_task_created")
    dispatch(config, "tasks", "task.created", created["data"])
    dispatch(config, "tasks", "task.created", created["data"], event_id=created["event_id"])
    wait_until(lambda: events_handled("search", "on_task_created") >= mark + 2, timeout=10,
               what="the replays handled")
    assert _ids(svc, ann, org, f"retreat{unique}") == []
    assert _ids(svc, ann, org, f"offsite{unique}") == []
    assert call(svc, "index_stats", org)["documents"] == 0


def test_a_burst_of_events_handled_in_batches_indexes_every_task_once(search, unique):
    config, svc = search
    org, p = make_org({"ann": "member"})
    ann = p["ann"]["user_id"]
    tasks = [_task(org, f"b{i}-{unique}", f"Burst{unique} item") for i in range(30)]
    for task in tasks:
        dispatch(config, "tasks", "task.created", {"org_id": org, "task_id": task["task_id"],
                                                   "title": task["title"]})
    for task in tasks[:5]:  # deleted at the owner, then their deletion and a comment arrive
        del TASKS[task["task_id"]]
        dispatch(config, "tasks", "task.deleted", {"org_id": org, "task_id": task["task_id"]})
        dispatch(config, "tasks", "task.comment.added", {"org_id": org, "task_id": task["task_id"],
                                                         "comment_id": "c"})
    expected = sorted(t["task_id"] for t in tasks[5:])
    wait_until(lambda: sorted(_ids(svc, ann, org, f"burst{unique}", limit=50)) == expected,
               timeout=20, what="the 25 remaining tasks indexed, the deleted ones not")
    assert call(svc, "index_stats", org)["documents"] == 25


def test_employees_teams_typos_and_the_kinds_asked_for(search, unique):
    config, svc = search
    org, p = make_org({"ann": "member", "grace": "admin"})
    ann, grace = p["ann"], p["grace"]
    PEOPLE[grace["employee_id"]]["job_title"] = f"cartographer{unique}"
    TEAMS[f"g-{unique}"] = {"team_id": f"g-{unique}", "org_id": org, "name": "Mapping",
                            "description": f"cartographers{unique} guild", "member_count": 1}
    dispatch(config, "employees", "employee.added", {"org_id": org, "employee_id": grace["employee_id"],
                                                     "user_id": grace["user_id"], "role": "admin"})
    dispatch(config, "teams", "team.created", {"org_id": org, "team_id": f"g-{unique}",
                                               "name": "Mapping"})
    word = f"cartographer{unique}"
    wait_until(lambda: len(_ids(svc, ann["user_id"], org, word)) == 2, timeout=10,
               what="the employee and the team")
    hits = call(svc, "search", ann["user_id"], org, {"q": word})["items"]
    assert {(h["type"], h["id"]) for h in hits} == {("employee", grace["employee_id"]),
                                                   ("team", f"g-{unique}")}
    assert _ids(svc, ann["user_id"], org, word, types="team") == [f"g-{unique}"]
    typo = word[:3] + word[4:]  # a letter dropped
    assert grace["employee_id"] in _ids(svc, ann["user_id"], org, typo, types="employee")
    PEOPLE[grace["employee_id"]]["status"] = "removed"
    dispatch(config, "employees", "employee.removed", {"org_id": org, "employee_id": grace["employee_id"]})
    wait_until(lambda: _ids(svc, ann["user_id"], org, word) == [f"g-{unique}"], timeout=10,
               what="the removed employee to go")
    dispatch(config, "organizations", "organization.deleted", {"org_id": org})
    wait_until(lambda: call(svc, "index_stats", org)["documents"] == 0, timeout=10,
               what="the org's documents to go")


def test_rebuild_reindexes_an_org_from_its_owners(search, unique):
    config, svc = search
    org, p = make_org({"ann": "member"})
    for i in range(5):
        _task(org, f"r{i}-{unique}", f"ledger{unique} entry {i}")
    assert _ids(svc, p["ann"]["user_id"], org, f"ledger{unique}") == []  # no event was sent
    result = call(svc, "rebuild", org)
    assert result["indexed"] == {"task": 5, "employee": 1, "team": 0}
    page = call(svc, "search", p["ann"]["user_id"], org, {"q": f"ledger{unique}", "limit": 3})
    assert page["total"] == 5 and len(page["items"]) == 3 and page["next_cursor"]
    rest = call(svc, "search", p["ann"]["user_id"], org, {"q": f"ledger{unique}", "limit": 3,
                                                          "cursor": page["next_cursor"]})
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    assert {h["id"] for h in page["items"] + rest["items"]} == {f"r{i}-{unique}" for i in range(5)}
