"""The employees service against real RabbitMQ, Redis and SecantusDB, with
the organizations service beside it and auth/teams/tasks faked as small
nameko services that publish real events."""
import json
from datetime import datetime, timedelta, timezone

import marshmallow
import pytest
from nameko.events import event_handler
from nameko.testing.services import entrypoint_waiter

from employee_svc import store as employee_store
from employee_svc.contract import membership_key, membership_tag
from employee_svc.store import drop_email_index, move_task_counts
from org_svc.domain import personal_org_id
from shared.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PlanLimitExceeded,
    PreconditionFailed,
    RateLimited,
    ValidationFailed,
)
from shared.mongo import find_by_ids
from shared.redis import RedisTools
from shared.tenancy import require_member
from tests.helpers import wait_until
from tests.integration.orgs_fakes import FakeAuth, Mesh
from tests.tokens import token_of


class Listener:
    """Records what the employees service publishes."""
    name = "listener"
    seen: list = []

    @event_handler("employees", "employee.invited")
    def invited(self, event):
        Listener.seen.append(event)

    @event_handler("employees", "employee.removed")
    def removed(self, event):
        Listener.seen.append(event)

    @event_handler("employees", "employee.role.changed")
    def role_changed(self, event):
        Listener.seen.append(event)

    @event_handler("employees", "employee.invitation.expired")
    def invitation_expired(self, event):
        Listener.seen.append(event)


@pytest.fixture
def mesh(container_factory, make_config):
    config = make_config(ORG_PLANS={"free": {"employees": 4, "teams": 1}},
                         EMPLOYEE_INVITATION_SWEEP_INTERVAL=0.2)
    Listener.seen = []
    container_factory(Listener, config).start()
    return Mesh(container_factory, config)


def events_of(event_type):
    return [e for e in Listener.seen if e["event_type"] == event_type]


def owner_org(mesh, unique, name="Olga Owner"):
    """A registered user, their personal org (via events) and their membership."""
    user = mesh.register(unique, name=name)
    org_id = personal_org_id(user["user_id"])
    owner = wait_until(lambda: mesh.call("employees", "get_membership", org_id, user["user_id"]),
                       what="the owner's membership")
    return user, org_id, owner


def add(mesh, actor, org_id, user, role="member", job_title=""):
    result = mesh.call("employees", "add_employee", actor["user_id"], org_id,
                       {"email": user["email"], "role": role, "job_title": job_title})
    assert result["status"] == 201
    return result["employee"]


def membership(mesh, org_id, user_id):
    return mesh.call("employees", "get_membership", org_id, user_id)


def test_org_created_makes_its_owner_the_first_employee_and_membership_is_cached(mesh, unique):
    user, org_id, owner = owner_org(mesh, unique)
    assert owner["role"] == "owner" and owner["status"] == "active"
    assert "org.delete" in owner["permissions"] and owner["teams"] == {}
    assert membership(mesh, org_id, user["user_id"]) == owner  # read once settled: cached
    cached = mesh.redis("employees").get(membership_key(org_id, user["user_id"]))
    assert json.loads(cached) == owner
    # the org's employee count follows the employee.added event
    wait_until(lambda: mesh.call("organizations", "get_org", org_id)["counts"]["employees"] == 1)


def test_add_registered_user_then_duplicate_is_409_and_role_must_be_in_table(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    bob = mesh.register(unique, name="Bob Builder", publish=False)
    employee = add(mesh, owner, org_id, bob, role="manager", job_title="Site Lead")
    assert employee["user_id"] == bob["user_id"] and employee["role"] == "manager"
    assert employee["name"] == "Bob Builder" and employee["email"] == bob["email"]
    with pytest.raises(Conflict):
        add(mesh, owner, org_id, bob)
    with pytest.raises(marshmallow.ValidationError):
        mesh.call("employees", "add_employee", owner["user_id"], org_id,
                  {"email": "x@example.com", "role": "emperor"})
    with pytest.raises(marshmallow.ValidationError):
        mesh.call("employees", "add_employee", owner["user_id"], org_id, {"email": {"$gt": ""}})
    wait_until(lambda: mesh.call("organizations", "get_org", org_id)["counts"]["employees"] == 2)
    # a manager cannot add an admin
    manager = membership(mesh, org_id, bob["user_id"])
    carl = mesh.register(unique, name="Carl", publish=False)
    with pytest.raises(Forbidden):
        add(mesh, manager, org_id, carl, role="admin")


def test_invitation_turns_into_a_membership_once_the_address_is_verified(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    email = f"newbie-{unique}@example.com"
    first = mesh.call("employees", "add_employee", owner["user_id"], org_id,
                      {"email": email, "role": "manager", "job_title": "Ops"})
    assert first["status"] == 202 and first["invitation"]["email"] == email
    again = mesh.call("employees", "add_employee", owner["user_id"], org_id,
                      {"email": email, "role": "manager", "job_title": "Ops"})
    assert again["invitation"]["invitation_id"] == first["invitation"]["invitation_id"]
    wait_until(lambda: len(events_of("employee.invited")) == 2)
    tokens = [token_of(mesh.config, e["data"]) for e in events_of("employee.invited")]
    assert not any(t in json.dumps(events_of("employee.invited")) for t in tokens)  # sealed
    assert tokens[0] != tokens[1]  # re-send issues a fresh token
    stored = mesh.store("employees").db.invitations.find_one({"email": email})
    assert stored["token_hash"] not in tokens and "token" not in stored  # only the hash
    listed = mesh.call("employees", "list_invitations", owner["user_id"], org_id, {})
    assert [i["email"] for i in listed["items"]] == [email]

    user = mesh.register(unique, name="Newbie Person", verified=False, publish=False)
    FakeAuth.users[user["user_id"]]["email"] = email
    mesh.emit("auth", "user.registered", {**FakeAuth.users[user["user_id"]],
                                          "sealed_link": "s"})
    mine = mesh.call("employees", "my_invitations", user["user_id"], {})["items"]
    assert [(i["org_id"], i["role"], i["org_name"]) for i in mine] == [
        (org_id, "manager", "Olga Owner's workspace")]
    # a verification event of an address auth does not (or no longer) hold verified is
    # not enough: auth is asked who holds it now
    with entrypoint_waiter(mesh.containers["employees"], "on_email_verified"):
        mesh.emit("auth", "user.email.verified", {"user_id": user["user_id"], "email": email})
    assert membership(mesh, org_id, user["user_id"]) is None
    FakeAuth.users[user["user_id"]]["email_verified"] = True
    mesh.emit("auth", "user.email.verified", {"user_id": user["user_id"], "email": email})
    joined = wait_until(lambda: membership(mesh, org_id, user["user_id"]),
                        what="the invited user's membership")
    assert joined["role"] == "manager" and joined["status"] == "active"
    assert mesh.call("employees", "list_invitations", owner["user_id"], org_id, {})["items"] == []
    assert mesh.call("employees", "my_invitations", user["user_id"], {})["items"] == []


def test_invitation_emails_are_rate_limited_per_address_and_per_org(container_factory,
                                                                     make_config, unique):
    config = make_config(INVITATION_RATE_LIMITS={"address": "2/3600", "org": "3/3600"})
    Listener.seen = []
    container_factory(Listener, config).start()
    mesh = Mesh(container_factory, config)
    _, org_id, owner = owner_org(mesh, unique)
    email = f"spam-target-{unique}@example.com"
    for _ in range(2):
        mesh.call("employees", "add_employee", owner["user_id"], org_id, {"email": email})
    stored = mesh.store("employees").db.invitations.find_one({"email": email})
    with pytest.raises(RateLimited) as refused:  # the third mail to one address
        mesh.call("employees", "add_employee", owner["user_id"], org_id, {"email": email})
    assert int(refused.value.extra["headers"]["Retry-After"]) > 0
    # refused before anything changed: the token sent last still works, no third mail
    assert mesh.store("employees").db.invitations.find_one({"email": email}) == stored
    mesh.call("employees", "add_employee", owner["user_id"], org_id,
              {"email": f"other-{unique}@example.com"})
    with pytest.raises(RateLimited):  # the org's fourth invitation within the period
        mesh.call("employees", "add_employee", owner["user_id"], org_id,
                  {"email": f"third-{unique}@example.com"})
    assert mesh.store("employees").db.invitations.count_documents({"org_id": org_id}) == 2
    wait_until(lambda: len(events_of("employee.invited")) == 3)


def test_accepting_an_invitation_needs_the_verified_invited_email_and_is_single_use(
        mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    invitee = mesh.register(unique, name="Ivy Invitee", verified=False, publish=False)
    stranger = mesh.register(unique, name="Stan Stranger", publish=False)
    email = invitee["email"]
    FakeAuth.users.pop(invitee["user_id"])  # not registered yet when invited
    mesh.call("employees", "add_employee", owner["user_id"], org_id, {"email": email})
    FakeAuth.users[invitee["user_id"]] = invitee
    token = token_of(mesh.config, wait_until(lambda: events_of("employee.invited"))[0]["data"])

    with pytest.raises(Forbidden):
        mesh.call("employees", "accept_invitation", stranger["user_id"], token)
    with pytest.raises(Forbidden):  # email not verified yet
        mesh.call("employees", "accept_invitation", invitee["user_id"], token)
    invitee["email_verified"] = True
    employee = mesh.call("employees", "accept_invitation", invitee["user_id"], token)
    assert employee["org_id"] == org_id and employee["user_id"] == invitee["user_id"]
    with pytest.raises(NotFound):
        mesh.call("employees", "accept_invitation", invitee["user_id"], token)
    with pytest.raises(NotFound):
        mesh.call("employees", "accept_invitation", invitee["user_id"], "bogus-token")


def test_revoked_invitation_cannot_be_accepted(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    user = mesh.register(unique, name="Rita Revoked", publish=False)
    FakeAuth.users.pop(user["user_id"])
    invitation = mesh.call("employees", "add_employee", owner["user_id"], org_id,
                           {"email": user["email"]})["invitation"]
    FakeAuth.users[user["user_id"]] = user
    token = token_of(mesh.config, wait_until(lambda: events_of("employee.invited"))[0]["data"])
    mesh.call("employees", "revoke_invitation", owner["user_id"], org_id, invitation["invitation_id"])
    with pytest.raises(NotFound):
        mesh.call("employees", "revoke_invitation", owner["user_id"], org_id, invitation["invitation_id"])
    with pytest.raises(NotFound):
        mesh.call("employees", "accept_invitation", user["user_id"], token)


def test_an_invitation_past_its_expiry_expires_without_being_read(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    old, fresh = (mesh.call("employees", "add_employee", owner["user_id"], org_id,
                            {"email": f"{who}-{unique}@example.com"})["invitation"]
                  for who in ("old", "fresh"))
    db = mesh.store("employees").db
    past = datetime.now(timezone.utc) - timedelta(minutes=1)  # as if invited 7 days ago
    db.invitations.update_one({"_id": old["invitation_id"]}, {"$set": {"expires_at": past}})
    [event] = wait_until(lambda: events_of("employee.invitation.expired"), what="the sweep")
    assert event["data"]["invitation_id"] == old["invitation_id"] and event["org_id"] == org_id
    assert event["data"]["email"] == old["email"] and "token" not in event["data"]
    assert db.invitations.find_one({"_id": old["invitation_id"]})["status"] == "expired"
    listed = mesh.call("employees", "list_invitations", owner["user_id"], org_id, {})["items"]
    assert [i["invitation_id"] for i in listed] == [fresh["invitation_id"]]
    assert mesh.call("employees", "expire_invitations") == 0  # once, on any replica
    assert len(events_of("employee.invitation.expired")) == 1


def test_role_change_is_seen_by_the_next_request_at_once(mesh, unique):
    owner_user, org_id, owner = owner_org(mesh, unique)
    bob = mesh.register(unique, name="Bob", publish=False)
    employee = add(mesh, owner, org_id, bob)
    tools = RedisTools(mesh.redis("employees"), "test", 60)

    class Employees:  # the tenancy check's RPC, answered by the real service
        def get_membership(self, org, user):
            return membership(mesh, org, user)

    assert require_member(tools, Employees(), org_id, bob["user_id"])["role"] == "member"
    assert mesh.redis("employees").get(membership_key(org_id, bob["user_id"]))  # cached
    with pytest.raises(Forbidden):
        require_member(tools, Employees(), org_id, bob["user_id"], "employee.add")

    changed = mesh.call("employees", "update_employee", owner["user_id"], org_id, employee["employee_id"],
                        {"role": "manager", "job_title": "Foreman"})
    assert changed["role"] == "manager" and changed["job_title"] == "Foreman"
    assert mesh.redis("employees").get(membership_key(org_id, bob["user_id"])) is None
    assert require_member(tools, Employees(), org_id, bob["user_id"],
                          "employee.add")["role"] == "manager"
    event = wait_until(lambda: events_of("employee.role.changed"))[0]
    assert event["data"]["old_role"] == "member" and event["data"]["new_role"] == "manager"

    manager = membership(mesh, org_id, bob["user_id"])
    owner_employee = mesh.call("employees", "get_employee_by_user", org_id,
                               owner_user["user_id"])
    with pytest.raises(Forbidden):  # a manager cannot grant above their own role
        mesh.call("employees", "update_employee", manager["user_id"], org_id, employee["employee_id"],
                  {"role": "admin"})
    with pytest.raises(Forbidden):  # nor touch the owner
        mesh.call("employees", "update_employee", manager["user_id"], org_id,
                  owner_employee["employee_id"], {"role": "member"})
    with pytest.raises(Conflict):  # the last owner stays an owner
        mesh.call("employees", "update_employee", owner["user_id"], org_id,
                  owner_employee["employee_id"], {"role": "admin"})
    with pytest.raises(Conflict):
        mesh.call("employees", "remove_employee", owner["user_id"], org_id, owner_employee["employee_id"])


def test_an_employees_version_moves_with_its_task_counts(mesh, unique):
    """The counts live in their own collection, yet the employee's version (its ETag)
    moves when they do: no 304 with stale counts, and an If-Match from before the
    counts changed is refused (412) and writes nothing."""
    _, org_id, owner = owner_org(mesh, unique)
    bob = mesh.register(unique, name="Bob", publish=False)
    b = add(mesh, owner, org_id, bob)

    def get():
        return mesh.call("employees", "get_employee", owner["user_id"], org_id, b["employee_id"])

    before = get()
    mesh.emit("tasks", "task.assigned", {"org_id": org_id, "task_id": "t1", "title": "x",
                                         "assignee_id": b["employee_id"],
                                         "assignee_user_id": bob["user_id"]})
    after = wait_until(lambda: (e := get())["task_counts"]["open"] == 1 and e)
    assert after["version"] > before["version"]
    with pytest.raises(PreconditionFailed):
        mesh.call("employees", "update_employee", owner["user_id"], org_id, b["employee_id"],
                  {"job_title": "stale"}, if_version=before["version"])
    assert get()["job_title"] == ""
    updated = mesh.call("employees", "update_employee", owner["user_id"], org_id,
                        b["employee_id"], {"job_title": "fresh"}, if_version=after["version"])
    assert updated["job_title"] == "fresh" and updated["version"] > after["version"]
    assert updated["task_counts"] == {"open": 1, "completed": 0}
    with pytest.raises(PreconditionFailed):
        mesh.call("employees", "remove_employee", owner["user_id"], org_id, b["employee_id"],
                  if_version=after["version"])
    mesh.call("employees", "remove_employee", owner["user_id"], org_id, b["employee_id"],
              if_version=updated["version"])


def test_a_task_event_that_moves_no_count_leaves_the_employees_version(mesh, unique):
    """``task.completed`` after the ``task.status.changed`` to done, or a move between
    two open statuses, changes no count: the employee's version (its ETag) stays, so
    cached copies stay valid; a move that does change a count still moves it."""
    _, org_id, owner = owner_org(mesh, unique)
    bob = mesh.register(unique, name="Bob", publish=False)
    b = add(mesh, owner, org_id, bob)
    handled = mesh.store("employees").db.handled_events

    def get():
        return mesh.call("employees", "get_employee", owner["user_id"], org_id, b["employee_id"])

    def emit_and_wait(event_type, data, handler):
        event_id = mesh.emit("tasks", event_type, {"org_id": org_id, "task_id": "t1", **data})
        wait_until(lambda: handled.find_one({"_id": f"employees.{handler}:{event_id}",
                                             "state": "done"}), what=f"{event_type} handled")

    who = {"assignee_id": b["employee_id"]}
    emit_and_wait("task.assigned", {"title": "x", **who, "assignee_user_id": bob["user_id"]},
                  "on_task_assigned")
    emit_and_wait("task.status.changed", {**who, "old_status": "todo", "new_status": "done"},
                  "on_task_status_changed")
    done = get()
    assert done["task_counts"] == {"open": 0, "completed": 1}
    emit_and_wait("task.completed", who, "on_task_completed")
    emit_and_wait("task.status.changed", {**who, "old_status": "done", "new_status": "done"},
                  "on_task_status_changed")
    assert get()["version"] == done["version"]
    emit_and_wait("task.status.changed", {**who, "old_status": "done", "new_status": "in_progress"},
                  "on_task_status_changed")
    reopened = get()
    assert reopened["task_counts"] == {"open": 1, "completed": 0}
    assert reopened["version"] > done["version"]
    emit_and_wait("task.status.changed", {**who, "old_status": "in_progress", "new_status": "todo"},
                  "on_task_status_changed")
    assert get()["version"] == reopened["version"]


def test_status_change_and_soft_removal(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    bob = mesh.register(unique, name="Bob", publish=False)
    employee = add(mesh, owner, org_id, bob)
    mesh.call("employees", "update_employee", owner["user_id"], org_id, employee["employee_id"],
              {"status": "inactive"})
    assert membership(mesh, org_id, bob["user_id"])["status"] == "inactive"
    mesh.call("employees", "update_employee", owner["user_id"], org_id, employee["employee_id"],
              {"status": "active"})
    wait_until(lambda: mesh.call("organizations", "get_org", org_id)["counts"]["employees"] == 2)

    mesh.call("employees", "remove_employee", owner["user_id"], org_id, employee["employee_id"])
    stored = mesh.store("employees").db.employees.find_one({"_id": employee["employee_id"]})
    assert stored["status"] == "removed" and stored["removed_at"]
    assert stored["removed_by"] == owner["user_id"]
    assert membership(mesh, org_id, bob["user_id"])["status"] == "removed"
    with pytest.raises(NotFound):
        mesh.call("employees", "get_employee", owner["user_id"], org_id, employee["employee_id"])
    with pytest.raises(NotFound):
        mesh.call("employees", "remove_employee", owner["user_id"], org_id, employee["employee_id"])
    ids = [e["employee_id"] for e in mesh.call("employees", "list_employees", owner["user_id"], org_id,
                                                {})["items"]]
    assert employee["employee_id"] not in ids
    removed = wait_until(lambda: events_of("employee.removed"))[0]["data"]
    assert removed["employee_id"] == employee["employee_id"]
    assert removed["removed_by_user_id"] == owner["user_id"]
    wait_until(lambda: mesh.call("organizations", "get_org", org_id)["counts"]["employees"] == 1)


def test_list_filters_search_and_cursor_pagination(mesh, unique, container_factory):
    _, org_id, owner = owner_org(mesh, unique, name="Zed Owner")
    mesh.call("organizations", "set_plan", org_id, "pro")
    people = [("Alice Archer", "manager", "Backend Engineer"),
              ("Albert Stone", "member", "Designer"),
              ("Bianca Alvarez", "member", "Backend Lead"),
              ("Cyril Cole", "member", "Accountant")]
    by_name = {}
    for name, role, title in people:
        by_name[name] = add(mesh, owner, org_id, mesh.register(unique, name=name,
                                                               publish=False), role, title)

    def names(**query):
        return sorted(e["name"] for e in mesh.call("employees", "list_employees", owner["user_id"], org_id,
                                                   query)["items"])

    assert names(role="manager") == ["Alice Archer"]
    assert names(q="al") == ["Albert Stone", "Alice Archer", "Bianca Alvarez"]
    assert names(q="BACK") == ["Alice Archer", "Bianca Alvarez"]  # job title, any case
    assert names(q="backend lead") == ["Bianca Alvarez"]
    assert names(q=by_name["Cyril Cole"]["email"][:8]) == ["Cyril Cole"]  # email prefix
    assert names(q="ston") == ["Albert Stone"]
    assert names(q=".*") == []  # a regex is taken literally
    assert names(role="member", q="al") == ["Albert Stone", "Bianca Alvarez"]

    seen, cursor = [], None
    while True:
        got = mesh.call("employees", "list_employees", owner["user_id"], org_id,
                        {"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert len(got["items"]) <= 2
        seen += [e["employee_id"] for e in got["items"]]
        cursor = got["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
    with pytest.raises(marshmallow.ValidationError):
        mesh.call("employees", "list_employees", owner["user_id"], org_id, {"limit": 201})
    with pytest.raises(ValidationFailed):
        mesh.call("employees", "list_employees", owner["user_id"], org_id, {"cursor": "%%%not-a-cursor"})


def test_team_events_keep_memberships_teams(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    bob = mesh.register(unique, name="Bob", publish=False)
    employee = add(mesh, owner, org_id, bob)
    membership(mesh, org_id, bob["user_id"])  # warm the cache
    base = {"org_id": org_id, "team_id": "team1", "team_name": "Blue",
            "employee_id": employee["employee_id"], "user_id": bob["user_id"]}
    mesh.emit("teams", "team.member.added", {**base, "role": "member"})
    wait_until(lambda: membership(mesh, org_id, bob["user_id"])["teams"] == {"team1": "member"})
    listed = mesh.call("employees", "list_employees", owner["user_id"], org_id, {"team_id": "team1"})["items"]
    assert [e["employee_id"] for e in listed] == [employee["employee_id"]]
    mesh.emit("teams", "team.leader.changed", {"org_id": org_id, "team_id": "team1",
                                               "old_leader_id": None,
                                               "new_leader_id": employee["employee_id"]})
    wait_until(lambda: membership(mesh, org_id, bob["user_id"])["teams"] == {"team1": "leader"})
    mesh.emit("teams", "team.member.removed", {**base, "role": "leader"})
    wait_until(lambda: membership(mesh, org_id, bob["user_id"])["teams"] == {})
    assert mesh.call("employees", "list_employees", owner["user_id"], org_id,
                     {"team_id": "team1"})["items"] == []


def test_task_counts_follow_task_events_and_survive_redelivery(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    bob, cat = (mesh.register(unique, name=n, publish=False) for n in ("Bob", "Cat"))
    b, c = add(mesh, owner, org_id, bob), add(mesh, owner, org_id, cat)

    def counts(employee):
        return mesh.call("employees", "get_employee", owner["user_id"], org_id,
                         employee["employee_id"])["task_counts"]

    assigned = {"org_id": org_id, "task_id": "t1", "title": "x",
                "assignee_id": b["employee_id"], "assignee_user_id": bob["user_id"]}
    # the same fact twice (a redelivery after a crash gets a new id at worst)
    mesh.emit("tasks", "task.assigned", assigned)
    mesh.emit("tasks", "task.assigned", assigned)
    mesh.emit("tasks", "task.assigned", {**assigned, "task_id": "t2"})
    wait_until(lambda: counts(b) == {"open": 2, "completed": 0})
    mesh.emit("tasks", "task.reassigned", {"org_id": org_id, "task_id": "t2",
                                           "old_assignee_id": b["employee_id"],
                                           "new_assignee_id": c["employee_id"]})
    wait_until(lambda: counts(c) == {"open": 1, "completed": 0})
    wait_until(lambda: counts(b) == {"open": 1, "completed": 0})
    done = {"org_id": org_id, "task_id": "t1", "assignee_id": b["employee_id"]}
    mesh.emit("tasks", "task.completed", done)
    mesh.emit("tasks", "task.status.changed", {**done, "old_status": "in_progress",
                                               "new_status": "done"})
    mesh.emit("tasks", "task.completed", done)
    wait_until(lambda: counts(b) == {"open": 0, "completed": 1})
    mesh.emit("tasks", "task.deleted", {"org_id": org_id, "task_id": "t2",
                                        "assignee_id": c["employee_id"], "status": "todo"})
    wait_until(lambda: counts(c) == {"open": 0, "completed": 0})


def burst(mesh, event_type, datas, event_ids=None):
    """``datas`` published together and handled as one batch: the employees' one event
    slot (``EVENT_CONCURRENCY=1``) is held until all of them wait for it."""
    container = mesh.containers["employees"]
    name = f"on_{event_type.replace('.', '_')}"
    handler = next(e for e in container.entrypoints if getattr(e, "method_name", "") == name)
    slots = container.__dict__["_event_slots"]
    slots.acquire()
    try:
        ids = mesh.call("tasks", "emit_many", event_type, datas, event_ids)
        wait_until(lambda: len(handler._waiting) == len(datas), what=f"the {event_type} burst")
    finally:
        slots.release()
    return ids


def test_task_events_in_batches_count_each_task_by_its_last_event(container_factory,
                                                                   make_config, unique):
    """Bursts of task events of several tasks and employees, each handled as one batch:
    two events of one task in a batch apply in order (the counts below would differ
    otherwise), and a replayed event already handled changes nothing."""
    mesh = Mesh(container_factory, make_config(EVENT_CONCURRENCY=1))
    _, org_id, owner = owner_org(mesh, unique)
    b, c, d = (add(mesh, owner, org_id, mesh.register(unique, name=n, publish=False))
               for n in ("Bob", "Cat", "Dan"))

    def counts():
        found = {name: mesh.call("employees", "get_employee", owner["user_id"], org_id,
                                 e["employee_id"])["task_counts"]
                 for name, e in (("b", b), ("c", c), ("d", d))}
        return {name: (n["open"], n["completed"]) for name, n in found.items()}

    def task(task_id, **data):
        return {"org_id": org_id, "task_id": task_id, **data}

    def expect(want):
        wait_until(lambda: counts() == want, what=f"the counts {want}")

    burst(mesh, "task.assigned", [task(t, assignee_id=e["employee_id"], title="x")
                                  for t, e in (("t1", b), ("t2", b), ("t3", b), ("t4", c),
                                               ("t5", b), ("t5", c))])
    expect({"b": (3, 0), "c": (2, 0), "d": (0, 0)})  # (open, completed)
    status = [("t1", b, "todo", "done"), ("t1", b, "done", "in_progress"),
              ("t2", b, "todo", "done"), ("t3", b, "todo", "done"), ("t4", c, "todo", "done")]
    burst(mesh, "task.status.changed", [task(t, assignee_id=e["employee_id"], old_status=old,
                                             new_status=new) for t, e, old, new in status])
    expect({"b": (1, 2), "c": (1, 1), "d": (0, 0)})
    moves = [("t3", b, d), ("t3", d, c), ("t5", c, d)]
    moved = burst(mesh, "task.reassigned", [
        task(t, old_assignee_id=old["employee_id"], new_assignee_id=new["employee_id"])
        for t, old, new in moves])
    expect({"b": (1, 1), "c": (0, 2), "d": (1, 0)})
    # t3 to Dan again, under the id already handled, then t5 to Bob: only the latter counts
    last = burst(mesh, "task.reassigned", [
        task("t3", old_assignee_id=b["employee_id"], new_assignee_id=d["employee_id"]),
        task("t5", old_assignee_id=d["employee_id"], new_assignee_id=b["employee_id"])],
        [moved[0], None])[1]
    handled = mesh.store("employees").db.handled_events
    wait_until(lambda: handled.find_one({"_id": f"employees.on_task_reassigned:{last}",
                                         "state": "done"}), what="the last burst handled")
    assert counts() == {"b": (2, 1), "c": (0, 2), "d": (0, 0)}


def test_task_holders_that_lost_a_race_are_read_and_written_again(mesh, unique, monkeypatch):
    """Another replica moves a holder and inserts a new one between the batch's read
    and its writes: both are read again and written at their new version."""
    store, org = mesh.store("employees"), f"o-{unique}"
    tasks = store.db.employee_tasks
    tasks.insert_one({"_id": f"{org}:t1", "org_id": org, "employee_id": "x", "state": "open"})
    reads = []

    def racing(collection, ids, *args, **kwargs):
        found = find_by_ids(collection, ids, *args, **kwargs)
        if not reads:
            tasks.update_one({"_id": f"{org}:t1"}, {"$set": {"employee_id": "y"},
                                                    "$inc": {"version": 1}})
            tasks.insert_one({"_id": f"{org}:t2", "org_id": org, "employee_id": "y",
                              "state": "completed"})
        reads.append(sorted(ids))
        return found

    monkeypatch.setattr(employee_store, "find_by_ids", racing)
    held = store.set_tasks(org, {"t1": {"employee_id": "z"}, "t2": {"employee_id": "z"}})
    assert held == {"x", "y"} and len(reads) == 2
    assert [(doc["employee_id"], doc["state"]) for doc in find_by_ids(
        tasks, [f"{org}:t1", f"{org}:t2"])] == [("z", "open"), ("z", "completed")]


def test_employees_have_no_email_index_and_a_start_drops_an_old_one(mesh):
    """No query reads employees by email: the index only cost every employee write."""
    store = mesh.store("employees")
    assert "email_1" not in store.db.employees.index_information()
    assert "0001_drop_employees_email_index" in [m["_id"] for m in store.applied_migrations()]
    store.db.employees.create_index("email")  # as a database from before has it
    drop_email_index(store.db)
    indexes = store.db.employees.index_information()
    assert "email_1" not in indexes and "user_id_1" in indexes
    drop_email_index(store.db)  # again: nothing to do


def test_counts_kept_in_the_employee_document_before_move_to_their_collection(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    bob, cat = (mesh.register(unique, name=n, publish=False) for n in ("Bob", "Cat"))
    b, c = add(mesh, owner, org_id, bob), add(mesh, owner, org_id, cat)
    store = mesh.store("employees")
    assert "0002_task_counts_own_collection" in [m["_id"] for m in store.applied_migrations()]
    # as a database from before holds them: in the employee documents
    store.db.employees.update_one({"_id": b["employee_id"]},
                                  {"$set": {"task_counts": {"open": 3, "completed": 2}}})
    store.db.employees.update_one({"_id": c["employee_id"]},
                                  {"$set": {"task_counts": {"open": 9, "completed": 9}}})
    # Cat's count was recounted into the new collection already: that one wins
    store.db.task_counts.update_one({"_id": f"{org_id}:{c['employee_id']}"},
                                    {"$set": {"open": 1, "completed": 0}}, upsert=True)
    move_task_counts(store.db)
    move_task_counts(store.db)  # again: nothing to do

    def counts(employee):
        return mesh.call("employees", "get_employee", owner["user_id"], org_id,
                         employee["employee_id"])["task_counts"]

    assert counts(b) == {"open": 3, "completed": 2} and counts(c) == {"open": 1, "completed": 0}
    assert store.db.employees.count_documents({"task_counts": {"$exists": True}}) == 0
    listed = mesh.call("employees", "list_employees", owner["user_id"], org_id, {})["items"]
    assert {e["employee_id"]: e["task_counts"]["open"] for e in listed}[b["employee_id"]] == 3


def test_a_bulk_chunk_counts_each_task_once(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    bob, cat = (mesh.register(unique, name=n, publish=False) for n in ("Bob", "Cat"))
    b, c = add(mesh, owner, org_id, bob), add(mesh, owner, org_id, cat)

    def counts(employee):
        return mesh.call("employees", "get_employee", owner["user_id"], org_id,
                         employee["employee_id"])["task_counts"]

    # handled before the chunk (events are not ordered): the chunk must not undo it
    mesh.emit("tasks", "task.reassigned", {"org_id": org_id, "task_id": "j-3",
                                           "old_assignee_id": b["employee_id"],
                                           "new_assignee_id": c["employee_id"]})
    wait_until(lambda: counts(c) == {"open": 1, "completed": 0})
    chunk = {"org_id": org_id, "job_id": "j", "chunk": 0, "title": "x", "priority": "low",
             "tasks": [{"task_id": f"j-{i}", "assignee_id": e["employee_id"],
                        "assignee_user_id": e["user_id"]}
                       for i, e in enumerate([b, b, c, b])]}
    mesh.emit("tasks", "task.bulk.assigned", chunk)
    wait_until(lambda: counts(b) == {"open": 2, "completed": 0})
    assert counts(c) == {"open": 2, "completed": 0}
    mesh.emit("tasks", "task.bulk.assigned", chunk)  # again, under a new event id
    mesh.emit("tasks", "task.completed", {"org_id": org_id, "task_id": "j-0",
                                          "assignee_id": b["employee_id"]})
    wait_until(lambda: counts(b) == {"open": 1, "completed": 1})
    assert counts(c) == {"open": 2, "completed": 0}


def test_plan_limit_refuses_another_employee_or_invitation(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)  # free plan here: 4 seats
    for name in ("Bob", "Cat"):
        add(mesh, owner, org_id, mesh.register(unique, name=name, publish=False))
    mesh.call("employees", "add_employee", owner["user_id"], org_id,
              {"email": f"pending-{unique}@example.com"})  # invitations hold a seat
    with pytest.raises(PlanLimitExceeded) as refused:
        add(mesh, owner, org_id, mesh.register(unique, name="Dan", publish=False))
    assert refused.value.to_problem()["type"].endswith("plan-limit")
    assert refused.value.to_problem()["status"] == 403
    with pytest.raises(PlanLimitExceeded):
        mesh.call("employees", "add_employee", owner["user_id"], org_id,
                  {"email": f"other-{unique}@example.com"})
    assert mesh.store("employees").db.invitations.count_documents({"org_id": org_id}) == 1
    mesh.call("organizations", "set_plan", org_id, "pro")
    add(mesh, owner, org_id, mesh.register(unique, name="Dan", publish=False))


def test_foreign_ids_and_bad_ids_are_not_found(mesh, unique):
    _, org_a, owner_a = owner_org(mesh, unique, name="Anna")
    _, org_b, owner_b = owner_org(mesh, unique, name="Bert")
    bob = mesh.register(unique, name="Bob", publish=False)
    b_employee = add(mesh, owner_b, org_b, bob)
    for bad in (b_employee["employee_id"], "../../etc", {"$gt": ""}, "x" * 500):
        with pytest.raises(NotFound):
            mesh.call("employees", "get_employee", owner_a["user_id"], org_a, bad)
        with pytest.raises(NotFound):
            mesh.call("employees", "remove_employee", owner_a["user_id"], org_a, bad)
    assert mesh.call("employees", "get_employees", org_a, [b_employee["employee_id"]]) == []
    got = mesh.call("employees", "get_employees", org_b, [b_employee["employee_id"], "nope"])
    assert [(e["employee_id"], e["status"]) for e in got] == [(b_employee["employee_id"],
                                                               "active")]
    a_items = mesh.call("employees", "list_employees", owner_a["user_id"], org_a, {})["items"]
    assert {e["org_id"] for e in a_items} == {org_a}


def test_user_updated_and_deleted(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    bob = mesh.register(unique, name="Bob Old", publish=False)
    employee = add(mesh, owner, org_id, bob)
    mesh.emit("auth", "user.updated", {"user_id": bob["user_id"], "email": bob["email"],
                                       "name": "Robert New", "email_verified": True})
    wait_until(lambda: mesh.call("employees", "get_employee", owner["user_id"], org_id,
                                 employee["employee_id"])["name"] == "Robert New")
    found = mesh.call("employees", "list_employees", owner["user_id"], org_id, {"q": "robert"})["items"]
    assert [e["employee_id"] for e in found] == [employee["employee_id"]]
    mesh.emit("auth", "user.deleted", {"user_id": bob["user_id"], "email": bob["email"]})
    wait_until(lambda: membership(mesh, org_id, bob["user_id"])["status"] == "removed")


def test_a_read_that_raced_a_change_cannot_cache_the_old_membership(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    client = mesh.redis("employees")
    cache = RedisTools(client, "employees", 60).cache
    key, tags = membership_key(org_id, owner["user_id"]), [membership_tag(org_id, owner["user_id"])]
    generations = cache.generations(tags)  # a reader starts
    cache.invalidate_tags(*tags)  # a change commits
    assert not cache.set(key, {**owner, "role": "stale"}, tags=tags, generations=generations)
    assert client.get(key) is None
    assert cache.set(key, owner, tags=tags, generations=cache.generations(tags))
    assert json.loads(client.get(key)) == owner


def test_active_org_ids_leave_out_orgs_left_deactivated_or_deleted(mesh, unique):
    """What /me/tasks filters by: a left or deleted org's tasks are not the user's list."""
    _, org_a, owner_a = owner_org(mesh, unique, name="Ada Owner")
    _, org_b, owner_b = owner_org(mesh, unique, name="Bea Owner")
    _, org_c, owner_c = owner_org(mesh, unique, name="Cy Owner")
    bob = mesh.register(unique, name="Bob Builder", publish=False)
    own_org = mesh.call("organizations", "create_org", bob["user_id"], {"name": "Bob's"})
    in_a, in_b, _ = (add(mesh, owner, org, bob) for owner, org in
                     ((owner_a, org_a), (owner_b, org_b), (owner_c, org_c)))
    assert mesh.call("employees", "active_org_ids", bob["user_id"]) == sorted(
        [org_a, org_b, org_c, own_org["org_id"]])
    mesh.call("employees", "remove_employee", owner_a["user_id"], org_a, in_a["employee_id"])
    mesh.call("employees", "update_employee", owner_b["user_id"], org_b, in_b["employee_id"],
              {"status": "inactive"})
    mesh.call("organizations", "delete_org", owner_c["user_id"], org_c)
    assert mesh.call("employees", "active_org_ids", bob["user_id"]) == [own_org["org_id"]]


def test_search_documents_give_the_search_service_the_orgs_employees_not_the_removed(mesh, unique):
    _, org_id, owner = owner_org(mesh, unique)
    bob = add(mesh, owner, org_id, mesh.register(unique, name="Bob Builder", publish=False),
              job_title="Site Lead")
    cy = add(mesh, owner, org_id, mesh.register(unique, name="Cy Gone", publish=False))
    mesh.call("employees", "remove_employee", owner["user_id"], org_id, cy["employee_id"])
    _, other_org, stranger = owner_org(mesh, unique, name="Stranger Danger")
    asked = [owner["employee_id"], bob["employee_id"], cy["employee_id"], stranger["employee_id"]]
    found = mesh.call("employees", "search_documents", org_id, asked)["items"]
    assert {e["employee_id"] for e in found} == {owner["employee_id"], bob["employee_id"]}
    (shown,) = [e for e in found if e["employee_id"] == bob["employee_id"]]
    assert (shown["name"], shown["job_title"], shown["email"]) == ("Bob Builder", "Site Lead", bob["email"])
    first = mesh.call("employees", "search_documents", org_id, None, None, 1)
    rest = mesh.call("employees", "search_documents", org_id, None, first["next_after"], 10)
    assert len(first["items"]) == 1 and len(rest["items"]) == 1 and rest["next_after"] is None
