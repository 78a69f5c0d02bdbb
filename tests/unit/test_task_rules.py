"""The tasks service's rules: status machine, who may assign and update,
where an orphaned task goes, keywords, stats folding."""

import pytest

from shared.errors import Conflict, Forbidden
from task_svc import domain
from team_svc import domain as team_domain


def member(role="member", employee_id="e-me", teams=None):
    return {"role": role, "employee_id": employee_id, "user_id": "u-me", "status": "active",
            "teams": teams or {}}


TEAM = {"team_id": "t1", "leader_id": "e-lead", "leader_user_id": "u-lead",
        "member_ids": ["e-lead", "e-a", "e-me"], "permissions": {}}


@pytest.mark.parametrize("old,new", [("todo", "in_progress"), ("in_progress", "done"),
                                     ("in_progress", "todo"), ("done", "in_progress")])
def test_allowed_transitions_pass(old, new):
    domain.check_transition(old, new)


@pytest.mark.parametrize("old,new,allowed", [("todo", "done", ["in_progress"]),
                                             ("done", "todo", ["in_progress"]),
                                             ("todo", "todo", ["in_progress"]),
                                             ("in_progress", "in_progress", ["todo", "done"])])
def test_refused_transitions_are_409_naming_the_allowed_ones(old, new, allowed):
    with pytest.raises(Conflict) as exc:
        domain.check_transition(old, new)
    problem = exc.value.to_problem()
    assert problem["status"] == 409 and problem["allowed"] == allowed and problem["current"] == old


def test_managers_assign_anyone_members_only_themselves_or_nobody():
    assert domain.can_assign(member("manager"), None, "e-anyone")
    assert domain.can_assign(member("member"), None, "e-me")
    assert domain.can_assign(member("member"), None, None)
    assert not domain.can_assign(member("member"), None, "e-other")
    with pytest.raises(Forbidden):
        domain.require_assign(member("member"), TEAM, "e-a")


def test_a_team_leader_assigns_within_their_team_only():
    leader = member("member", employee_id="e-lead")
    assert domain.can_assign(leader, TEAM, "e-a")
    assert not domain.can_assign(leader, TEAM, "e-outsider")
    assert not domain.can_assign(leader, None, "e-a")  # a task without a team is not theirs


def test_leadership_from_the_membership_map_counts_too():
    leader = member("member", employee_id="e-x", teams={"t1": "leader"})
    team = {**TEAM, "leader_id": None, "member_ids": ["e-x", "e-a"]}
    assert domain.can_assign(leader, team, "e-a")


def test_a_granted_team_permission_lets_a_member_assign_in_that_team():
    granted = {**TEAM, "permissions": {"e-me": ["task.assign_team"]}}
    assert not domain.can_assign(member(), TEAM, "e-a")
    assert domain.can_assign(member(), granted, "e-a")


def test_updates_by_assignee_creator_leader_or_manager():
    task = {"assignee_id": "e-a", "creator_id": "e-c", "team_id": "t1"}
    assert domain.can_update(member(employee_id="e-a"), task, None)
    assert domain.can_update(member(employee_id="e-c"), task, None)
    assert domain.can_update(member(employee_id="e-lead"), task, TEAM)
    assert domain.can_update(member("manager", employee_id="e-z"), task, None)
    assert not domain.can_update(member(employee_id="e-z"), task, TEAM)
    with pytest.raises(Forbidden):
        domain.require_delete(member(employee_id="e-a"), task, None)
    domain.require_delete(member(employee_id="e-lead"), task, TEAM)


def test_an_orphaned_task_goes_to_the_team_leader_unless_the_leader_is_leaving():
    assert domain.reassignment_target(TEAM, "e-a") == ("e-lead", "u-lead")
    assert domain.reassignment_target(TEAM, "e-lead") == (None, None)
    assert domain.reassignment_target({**TEAM, "leader_id": None}, "e-a") == (None, None)
    assert domain.reassignment_target(None, "e-a") == (None, None)


def test_bulk_assignees_split_into_tasks_and_failures():
    found = {"a": {"employee_id": "a", "status": "active"},
             "b": {"employee_id": "b", "status": "suspended"}}
    valid, errors = domain.split_assignees(["a", "b", "c"], found)
    assert [e["employee_id"] for e in valid] == ["a"]
    assert errors == [{"assignee_id": "b", "error": "not an active employee"},
                      {"assignee_id": "c", "error": "not an active employee"}]
    assert domain.bulk_task_id("j1", "a") == domain.bulk_task_id("j1", "a")
    assert domain.unique_in_order(["x", "y", "x"]) == ["x", "y"]
    assert [len(c) for c in domain.chunks(list(range(1001)), 500)] == [500, 500, 1]


def test_keywords_and_search_terms_are_case_folded_words():
    assert domain.keywords("Fix the Login-page", "see RFC 9457") == \
        ["9457", "fix", "login", "page", "rfc", "see", "the"]
    assert domain.search_terms("LOG pa") == ["log", "pa"]


def test_history_diff_lists_only_changed_tracked_fields():
    old = {"title": "a", "status": "todo", "priority": "low"}
    assert domain.diff(old, {"title": "a", "status": "done", "updated_at": 1}) == \
        [("status", "todo", "done")]


def test_stats_fold_counts_rates_per_team_and_assignee():
    raw = {"groups": [{"team": "t1", "assignee": "a", "status": "done", "n": 3},
                      {"team": "t1", "assignee": "b", "status": "todo", "n": 1},
                      {"team": None, "assignee": "a", "status": "in_progress", "n": 4}],
           "overdue": 2, "completed_this_week": 1}
    stats = domain.fold_stats(raw)
    assert stats["by_status"] == {"todo": 1, "in_progress": 4, "done": 3}
    assert stats["total"] == 8 and stats["completion_rate"] == 0.375
    assert stats["per_team"] == [{"team_id": "t1", "total": 4, "done": 3, "completion_rate": 0.75}]
    assert stats["per_assignee"][0] == {"assignee_id": "a", "total": 7, "done": 3,
                                        "completion_rate": 0.4286}


def test_team_permissions_replacement_reports_grants_and_revocations():
    normalised, granted, revoked = team_domain.permission_changes(
        {"e1": ["task.assign_team"]}, {"e2": ["task.update_team"]}, {"e1", "e2"})
    assert normalised == {"e2": ["task.update_team"]}
    assert granted == [("e2", "task.update_team")] and revoked == [("e1", "task.assign_team")]


def test_team_permissions_refuse_strangers_and_unknown_permissions():
    from shared.errors import ValidationFailed
    with pytest.raises(ValidationFailed) as exc:
        team_domain.permission_changes({}, {"e9": ["task.assign_team"], "e1": ["org.delete"]}, {"e1"})
    assert set(exc.value.errors["permissions"]) == {"e9", "e1"}


def test_a_team_leader_manages_members_a_plain_member_does_not():
    team = {"_id": "t1", "leader_id": "e-lead", "members": [{"employee_id": "e-a", "role": "member"}]}
    assert team_domain.may_manage_members(member(employee_id="e-lead"), team)
    assert team_domain.may_manage_members(member("manager", employee_id="e-z"), team)
    assert not team_domain.may_manage_members(member(employee_id="e-a"), team)
    assert team_domain.leader_after_removal(team, "e-lead") is None
    assert team_domain.leader_after_removal(team, "e-a") == "e-lead"


def test_attachment_bytes_are_limited_before_and_after_decoding():
    import base64

    from shared.errors import PayloadTooLarge, ValidationFailed
    assert domain.decode_attachment(base64.b64encode(b"x" * 10).decode(), 10) == b"x" * 10
    with pytest.raises(PayloadTooLarge):
        domain.decode_attachment(base64.b64encode(b"x" * 11).decode(), 10)
    with pytest.raises(PayloadTooLarge):  # refused by length alone, never decoded
        domain.decode_attachment("A" * 10_000, 10)
    with pytest.raises(ValidationFailed):
        domain.decode_attachment("not base64!", 100)


def test_nobody_unassigns_or_takes_over_someone_elses_task_without_update_rights():
    task = {"assignee_id": "e-a", "creator_id": "e-c", "team_id": None}
    for target in (None, "e-me"):
        with pytest.raises(Forbidden):
            domain.require_reassign(member(employee_id="e-me"), task, None, target)
    domain.require_reassign(member(employee_id="e-a"), task, None, None)  # the assignee lets go
    domain.require_reassign(member("manager"), task, None, "e-z")
