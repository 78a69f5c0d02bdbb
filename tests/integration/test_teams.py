"""The teams service against real RabbitMQ, Redis and SecantusDB, with a fake
employees service (and the real organizations and employees for the plan limit)."""
import uuid

import eventlet
import pytest
from marshmallow import ValidationError
from nameko.standalone.rpc import ServiceRpcProxy

from employee_svc.service import EmployeeService
from org_svc.service import OrganizationService
from shared.errors import Conflict, Forbidden, NotFound, PlanLimitExceeded, ValidationFailed
from team_svc.service import TeamService
from tests.helpers import wait_until
from tests.integration.orgs_fakes import FakeAuth
from tests.integration.tasks_mesh import (
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
def teams(container_factory, config):
    SEEN.clear()
    for cls in (FakeEmployees, FakeOrganizations, Listener):
        container_factory(cls, config).start()
    container = container_factory(TeamService, config)
    container.start()
    return config, container


def test_teams_are_created_listed_updated_and_deleted(teams):
    config, svc = teams
    org, p = make_org({"boss": "admin", "ann": "member"})
    boss = p["boss"]["user_id"]
    made = [call(svc, "create_team", boss, org, {"name": f"Team {i}"}) for i in range(3)]
    assert wait_until(lambda: len(seen("team.created")) == 3)
    with pytest.raises(Conflict):
        call(svc, "create_team", boss, org, {"name": "team 0"})
    with pytest.raises(Forbidden):
        call(svc, "create_team", p["ann"]["user_id"], org, {"name": "mine"})
    with pytest.raises((ValidationFailed, ValidationError)):
        call(svc, "create_team", boss, org, {"name": {"$gt": ""}})
    page = call(svc, "list_teams", p["ann"]["user_id"], org, {"limit": 2})
    assert [t["name"] for t in page["items"]] == ["Team 0", "Team 1"]
    rest = call(svc, "list_teams", boss, org, {"limit": 2, "cursor": page["next_cursor"]})
    assert [t["name"] for t in rest["items"]] == ["Team 2"] and rest["next_cursor"] is None
    # the cached list follows the change
    call(svc, "update_team", boss, org, made[0]["team_id"], {"name": "Renamed"})
    assert call(svc, "list_teams", boss, org, {"limit": 2})["items"][0]["name"] == "Renamed"
    assert call(svc, "get_team", boss, org, made[0]["team_id"])["name"] == "Renamed"
    call(svc, "delete_team", boss, org, made[0]["team_id"])
    with pytest.raises(NotFound):
        call(svc, "get_team", boss, org, made[0]["team_id"])
    assert wait_until(lambda: seen("team.deleted", team_id=made[0]["team_id"]))
    _, q = make_org({"outsider": "owner"})
    with pytest.raises(NotFound):
        call(svc, "get_team", q["outsider"]["user_id"], org, made[1]["team_id"])


def test_members_leader_and_permissions(teams):
    config, svc = teams
    org, p = make_org({"boss": "admin", "lead": "member", "ann": "member", "old": "member",
                       "cal": "member"}, status={"old": "removed"})
    _, q = make_org({"foreign": "member"})
    boss = p["boss"]["user_id"]
    team = call(svc, "create_team", boss, org, {"name": "Core"})["team_id"]
    call(svc, "add_member", boss, org, team, {"employee_id": p["lead"]["employee_id"]})
    with pytest.raises(Conflict):
        call(svc, "add_member", boss, org, team, {"employee_id": p["lead"]["employee_id"]})
    for stranger in (p["old"]["employee_id"], q["foreign"]["employee_id"], "emp-nobody"):
        with pytest.raises(NotFound):
            call(svc, "add_member", boss, org, team, {"employee_id": stranger})
    with pytest.raises(Forbidden):  # a plain member cannot add people
        call(svc, "add_member", p["ann"]["user_id"], org, team, {"employee_id": p["ann"]["employee_id"]})
    added = wait_until(lambda: seen("team.member.added", team_id=team))
    assert added[0]["data"]["user_id"] == p["lead"]["user_id"] and added[0]["data"]["team_name"] == "Core"

    result = call(svc, "set_leader", boss, org, team, {"employee_id": p["lead"]["employee_id"]})
    assert result["leader_id"] == p["lead"]["employee_id"]
    changed = wait_until(lambda: seen("team.leader.changed", team_id=team))[0]["data"]
    assert (changed["old_leader_id"], changed["new_leader_id"]) == (None, p["lead"]["employee_id"])
    with pytest.raises((ValidationFailed, ValidationError)):  # the leader must be a member
        call(svc, "set_leader", boss, org, team, {"employee_id": p["ann"]["employee_id"]})
    # the leader may now manage members even as an org "member"
    call(svc, "add_member", p["lead"]["user_id"], org, team, {"employee_id": p["ann"]["employee_id"]})
    # but not hand out the leader seat: that is team.update's (a manager's), as PUT .../leader
    with pytest.raises(Forbidden):
        call(svc, "add_member", p["lead"]["user_id"], org, team,
             {"employee_id": p["cal"]["employee_id"], "role": "leader"})
    assert call(svc, "get_team", boss, org, team)["leader_id"] == p["lead"]["employee_id"]
    assert {t["team_id"] for t in call(svc, "list_teams", boss, org,
                                       {"employee_id": p["ann"]["employee_id"]})["items"]} == {team}

    with pytest.raises(Forbidden):  # permissions are an admin's
        call(svc, "set_permissions", p["lead"]["user_id"], org, team,
             {"permissions": {p["ann"]["employee_id"]: ["task.assign_team"]}})
    perms = call(svc, "set_permissions", boss, org, team,
                 {"permissions": {p["ann"]["employee_id"]: ["task.assign_team"]}})
    assert perms["permissions"] == {p["ann"]["employee_id"]: ["task.assign_team"]}
    assert wait_until(lambda: seen("team.permission.granted", employee_id=p["ann"]["employee_id"]))
    # a member granted team.manage_members may add members, not a leader (taking the
    # team over by adding themselves as one)
    call(svc, "set_permissions", boss, org, team,
         {"permissions": {p["ann"]["employee_id"]: ["team.manage_members"]}})
    with pytest.raises(Forbidden):
        call(svc, "add_member", p["ann"]["user_id"], org, team,
             {"employee_id": p["cal"]["employee_id"], "role": "leader"})
    call(svc, "add_member", p["ann"]["user_id"], org, team, {"employee_id": p["cal"]["employee_id"]})
    assert call(svc, "get_team", boss, org, team)["leader_id"] == p["lead"]["employee_id"]
    call(svc, "set_permissions", boss, org, team, {"permissions": {}})
    assert wait_until(lambda: seen("team.permission.revoked", permission="task.assign_team"))
    with pytest.raises((ValidationFailed, ValidationError)):
        call(svc, "set_permissions", boss, org, team, {"permissions": {"$where": ["x"]}})

    call(svc, "remove_member", boss, org, team, p["ann"]["employee_id"])
    with pytest.raises(NotFound):
        call(svc, "remove_member", boss, org, team, p["ann"]["employee_id"])
    assert wait_until(lambda: seen("team.member.removed", employee_id=p["ann"]["employee_id"]))


def test_employee_removed_leaves_every_team_and_a_leader_seat_empty(teams):
    config, svc = teams
    org, p = make_org({"boss": "admin", "lead": "member", "ann": "member"})
    boss, lead = p["boss"]["user_id"], p["lead"]["employee_id"]
    a = call(svc, "create_team", boss, org, {"name": "A"})["team_id"]
    b = call(svc, "create_team", boss, org, {"name": "B"})["team_id"]
    call(svc, "add_member", boss, org, a, {"employee_id": lead, "role": "leader"})
    call(svc, "add_member", boss, org, b, {"employee_id": lead})
    call(svc, "add_member", boss, org, b, {"employee_id": p["ann"]["employee_id"]})
    event = dispatch(config, "employees", "employee.removed", {
        "org_id": org, "employee_id": lead, "user_id": p["lead"]["user_id"], "email": "x@example.com",
        "name": "Lead", "org_name": "Org", "removed_by_user_id": boss}, actor_id=boss)
    wait_until(lambda: len(seen("team.member.removed", employee_id=lead)) == 2)
    assert call(svc, "get_team", boss, org, a)["leader_id"] is None
    assert [m["employee_id"] for m in call(svc, "get_team", boss, org, b)["members"]] == \
        [p["ann"]["employee_id"]]
    leader = wait_until(lambda: seen("team.leader.changed", team_id=a, old_leader_id=lead))
    assert leader[0]["data"]["new_leader_id"] is None
    # the same fact again (even under a new event id) changes nothing and publishes nothing
    dispatch(config, "employees", "employee.removed", event["data"], actor_id=boss)
    db = database(config, "teams")
    wait_until(lambda: db.handled_events.count_documents(
        {"_id": {"$regex": "^teams.on_employee_removed:"}, "state": "done"}) == 2)
    assert len(seen("team.member.removed", employee_id=lead)) == 2
    dispatch(config, "organizations", "organization.deleted", {"org_id": org})
    wait_until(lambda: len(seen("team.deleted")) == 2)
    assert db.teams.count_documents({"org_id": org}) == 0
    assert len(seen("team.member.removed", employee_id=lead)) == 2


def test_the_plan_limits_teams_as_the_real_organizations_service_says(container_factory,
                                                                      make_config, unique):
    config = make_config(ORG_PLANS={"free": {"employees": 5, "teams": 2}})
    containers = {}
    for cls in (OrganizationService, EmployeeService, FakeAuth, TeamService):
        containers[cls.name] = container_factory(cls, config)
        containers[cls.name].start()
    user_id = uuid.uuid4().hex
    FakeAuth.users[user_id] = {"user_id": user_id, "email": f"tess-{unique}@example.com",
                               "name": "Tess", "email_verified": True}
    org_id = call(containers["organizations"], "create_org", user_id, {"name": "Acme"})["org_id"]

    def create(i):  # over AMQP, as the gateway calls it (one proxy per concurrent caller)
        try:
            with ServiceRpcProxy("teams", config) as teams:
                return teams.create_team(user_id, org_id, {"name": f"T{i}"})
        except PlanLimitExceeded as exc:
            return exc

    # a burst of four on a plan of two: the org's counts (from events) lag behind
    results = list(eventlet.GreenPool(4).imap(create, range(4)))
    refused = [r for r in results if isinstance(r, PlanLimitExceeded)]
    assert len(refused) == 2 and refused[0].extra == {"limit": 2, "resource": "teams"}
    assert database(config, "teams").teams.count_documents({"org_id": org_id}) == 2
    call(containers["organizations"], "set_plan", org_id, "pro")
    assert call(containers["teams"], "create_team", user_id, org_id, {"name": "T9"})["name"] == "T9"
