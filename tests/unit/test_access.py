"""The broker and Redis rights derived for each service (shared.access), and
that every RPC a service makes is among the methods its ServiceRpc lists
(else its broker user would be refused the call)."""
import re
from pathlib import Path

import pytest

from shared import access
from shared.rpc import ServiceRpc

ROOT = Path(__file__).resolve().parents[2]


def rights(service):
    return access.broker_permissions(access.wiring(access.service_class(service)))


def allows(regex, name):
    return re.fullmatch(regex, name) is not None


def test_notifications_rights_reach_only_its_own_and_what_it_consumes():
    r = rights("notifications")
    assert allows(r["read"], "rpc-notifications")
    assert allows(r["read"], "evt-tasks-task.assigned--notifications.on_task_assigned.dlq")
    assert not allows(r["read"], "rpc-employees")
    assert not allows(r["read"], "evt-auth-user.registered--employees.on_user_registered")
    assert allows(r["write"], "notifications.events")
    for exchange in ("auth.events", "amq.default", "employees.handlers"):
        assert not allows(r["write"], exchange), exchange
    rpc = r["topic"]["nameko-rpc"]
    assert allows(rpc["write"], "employees.get_membership")
    assert allows(rpc["write"], "0b8a2f4e-1c3d-4e5f-8a9b-0c1d2e3f4a5b")  # a reply
    assert not allows(rpc["write"], "employees.add_owner")
    assert not allows(rpc["read"], "employees.*")  # may not tap others' requests


def test_the_gateway_may_call_every_service_but_consumes_nothing():
    r = rights("gateway")
    rpc = r["topic"]["nameko-rpc"]
    assert all(allows(rpc["write"], f"{name}.health") for name in access.SERVICES)
    assert not any(allows(r["read"], f"{name}.events") for name in access.SERVICES)


def test_only_auth_may_write_auth_keys():
    for service in access.SERVICES:
        rules = access.redis_rules(service)
        writable = [rule for rule in rules if rule.startswith("~")]
        assert writable == [f"~{service}:*"], service
        assert "-@dangerous" in rules
    assert "%R~auth:jwks:*" in access.redis_rules("gateway")


def test_the_web_console_may_call_only_its_operator_rpcs_and_tap_events_read_only():
    r = access.console_permissions()
    rpc = r["topic"]["nameko-rpc"]
    for allowed in ("auth.is_operator", "tasks.running_jobs", "notifications.replay_dead_letters",
                    "0b8a2f4e-1c3d-4e5f-8a9b-0c1d2e3f4a5b"):
        assert allows(rpc["write"], allowed), allowed
    for refused in ("auth.set_operator", "employees.add_owner", "tasks.create_task", "auth.revoke_sessions"):
        assert not allows(rpc["write"], refused), refused
    assert allows(r["read"], "web.events-tap") and allows(r["read"], "tasks.events")
    assert not allows(r["write"], "tasks.events") and not allows(r["read"], "rpc-tasks")
    assert not allows(r["read"], "evt-tasks-task.assigned--notifications.on_task_assigned")
    assert all(r["topic"][f"{s}.events"]["write"] == "^$" for s in access.services.SERVICES)
    rules = access.redis_rules(access.CONSOLE)
    assert [rule for rule in rules if rule.startswith(("~", "%", "&"))] == ["~web:*"]


def test_every_rpc_the_web_console_makes_is_in_its_calls():
    """``.rpc("<service>", "<method>"`` in web_svc must be among Ops.CALLS."""
    source = "\n".join(p.read_text() for p in (ROOT / "web_svc").rglob("*.py"))
    made = set(re.findall(r'\.rpc\(\s*"(\w+)",\s*"(\w+)"', source))
    assert made, "no RPC found: the pattern is stale"
    calls = access.console_calls()
    assert {(t, m) for t, m in made if m not in calls.get(t, ())} == set()


@pytest.mark.parametrize("service", [s for s in access.SERVICES if s != "gateway"])
def test_every_rpc_call_is_in_the_proxys_methods(service):
    """``self.<proxy>.<method>`` anywhere in the package (and require_member's
    get_membership) must be listed in ``ServiceRpc(..., methods=...)``."""
    cls = access.service_class(service)
    proxies = {name: member for name in dir(cls)
               if isinstance(member := getattr(cls, name), ServiceRpc)}
    source = "\n".join(p.read_text() for p in (ROOT / access.SERVICES[service]).rglob("*.py"))
    for attr, proxy in proxies.items():
        called = set(re.findall(rf"\.{attr}\.([a-z_][a-z0-9_]*)\b", source))
        if re.search(rf"require_member\([^)]*self\.{attr}\b", source):
            called.add("get_membership")
        assert proxy.methods is not None, f"{service}.{attr}: list its methods"
        assert called <= proxy.methods, f"{service} calls {called - proxy.methods} of {attr}"
