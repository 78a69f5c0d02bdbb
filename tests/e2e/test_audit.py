"""The audit log through the gateway, over the whole mesh: a real request
creates a task; its owner sees who did it, to which task, from which request
(correlation id and client address); a member is refused; the CSV export
parses; the org's chain verifies."""
from __future__ import annotations

import csv
import io
import uuid

from audit_svc.schemas import CSV_COLUMNS
from tests.e2e.test_flows import personal_org, register
from tests.helpers import wait_until


def test_the_owner_sees_who_did_what_from_which_request_and_a_member_may_not(running_mesh):
    owner = register(running_mesh, "auditor")
    org_id = personal_org(owner)["org_id"]
    member = register(running_mesh, "plain")
    added = owner.post(f"/orgs/{org_id}/employees", json={"email": member.email, "role": "member"})
    assert added.status_code == 201, added.text

    request_id = f"audit-e2e-{uuid.uuid4().hex}"
    created = running_mesh.request("POST", f"/orgs/{org_id}/tasks", json={"title": "Audited task"},
                                   headers={**owner.headers, "X-Request-ID": request_id})
    assert created.status_code == 201, created.text
    task_id = created.json()["task_id"]

    def task_records():
        answer = owner.get(f"/orgs/{org_id}/audit",
                           params={"object_type": "task", "object_id": task_id})
        assert answer.status_code == 200, answer.text
        return answer.json()["items"]

    (record,) = wait_until(task_records, timeout=20, what="the audit record of the new task")
    assert record["event_type"] == "task.created" and record["actor_id"] == owner.user_id
    assert record["object"] == {"type": "task", "id": task_id}
    assert record["correlation_id"] == request_id and record["client_ip"] == "127.0.0.1"
    assert record["data"]["title"] == "Audited task"

    by_actor = owner.get(f"/orgs/{org_id}/audit", params={"actor": owner.user_id, "limit": 200})
    assert {r["event_type"] for r in by_actor.json()["items"]} >= {"task.created",
                                                                   "employee.added"}
    seqs = [r["seq"] for r in owner.get(f"/orgs/{org_id}/audit", params={"limit": 200})
            .json()["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert owner.get(f"/orgs/{org_id}/audit", params={"from": "yesterday"}).status_code == 422

    for path in (f"/orgs/{org_id}/audit", f"/orgs/{org_id}/audit.csv"):
        refused = member.get(path)
        assert refused.status_code == 403, refused.text
        assert refused.headers["Content-Type"].startswith("application/problem+json")

    export = owner.get(f"/orgs/{org_id}/audit.csv", params={"event_type": "task.created"})
    assert export.status_code == 200, export.text
    assert export.headers["Content-Type"].startswith("text/csv")
    assert export.headers["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["object_id"], r["correlation_id"], r["actor_id"]) for r in rows] == [
        (task_id, request_id, owner.user_id)]

    verdict = running_mesh.operator("audit", "verify_chain", org_id)
    assert verdict["ok"] and verdict["break"] is None and verdict["checked"] >= 3
