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


def test_a_batch_of_task_events_recounts_the_holders_before_and_everyone_named_once():
    service = worker_factory(EmployeeService)
    service.store.set_tasks.return_value = {"old"}
    service.store.recount_tasks_of.return_value = True
    service.on_task_reassigned([
        {"event_type": "task.reassigned", "data": {"org_id": "o1", "task_id": "t",
                                                   "old_assignee_id": "a", "new_assignee_id": "b"}},
        {"event_type": "task.reassigned", "data": {"org_id": "o1", "task_id": "t",
                                                   "old_assignee_id": "b", "new_assignee_id": "c"}},
        {"event_type": "task.reassigned", "data": {"org_id": "o1", "task_id": "u",
                                                   "new_assignee_id": "a"}}])
    service.store.set_tasks.assert_called_once_with(
        "o1", {"t": {"employee_id": "c"}, "u": {"employee_id": "a"}})  # later fields win
    service.store.recount_tasks_of.assert_called_once_with("o1", {"old", "a", "b", "c"})
    service.redis.cache.bump_versions.assert_called_once()


def test_updating_an_org_drops_its_cached_copy():
    service = worker_factory(OrganizationService, config={})
    service.redis.cache.get.return_value = {"user_id": "u", "role": "owner", "status": "active"}
    service.store.update_org.return_value = {"_id": "o1", "name": "New", "owner_user_id": "u"}
    out = service.update_org("u", "o1", {"name": "New"})
    assert out["name"] == "New"
    assert org_version_key("organizations", "o1") in service.redis.cache.bump_versions.call_args.args[0]
    event_type, data = service.events.publish.call_args.args
    assert event_type == "organization.updated" and data["changes"] == {"name": "New"}
