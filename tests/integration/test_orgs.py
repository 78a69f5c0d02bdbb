"""The organizations service against real RabbitMQ, Redis and SecantusDB,
with the employees service beside it and auth/teams faked (orgs_fakes)."""
import marshmallow
import pytest
from nameko.events import event_handler

from org_svc.domain import personal_org_id
from org_svc.flows import org_key
from shared.errors import Conflict, NotFound, PlanLimitExceeded, ValidationFailed
from tests.helpers import wait_until
from tests.integration.orgs_fakes import Mesh


class OrgListener:
    name = "org_listener"
    seen: list = []

    @event_handler("organizations", "organization.updated")
    def updated(self, event):
        OrgListener.seen.append(event)

    @event_handler("organizations", "organization.settings.updated")
    def settings(self, event):
        OrgListener.seen.append(event)

    @event_handler("organizations", "organization.owner.changed")
    def owner(self, event):
        OrgListener.seen.append(event)

    @event_handler("organizations", "organization.deleted")
    def deleted(self, event):
        OrgListener.seen.append(event)


@pytest.fixture
def mesh(container_factory, make_config):
    config = make_config(ORG_PLANS={"free": {"employees": 5, "teams": 1}})
    OrgListener.seen = []
    container_factory(OrgListener, config).start()
    return Mesh(container_factory, config)


def seen(event_type):
    return [e for e in OrgListener.seen if e["event_type"] == event_type]


def new_org(mesh, unique, name="Acme"):
    user = mesh.register(unique, publish=False)
    org = mesh.call("organizations", "create_org", user["user_id"], {"name": name})
    # the creator is the owner as soon as create_org answers
    owner = mesh.call("employees", "get_membership", org["org_id"], user["user_id"])
    assert owner["role"] == "owner" and owner["status"] == "active"
    return user, org, owner


def my_org_ids(mesh, user_id):
    return [o["org_id"] for o in mesh.call("organizations", "list_orgs_for_user", user_id,
                                           {})["items"]]


def test_registration_creates_one_personal_org_even_when_redelivered(mesh, unique):
    user = mesh.register(unique, name="Pia Personal")
    mesh.emit("auth", "user.registered", {**user, "sealed_link": "s"})  # the same fact again
    org_id = personal_org_id(user["user_id"])
    wait_until(lambda: mesh.call("employees", "get_membership", org_id, user["user_id"]))
    org = mesh.call("organizations", "get_org", org_id)
    assert org["personal"] and org["owner_user_id"] == user["user_id"]
    assert org["name"] == "Pia Personal's workspace"
    assert org["settings"]["notification_defaults"]["email"] is True
    # listed once organizations has heard that employees made the owner (under load, a
    # moment after the membership answers); never twice
    wait_until(lambda: my_org_ids(mesh, user["user_id"]) == [org_id], what="the org listed once")
    assert mesh.store("organizations").db.orgs.count_documents(
        {"owner_user_id": user["user_id"]}) == 1


def test_create_list_and_update_invalidates_the_cached_org(mesh, unique):
    user, org, owner = new_org(mesh, unique)
    assert org["subscription"] == {"plan": "free", "limits": {"employees": 5, "teams": 1}}
    assert org["org_id"] in my_org_ids(mesh, user["user_id"])
    mesh.call("organizations", "get_org", org["org_id"])
    assert list(mesh.redis("organizations").scan_iter(f"{org_key(org['org_id'])}|*"))
    renamed = mesh.call("organizations", "update_org", owner["user_id"], org["org_id"], {"name": "Acme 2"})
    assert renamed["name"] == "Acme 2"
    assert mesh.call("organizations", "get_org", org["org_id"])["name"] == "Acme 2"
    event = wait_until(lambda: seen("organization.updated"))[0]
    assert event["data"]["changes"] == {"name": "Acme 2"} and event["org_id"] == org["org_id"]
    for bad in ({"name": ""}, {"name": "x" * 101}, {"name": {"$gt": ""}}, {}):
        with pytest.raises(marshmallow.ValidationError):
            mesh.call("organizations", "update_org", owner["user_id"], org["org_id"], bad)
    assert mesh.call("organizations", "get_org", org["org_id"])["name"] == "Acme 2"


def test_list_mine_paginates(mesh, unique):
    user = mesh.register(unique, publish=False)
    made = {mesh.call("organizations", "create_org", user["user_id"], {"name": f"O{i}"})["org_id"]
            for i in range(3)}
    got, cursor = [], None
    while True:
        page = mesh.call("organizations", "list_orgs_for_user", user["user_id"],
                         {"limit": 2, **({"cursor": cursor} if cursor else {})})
        got += [o["org_id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(got) == sorted(made)


def test_settings_are_validated_merged_and_announced(mesh, unique):
    _, org, owner = new_org(mesh, unique)
    org_id = org["org_id"]
    settings = mesh.call("organizations", "update_settings", owner["user_id"], org_id, {
        "timezone": "Europe/Paris", "working_days": ["mon", "tue"],
        "notification_defaults": {"push": True}})
    assert settings["timezone"] == "Europe/Paris" and settings["working_days"] == ["mon", "tue"]
    assert settings["notification_defaults"] == {"email": True, "in_app": True, "push": True,
                                                 "digest": "off"}
    assert mesh.call("organizations", "get_org", org_id)["settings"] == settings
    event = wait_until(lambda: seen("organization.settings.updated"))[0]
    assert event["data"] == {"org_id": org_id, "settings": settings}
    for bad in ({"colour": "red"}, {"timezone": "Mars/Olympus"},
                {"notification_defaults": {"sms": True}}, {"working_days": ["mon", "mon"]},
                {"working_days": ["funday"]}, {"default_task_priority": "whenever"},
                {"locale": "x" * 10_000}, {"timezone": {"$gt": ""}}):
        with pytest.raises(marshmallow.ValidationError):
            mesh.call("organizations", "update_settings", owner["user_id"], org_id, bad)
    assert mesh.call("organizations", "get_org", org_id)["settings"] == settings


def test_soft_deleted_org_is_invisible(mesh, unique):
    user, org, owner = new_org(mesh, unique)
    mesh.call("organizations", "delete_org", owner["user_id"], org["org_id"])
    with pytest.raises(NotFound):
        mesh.call("organizations", "get_org", org["org_id"])
    with pytest.raises(NotFound):
        mesh.call("organizations", "delete_org", owner["user_id"], org["org_id"])
    assert org["org_id"] not in my_org_ids(mesh, user["user_id"])
    assert mesh.store("organizations").db.orgs.find_one({"_id": org["org_id"]})["deleted_at"]
    assert mesh.call("employees", "get_membership", org["org_id"], user["user_id"]) is None
    assert seen("organization.deleted")[0]["data"] == {"org_id": org["org_id"]}


def test_ownership_transfer(mesh, unique):
    user, org, owner = new_org(mesh, unique)
    org_id = org["org_id"]
    bob = mesh.register(unique, name="Bob", publish=False)
    stranger = mesh.register(unique, name="Stan", publish=False)
    mesh.call("employees", "add_employee", owner["user_id"], org_id, {"email": bob["email"]})
    for target in (stranger["user_id"], user["user_id"], "no such user"):
        with pytest.raises((ValidationFailed, marshmallow.ValidationError)):
            mesh.call("organizations", "transfer_ownership", owner["user_id"], org_id,
                      {"user_id": target})
    done = mesh.call("organizations", "transfer_ownership", owner["user_id"], org_id,
                     {"user_id": bob["user_id"]})
    assert done["owner_user_id"] == bob["user_id"]
    # the roles swap before the answer: the next request sees them
    assert mesh.call("employees", "get_membership", org_id, bob["user_id"])["role"] == "owner"
    assert mesh.call("employees", "get_membership", org_id, user["user_id"])["role"] == "admin"
    event = wait_until(lambda: seen("organization.owner.changed"))[0]["data"]
    assert event == {"org_id": org_id, "old_owner_user_id": user["user_id"],
                     "new_owner_user_id": bob["user_id"]}


def test_subscription_plan_and_team_limit(mesh, unique):
    _, org, owner = new_org(mesh, unique)
    org_id = org["org_id"]
    assert mesh.call("organizations", "get_subscription", org_id) == {
        "plan": "free", "limits": {"employees": 5, "teams": 1},
        "usage": {"employees": 1, "teams": 0}}
    mesh.call("organizations", "check_plan_limit", org_id, "teams")
    mesh.emit("teams", "team.created", {"org_id": org_id, "team_id": "t1", "name": "Blue"})
    wait_until(lambda: mesh.call("organizations", "get_org", org_id)["counts"]["teams"] == 1)
    with pytest.raises(PlanLimitExceeded):
        mesh.call("organizations", "check_plan_limit", org_id, "teams")
    upgraded = mesh.call("organizations", "set_plan", org_id, "pro")
    assert upgraded["plan"] == "pro" and upgraded["limits"]["teams"] == 50
    mesh.call("organizations", "check_plan_limit", org_id, "teams")
    mesh.emit("teams", "team.created", {"org_id": org_id, "team_id": "t2", "name": "Red"})
    wait_until(lambda: mesh.call("organizations", "get_org", org_id)["counts"]["teams"] == 2)
    with pytest.raises(Conflict):  # two teams do not fit the free plan
        mesh.call("organizations", "set_plan", org_id, "free")
    with pytest.raises(marshmallow.ValidationError):
        mesh.call("organizations", "set_plan", org_id, "platinum")
    mesh.emit("teams", "team.deleted", {"org_id": org_id, "team_id": "t2", "name": "Red"})
    wait_until(lambda: mesh.call("organizations", "get_org", org_id)["counts"]["teams"] == 1)
    assert mesh.call("organizations", "set_plan", org_id, "free")["plan"] == "free"


def test_deleted_user_hands_orgs_to_an_admin_or_closes_them(mesh, unique):
    user, shared_org, owner = new_org(mesh, unique)
    alone = mesh.call("organizations", "create_org", user["user_id"], {"name": "Solo"})
    admin = mesh.register(unique, name="Adam Admin", publish=False)
    mesh.call("employees", "add_employee", owner["user_id"], shared_org["org_id"],
              {"email": admin["email"], "role": "admin"})
    mesh.emit("auth", "user.deleted", {"user_id": user["user_id"], "email": user["email"]})
    wait_until(lambda: mesh.call("organizations", "get_org", shared_org["org_id"])
               ["owner_user_id"] == admin["user_id"], what="hand-over")
    assert mesh.call("employees", "get_membership", shared_org["org_id"],
                     admin["user_id"])["role"] == "owner"
    wait_until(lambda: mesh.store("organizations").db.orgs.find_one(
        {"_id": alone["org_id"]})["deleted_at"], what="the lone org closed")
    with pytest.raises(NotFound):
        mesh.call("organizations", "get_org", alone["org_id"])
    assert my_org_ids(mesh, admin["user_id"]) == [shared_org["org_id"]]
