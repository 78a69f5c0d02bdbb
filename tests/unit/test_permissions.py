"""The permission table: every role x every action, and the owner protections."""
import itertools

import pytest

from shared.errors import Conflict, Forbidden
from shared.permissions import (
    _LOWEST_ROLE,
    ACTIONS,
    ORG_ROLES,
    RANK,
    check_removal,
    check_role_change,
    role_allows,
    team_role_allows,
)


@pytest.mark.parametrize("role,action", list(itertools.product(ORG_ROLES, ACTIONS)))
def test_every_role_and_action(role, action):
    assert role_allows(role, action) is (RANK[role] >= RANK[_LOWEST_ROLE[action]])


def test_spot_checks_a_reader_would_expect():
    assert role_allows("member", "task.create") and not role_allows("member", "task.bulk_create")
    assert role_allows("manager", "task.bulk_create") and not role_allows("manager", "org.delete")
    assert role_allows("admin", "employee.remove") and not role_allows("admin", "org.transfer")
    assert role_allows("owner", "org.delete")
    assert not role_allows(None, "org.read") and not role_allows("guest", "org.read")
    assert team_role_allows("leader", "task.assign_team")
    assert not team_role_allows("member", "task.assign_team")
    with pytest.raises(KeyError):
        role_allows("owner", "no.such.action")


def test_admin_cannot_demote_or_remove_the_owner():
    with pytest.raises(Forbidden):
        check_role_change("admin", "owner", "member", owner_count=2)
    with pytest.raises(Forbidden):
        check_removal("admin", "owner", owner_count=2)


def test_manager_cannot_grant_above_their_own_role():
    with pytest.raises(Forbidden):
        check_role_change("manager", "member", "admin", owner_count=1)
    check_role_change("manager", "member", "manager", owner_count=1)
    with pytest.raises(Forbidden):
        check_role_change("member", "member", "member", owner_count=1)


def test_nobody_removes_or_demotes_the_last_owner():
    with pytest.raises(Conflict):
        check_role_change("owner", "owner", "admin", owner_count=1)
    with pytest.raises(Conflict):
        check_removal("owner", "owner", owner_count=1)
    check_role_change("owner", "owner", "admin", owner_count=2)
    check_removal("owner", "owner", owner_count=2)
