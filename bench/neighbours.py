"""Stand-ins for the neighbours the tasks benchmarks need while the real ones
are built elsewhere: ``employees`` (memberships, batch look-up, and the task
count it keeps from ``task.assigned``) and ``notifications`` (one in-app
notification per ``task.assigned``). Their handlers do what the real ones do
per event (an idempotent upsert / insert), so the fan-out cost is honest.

Every employee ``emp-N`` of org ``bench-org`` is active; user ``bench-boss``
is its manager."""
from __future__ import annotations

import json

from pymongo.errors import DuplicateKeyError

from shared import service as base
from shared.events import handles
from shared.rpc import rpc
from shared.tenancy import MEMBERSHIP_TTL, membership_key

ORG = "bench-org"
BOSS = "bench-boss"


def employee(employee_id: str) -> dict:
    return {"employee_id": employee_id, "user_id": f"user-{employee_id}", "org_id": ORG,
            "email": f"{employee_id}@example.com", "name": employee_id, "role": "member",
            "status": "active", "job_title": "bench"}


class BenchEmployees(base.ServiceBase):
    name = "employees"

    @rpc
    def get_membership(self, org_id, user_id):
        """Cached where shared.tenancy looks first, as the real employees service does."""
        if org_id == ORG and user_id == BOSS:
            membership = {"org_id": ORG, "user_id": BOSS, "employee_id": "emp-boss",
                          "role": "manager", "status": "active", "permissions": [], "teams": {}}
            self.redis.client.set(membership_key(org_id, user_id), json.dumps(membership),
                                  ex=MEMBERSHIP_TTL)
            return membership
        return None

    @rpc
    def get_employees(self, org_id, employee_ids):
        return [employee(e) for e in employee_ids if org_id == ORG and e.startswith("emp-")]

    @handles("tasks", "task.assigned")
    def on_task_assigned(self, event):
        d = event["data"]
        self.store.db.counted.insert_one({"_id": d["task_id"]})  # the idempotency of a count
        self.store.db.employees.update_one({"_id": d["assignee_id"]}, {"$inc": {"task_count": 1}},
                                           upsert=True)


class BenchNotifications(base.ServiceBase):
    name = "notifications"

    @handles("tasks", "task.assigned")
    def on_task_assigned(self, event):
        d = event["data"]
        try:
            self.store.db.notifications.insert_one({"_id": f"assigned:{d['task_id']}",
                                                    "user_id": d["assignee_user_id"],
                                                    "kind": "task.assigned", "read": False})
        except DuplicateKeyError:
            pass
