"""The three flows of architecture.md, driven over HTTP against the whole mesh."""
import re
import uuid

import eventlet
import pytest

from tests.e2e.conftest import BULK_LIMIT
from tests.e2e.mailbox import text_of
from tests.helpers import wait_until

PASSWORD = "correct horse battery staple 9"


class User:
    def __init__(self, mesh, email, body):
        self.mesh, self.email = mesh, email
        self.user_id = body["user"]["user_id"]
        self.token = body["access_token"]

    @property
    def headers(self):
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path, **kwargs):
        return self.mesh.request("GET", path, headers=self.headers, **kwargs)

    def post(self, path, json=None, **kwargs):
        return self.mesh.request("POST", path, headers=self.headers, json=json, **kwargs)

    def call(self, method, path, json=None):
        return self.mesh.request(method, path, headers=self.headers, json=json)


def register(mesh, prefix="user", verified=True):
    """A new account; ``verified``: its address vouched for by an operator (only a
    verified address can be made an employee)."""
    email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
    response = mesh.request("POST", "/auth/register",
                            json={"email": email, "password": PASSWORD, "name": prefix.title()})
    assert response.status_code == 201, response.text
    user = User(mesh, email, response.json())
    if verified:
        mesh.operator("auth", "confirm_email", user.user_id)
    return user


def verify_by_link(mesh, mailbox, email):
    """Use the verification link of the last email to ``email``, as its owner would."""
    def link():
        found = [m for msg in mailbox.messages(email)
                 for m in re.findall(r"verify-email\?token=([\w\-]+)", text_of(msg))]
        return found[-1] if found else None

    token = wait_until(link, timeout=20, what=f"the verification email to {email}")
    response = mesh.request("POST", "/auth/email/verify", json={"token": token})
    assert response.status_code == 204, response.text


def personal_org(user):
    def found():
        items = user.get("/orgs").json().get("items", [])
        return items[0] if items else None

    return wait_until(found, timeout=20, interval=0.1, what="the default organization")


def employees(user, org_id, **params):
    items, cursor = [], None
    while True:
        query = {"limit": 200, **params, **({"cursor": cursor} if cursor else {})}
        page = user.get(f"/orgs/{org_id}/employees", params=query).json()
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def crew_of(mesh, owner, org_id, size, pool=8):
    """``size`` new verified accounts made members of the owner's org (each gets
    its ``employee_id``)."""
    members = list(eventlet.GreenPool(pool).imap(lambda _: register(mesh, "crew"), range(size)))
    for member in members:
        response = owner.post(f"/orgs/{org_id}/employees", json={"email": member.email, "role": "member"})
        assert response.status_code == 201, response.text
        member.employee_id = response.json()["employee_id"]
    return members


def bulk_job_under_way(owner, org_id, members, title):
    """A bulk job assigning ``title`` to every member, once its first chunk is in:
    the moment a fault test strikes. Returns the job's URL."""
    response = owner.post(f"/orgs/{org_id}/tasks/bulk", json={
        "assignee_ids": [m.employee_id for m in members], "task": {"title": title}})
    assert response.status_code == 202, response.text
    job_url = f"/orgs/{org_id}/tasks/bulk/{response.json()['job_id']}"
    wait_until(lambda: owner.get(job_url).json()["done"] > 0, timeout=30, interval=0.02,
               what="the bulk job to start")
    return job_url


def test_registration_flow(running_mesh, mailbox):
    owner = register(running_mesh, "owner", verified=False)
    org = personal_org(owner)
    assert org["owner_user_id"] == owner.user_id
    staff = wait_until(lambda: employees(owner, org["org_id"]), timeout=20, what="the owner as employee")
    assert [(e["user_id"], e["role"], e["status"]) for e in staff] == [(owner.user_id, "owner", "active")]

    wait_until(lambda: len(mailbox.messages(owner.email)) >= 2, timeout=20,
               what="the welcome and verification emails")
    assert owner.get("/users/me").json()["email_verified"] is False
    verify_by_link(running_mesh, mailbox, owner.email)
    assert owner.get("/users/me").json()["email_verified"] is True

    # a pending invitation for an email becomes a membership once its owner verifies it:
    # registering the address is not enough (anyone can type it)
    invitee_email = f"invitee-{uuid.uuid4().hex[:10]}@example.com"
    invited = owner.post(f"/orgs/{org['org_id']}/employees",
                         json={"email": invitee_email, "role": "admin", "job_title": "Engineer"})
    assert invited.status_code == 202, invited.text
    response = running_mesh.request("POST", "/auth/register", json={
        "email": invitee_email, "password": PASSWORD, "name": "Invitee"})
    assert response.status_code == 201
    invitee = User(running_mesh, invitee_email, response.json())
    pending = wait_until(lambda: invitee.get("/me/invitations").json()["items"], timeout=20,
                         what="the invitation among the invitee's pending ones")
    assert [(i["org_id"], i["role"], i["status"]) for i in pending] == [
        (org["org_id"], "admin", "pending")]
    assert invitee.get(f"/orgs/{org['org_id']}").status_code == 404  # not a member yet
    assert [e["user_id"] for e in employees(owner, org["org_id"])] == [owner.user_id]
    verify_by_link(running_mesh, mailbox, invitee_email)
    wait_until(lambda: any(e["user_id"] == invitee.user_id and e["status"] == "active"
                           for e in employees(owner, org["org_id"])),
               timeout=20, what="the invitation to become a membership")
    assert invitee.get("/me/invitations").json()["items"] == []


@pytest.fixture(scope="module")
def staffed_org(running_mesh):
    """An org on the enterprise plan with a manager and 200 members."""
    owner = register(running_mesh, "boss")
    org_id = personal_org(owner)["org_id"]
    running_mesh.operator("organizations", "set_plan", org_id, "enterprise")
    manager = register(running_mesh, "manager")
    pool = eventlet.GreenPool(10)
    members = list(pool.imap(lambda _: register(running_mesh, "member"), range(200)))
    for person, role in [(manager, "manager"), *[(m, "member") for m in members]]:
        response = owner.post(f"/orgs/{org_id}/employees", json={"email": person.email, "role": role})
        assert response.status_code == 201, response.text
        person.employee_id = response.json()["employee_id"]
    return {"org_id": org_id, "owner": owner, "manager": manager, "members": members}


@pytest.mark.timeout(600)
def test_bulk_tasks_flow(running_mesh, mailbox, staffed_org):
    org_id, manager, members = staffed_org["org_id"], staffed_org["manager"], staffed_org["members"]
    before = members[0].get("/me/tasks").json()["items"]  # warms any cache of this list
    title = f"Read the handbook {uuid.uuid4().hex[:6]}"
    response = manager.post(f"/orgs/{org_id}/tasks/bulk", json={
        "assignee_ids": [m.employee_id for m in members], "task": {"title": title, "priority": "high"}})
    assert response.status_code == 202, response.text
    job = response.json()

    def finished():
        state = manager.get(f"/orgs/{org_id}/tasks/bulk/{job['job_id']}").json()
        return state if state["status"] == "done" else None

    state = wait_until(finished, timeout=60, interval=0.2, what="the bulk job")
    assert (state["total"], state["done"], state["failed"]) == (200, 200, 0)

    for member in members:
        response = member.get("/me/tasks")
        assert response.status_code == 200, (response.status_code, response.text)
        assert [t["title"] for t in response.json()["items"]].count(title) == 1
    assert len(members[0].get("/me/tasks").json()["items"]) == len(before) + 1  # no stale list

    def everyone(pending: set, got_it) -> bool:
        pending.difference_update({m for m in list(pending) if got_it(m)})
        return not pending

    def notified(member):
        items = member.get("/notifications").json()["items"]
        return sum(title in str(n) for n in items) == 1

    def mailed(member):
        return any(title in text_of(msg) or title in (msg["Subject"] or "")
                   for msg in mailbox.messages(member.email))

    waiting = set(members)
    wait_until(lambda: everyone(waiting, notified), timeout=60, interval=0.5,
               what="an in-app notification for every assignee")
    waiting = set(members)
    try:
        wait_until(lambda: everyone(waiting, mailed), timeout=60, interval=0.5,
                   what="an email for every assignee")
    except AssertionError as exc:  # where each missing email is, so a failure explains itself
        ids = [n["notification_id"] for m in waiting for n in m.get("/notifications").json()["items"]
               if title in str(n)]
        found = [running_mesh.operator("notifications", "deliveries", i) for i in ids]
        raise AssertionError(f"{exc}: {len(waiting)} missing; their deliveries: {found}") from exc

    def counts_right():
        staff = {e["user_id"]: e for e in employees(staffed_org["owner"], org_id)}
        return all(staff[m.user_id]["task_counts"]["open"] == 1 for m in members)

    wait_until(counts_right, timeout=30, interval=0.5, what="every employee's task count")

    statuses = []
    for _ in range(BULK_LIMIT + 1):
        statuses.append(manager.post(f"/orgs/{org_id}/tasks/bulk", json={
            "assignee_ids": [members[0].employee_id], "task": {"title": "again"}}).status_code)
    assert 429 in statuses
    refused = statuses.index(429)
    assert all(code == 202 for code in statuses[:refused])


@pytest.mark.timeout(600)
def test_employee_removed_flow(running_mesh, mailbox, staffed_org):
    org_id, owner = staffed_org["org_id"], staffed_org["owner"]
    leader, teammate = staffed_org["members"][-2], staffed_org["members"][-1]
    team = owner.post(f"/orgs/{org_id}/teams", json={"name": f"Team {uuid.uuid4().hex[:6]}"}).json()
    for person in (leader, teammate):
        assert owner.post(f"/orgs/{org_id}/teams/{team['team_id']}/members",
                          json={"employee_id": person.employee_id, "role": "member"}).status_code == 201
    assert owner.call("PUT", f"/orgs/{org_id}/teams/{team['team_id']}/leader",
                      {"employee_id": leader.employee_id}).status_code == 200
    open_task = owner.post(f"/orgs/{org_id}/tasks", json={
        "title": "open one", "assignee_id": leader.employee_id, "team_id": team["team_id"]}).json()
    done_task = owner.post(f"/orgs/{org_id}/tasks", json={
        "title": "done one", "assignee_id": leader.employee_id}).json()
    for status in ("in_progress", "done"):
        assert leader.post(f"/orgs/{org_id}/tasks/{done_task['task_id']}/status",
                           json={"status": status}).status_code == 200
    count_before = owner.get(f"/orgs/{org_id}").json()["counts"]["employees"]

    assert owner.call("DELETE", f"/orgs/{org_id}/employees/{leader.employee_id}").status_code == 204

    # their token no longer reaches anything in that org
    assert leader.get(f"/orgs/{org_id}").status_code == 404
    assert leader.get(f"/orgs/{org_id}/tasks").status_code == 404

    def out_of_team():
        members = owner.get(f"/orgs/{org_id}/teams/{team['team_id']}").json()
        return leader.employee_id not in str(members)

    wait_until(out_of_team, timeout=20, what="the removed leader to leave the team")

    def reassigned():
        task = owner.get(f"/orgs/{org_id}/tasks/{open_task['task_id']}").json()
        return task if task["assignee_id"] != leader.employee_id else None

    task = wait_until(reassigned, timeout=20, what="the open task to be handed over")
    assert task["assignee_id"] is None  # the team's leader was the removed person
    history = owner.get(f"/orgs/{org_id}/tasks/{open_task['task_id']}/history").json()["items"]
    assert any(h.get("field") == "assignee_id" and h.get("old") == leader.employee_id for h in history)
    done = owner.get(f"/orgs/{org_id}/tasks/{done_task['task_id']}").json()
    assert (done["assignee_id"], done["status"]) == (leader.employee_id, "done")
    wait_until(lambda: owner.get(f"/orgs/{org_id}").json()["counts"]["employees"] == count_before - 1,
               timeout=20, what="the employee count to drop")
    wait_until(lambda: any("no longer a member" in text_of(m) for m in mailbox.messages(leader.email)),
               timeout=20, what="the goodbye email")
