"""A stand-in ``employees`` for bench/task_list.py: memberships and the batch
look-up, without a database of employees to seed.

Every employee ``emp-N`` of org ``bench-org`` (and of every org whose id starts
with it: bench/task_list.py's orgs of each size) is active; user ``bench-boss``
is its manager."""
from __future__ import annotations

import json

from employee_svc.contract import MEMBERSHIP_TTL, membership_key
from shared import service as base
from shared.rpc import rpc

ORG = "bench-org"
BOSS = "bench-boss"


def employee(employee_id: str, org_id: str = ORG) -> dict:
    return {"employee_id": employee_id, "user_id": f"user-{employee_id}", "org_id": org_id,
            "email": f"{employee_id}@example.com", "name": employee_id, "role": "member",
            "status": "active", "job_title": "bench"}


class BenchEmployees(base.ServiceBase):
    name = "employees"

    @rpc
    def get_membership(self, org_id, user_id):
        """Cached where shared.tenancy looks first, as the real employees service does."""
        if org_id.startswith(ORG) and user_id == BOSS:
            membership = {"org_id": org_id, "user_id": BOSS, "employee_id": "emp-boss",
                          "role": "manager", "status": "active", "permissions": [], "teams": {}}
            self.redis.client.set(membership_key(org_id, user_id), json.dumps(membership),
                                  ex=MEMBERSHIP_TTL)
            return membership
        return None

    @rpc
    def get_employees(self, org_id, employee_ids):
        return [employee(e, org_id) for e in employee_ids
                if org_id.startswith(ORG) and e.startswith("emp-")]
