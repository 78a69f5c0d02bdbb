"""Single entrypoints with their dependencies replaced (worker_factory)."""
import json

from nameko.testing.services import worker_factory

from employee_svc.contract import membership_key, membership_tag
from employee_svc.service import EmployeeService
from org_svc.service import OrganizationService
from shared.redis import org_version_key

DOC = {"_id": "e1", "org_id": "o1", "user_id": "u1", "role": "admin", "status": "active",
       "teams": {"t1": "member"}, "email": "a@x.io"}


def test_get_membership_caches_what_it_read():
    service = worker_factory(EmployeeService)
    service.store.employee_by_user.return_value = DOC
    service.get_membership("o1", "u1")
    (key, load), options = service.redis.cache.get_or_set.call_args  # the one cache, tagged
    assert key == membership_key("o1", "u1") and options["tags"] == [membership_tag("o1", "u1")]
    assert options["cache_none"] is False  # a stranger is not cached as one
    got = load()
    assert got["role"] == "admin" and got["employee_id"] == "e1" and got["teams"] == {"t1": "member"}
    json.dumps(got)  # stored as JSON


def test_get_membership_of_a_deleted_org_or_a_stranger_is_none():
    service = worker_factory(EmployeeService)
    service.redis.cache.get_or_set.side_effect = lambda key, load, **_: load()
    service.store.employee_by_user.return_value = {**DOC, "org_deleted": True}
    assert service.get_membership("o1", "u1") is None
    service.store.employee_by_user.return_value = None
    assert service.get_membership("o1", "u2") is None


def test_task_assignment_recounts_both_holders():
    service = worker_factory(EmployeeService)
    service.store.set_task.return_value = {"employee_id": "old"}
    service.on_task_reassigned({"data": {"org_id": "o1", "task_id": "t", "new_assignee_id": "new"}})
    recounted = {c.args[1] for c in service.store.recount_tasks.call_args_list}
    assert recounted == {"old", "new"}


def test_updating_an_org_drops_its_cached_copy():
    service = worker_factory(OrganizationService, config={})
    service.redis.cache.get.return_value = {"user_id": "u", "role": "owner", "status": "active"}
    service.store.update_org.return_value = {"_id": "o1", "name": "New", "owner_user_id": "u"}
    out = service.update_org("u", "o1", {"name": "New"})
    assert out["name"] == "New"
    assert org_version_key("organizations", "o1") in service.redis.cache.bump_versions.call_args.args[0]
    event_type, data = service.events.publish.call_args.args
    assert event_type == "organization.updated" and data["changes"] == {"name": "New"}
