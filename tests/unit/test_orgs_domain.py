"""Rules of the organizations and employees services (no I/O)."""
from datetime import timedelta

import marshmallow
import pytest

from employee_svc import domain as emp
from employee_svc.schemas import EmployeeAddSchema, EmployeeQuerySchema
from org_svc import domain as org
from org_svc.schemas import SettingsSchema
from shared.errors import Conflict, Forbidden, NotFound, PlanLimitExceeded
from shared.mongo import utcnow


def member(role, user_id="actor"):
    return {"role": role, "user_id": user_id}


def target(role="member", status="active", user_id="target"):
    return {"role": role, "status": status, "user_id": user_id}


def test_keywords_cover_name_job_title_and_email_lowercased():
    words = emp.keywords("Ada LOVELACE", "Ada.L@Example.com", "Chief Engineer")
    assert {"ada", "lovelace", "chief", "engineer", "ada.l@example.com", "ada.l"} <= set(words)
    assert words == sorted(set(words))


def test_search_terms_are_anchored_literal_prefixes():
    assert emp.search_terms("  Ada  Love ") == ["ada", "love"]
    assert emp.prefix_regex("a.b*") == r"^a\.b\*"


def test_membership_carries_permissions_of_the_role():
    doc = {"_id": "e1", "org_id": "o", "user_id": "u", "role": "manager", "status": "active",
           "teams": {"t": "leader"}}
    got = emp.membership(doc)
    assert got["employee_id"] == "e1" and got["teams"] == {"t": "leader"}
    assert "task.bulk_create" in got["permissions"] and "org.delete" not in got["permissions"]


def test_a_manager_cannot_add_above_their_role():
    emp.check_can_add("manager", "manager")
    with pytest.raises(Forbidden):
        emp.check_can_add("manager", "admin")


@pytest.mark.parametrize("actor,tgt,changes,owners,error", [
    ("member", "member", {"role": "manager"}, 1, Forbidden),
    ("manager", "member", {"role": "admin"}, 1, Forbidden),
    ("admin", "owner", {"role": "member"}, 2, Forbidden),
    ("owner", "owner", {"role": "admin"}, 1, Conflict),
    ("manager", "member", {"job_title": "x"}, 1, Forbidden),
    ("manager", "member", {"status": "inactive"}, 1, Forbidden),
    ("admin", "owner", {"status": "inactive"}, 1, Forbidden),
    ("owner", "owner", {"status": "inactive"}, 1, Conflict),
])
def test_forbidden_updates(actor, tgt, changes, owners, error):
    with pytest.raises(error):
        emp.check_update(member(actor), target(tgt, user_id="t2"), changes, owners)


def test_allowed_updates():
    emp.check_update(member("manager"), target("member"), {"role": "manager"}, 1)
    emp.check_update(member("admin"), target("manager"), {"status": "inactive"}, 1)
    emp.check_update(member("owner"), target("owner"), {"role": "admin"}, 2)
    emp.check_update(member("member", "me"), target("member", user_id="me"),
                     {"job_title": "My own title"}, 1)
    with pytest.raises(NotFound):
        emp.check_update(member("owner"), target(status="removed"), {}, 1)


def test_removal_rules():
    emp.check_remove(member("admin"), target("manager"), 1)
    with pytest.raises(Forbidden):
        emp.check_remove(member("manager"), target("member"), 1)
    with pytest.raises(Forbidden):
        emp.check_remove(member("admin"), target("owner"), 2)
    with pytest.raises(Conflict):
        emp.check_remove(member("owner"), target("owner"), 1)
    with pytest.raises(NotFound):
        emp.check_remove(member("owner"), target(status="removed"), 1)


def test_invitation_acceptance():
    now = utcnow()
    inv = {"status": "pending", "email": "a@x.io", "expires_at": now + timedelta(days=1)}
    user = {"email": "A@x.io", "email_verified": True}
    assert emp.check_acceptance(inv, user, now) is inv
    with pytest.raises(NotFound):
        emp.check_acceptance({**inv, "expires_at": now - timedelta(seconds=1)}, user, now)
    with pytest.raises(NotFound):
        emp.check_acceptance({**inv, "status": "accepted"}, user, now)
    with pytest.raises(NotFound):
        emp.check_acceptance(None, user, now)
    with pytest.raises(Forbidden):
        emp.check_acceptance(inv, {**user, "email": "b@x.io"}, now)
    with pytest.raises(Forbidden):
        emp.check_acceptance(inv, {**user, "email_verified": False}, now)


def test_invitation_tokens_are_random_and_stored_hashed():
    (t1, h1), (t2, h2) = emp.new_invitation_token(), emp.new_invitation_token()
    assert t1 != t2 and h1 != h2 and h1 == emp.hash_token(t1) and t1 not in h1
    assert emp.INVITATION_TTL == timedelta(days=7)


def test_task_state():
    assert emp.task_state("done") == "completed"
    assert emp.task_state("in_progress") == emp.task_state("todo") == "open"


def test_task_change_maps_each_task_event_to_its_holder_fields_and_the_employees_named():
    def change(event_type, **data):
        return emp.task_change({"event_type": event_type,
                                "data": {"org_id": "o", "task_id": "t", **data}})

    assert change("task.assigned", assignee_id="a") == ("o", "t", {"employee_id": "a"}, {"a"})
    assert change("task.reassigned", old_assignee_id="a", new_assignee_id="b") == (
        "o", "t", {"employee_id": "b"}, {"a", "b"})
    assert change("task.completed", assignee_id="a").fields == {"employee_id": "a",
                                                                "state": "completed"}
    assert change("task.status.changed", assignee_id="a", new_status="done").fields[
        "state"] == "completed"
    assert change("task.status.changed", assignee_id=None, new_status="todo") == (
        "o", "t", {"employee_id": None, "state": "open"}, frozenset())
    assert change("task.deleted", assignee_id="a", status="todo") == (
        "o", "t", {"state": "deleted"}, {"a"})


def test_employee_input_schemas_refuse_bad_input():
    with pytest.raises(marshmallow.ValidationError):
        EmployeeAddSchema().load({"email": "a@b.io", "role": "god"})
    with pytest.raises(marshmallow.ValidationError):
        EmployeeAddSchema().load({"email": {"$gt": ""}})
    with pytest.raises(marshmallow.ValidationError):
        EmployeeQuerySchema().load({"limit": "0"})
    assert EmployeeQuerySchema().load({})["limit"] == 50


def test_settings_merge_keeps_defaults_and_nested_values():
    merged = org.merge_settings({"timezone": "Europe/Paris"},
                                {"notification_defaults": {"push": True}})
    assert merged["timezone"] == "Europe/Paris" and merged["locale"] == "en"
    assert merged["notification_defaults"]["push"] is True
    assert merged["notification_defaults"]["email"] is True


def test_settings_schema_refuses_unknown_keys_and_bad_values():
    assert SettingsSchema().load({"timezone": "America/New_York"})
    for bad in ({"x": 1}, {"timezone": "Nowhere/Land"}, {"working_days": ["mon"] * 8},
                {"notification_defaults": {"fax": True}}):
        with pytest.raises(marshmallow.ValidationError):
            SettingsSchema().load(bad)


def test_plan_limits_and_downgrades():
    limits = org.limits_of({"ORG_PLANS": {"free": {"employees": 3}}}, "free")
    assert limits == {"employees": 3, "teams": 3}
    org.check_limit("free", limits, "employees", 2)
    with pytest.raises(PlanLimitExceeded) as refused:
        org.check_limit("free", limits, "employees", 3)
    assert refused.value.to_problem()["type"].endswith("/plan-limit")
    org.check_limit("enterprise", org.limits_of({}, "enterprise"), "teams", 10_000)
    with pytest.raises(Conflict):
        org.check_downgrade("free", limits, {"employees": 4, "teams": 0})
    org.check_downgrade("free", limits, {"employees": 3, "teams": 3})


def test_personal_org_id_is_deterministic():
    assert org.personal_org_id("u1") == org.personal_org_id("u1") != org.personal_org_id("u2")


def test_only_an_account_holding_the_address_verified_may_join():
    holder = {"user_id": "u1", "email": "NewHire@Company.com", "email_verified": True}
    assert emp.may_join(holder, "newhire@company.com")
    assert not emp.may_join({**holder, "email_verified": False}, "newhire@company.com")
    assert not emp.may_join(holder, "someone.else@company.com")
    assert not emp.may_join(None, "newhire@company.com")
