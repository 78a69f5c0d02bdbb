"""The tenancy matrix: every org-scoped route x every kind of caller who must
not get in (issue 7).

The routes are read from the gateway's route table
(``api_entrypoints(GatewayService)``): every authenticated route with
``<org_id>`` in its path is a row, so a new route is covered the day it is
added, and fails here until ``ROUTES`` says which action it needs and what
body a caller would send. Each row is tried by:

* ``outsider``: a real user who owns another org              -> 404
* ``removed``: an ex-employee of the target org               -> 404
* ``member``: role "member": 403 where the route's action is above a member
  (``shared.permissions``), 2xx where a member may do it
* ``no_token``                                                -> 401
* ``expired``: an active member's token, signed by the mesh's own key, expired -> 401
* ``deleted_user``: an employee who deleted their account; their old token -> 401

Path parameters are real objects of the target org, and write routes get a
valid body, so a 404 or 403 can only come from tenancy or permissions. After
the matrix the target org must be as it was (save what the member was allowed
to create), and nothing of it may show up in any list or search of the
outsider.
"""
from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from auth_svc.keys import load_keyring
from auth_svc.tokens import mint_access_token
from gateway_svc.http import API_PREFIX
from gateway_svc.openapi import api_entrypoints
from gateway_svc.service import GatewayService
from shared.permissions import ACTIONS, role_allows
from tests.e2e.test_flows import PASSWORD, User, employees, personal_org
from tests.helpers import wait_until

PROBLEM_JSON = "application/problem+json"
PARAM = r"<(?:[a-z]+:)?(\w+)>"
TEMPLATE_KEY = "task_assigned"

# The org-scoped routes, from the route table itself.
ORG_ROUTES = sorted(
    ((name, ep.method, ep.url[len(API_PREFIX):])
     for name, ep in api_entrypoints(GatewayService) if ep.auth and "<org_id>" in ep.url),
    key=lambda r: (r[2], r[1]))


def _body(**fields):
    return lambda w: fields


# entrypoint name -> (the action a plain member would need for this call on the
# world's objects, a valid body built from the world or None).
# Task rows name the "any" action: the target task is neither the member's own
# nor in a team they lead, so only an org-wide permission would let them in.
ROUTES = {
    # organization
    "get_org": ("org.read", None),
    "update_org": ("org.update", _body(name="Renamed by an intruder")),
    "delete_org": ("org.delete", None),
    "get_org_settings": ("org.read", None),
    "update_org_settings": ("org.settings.update", _body(timezone="Europe/Paris")),
    "transfer_ownership": ("org.transfer", lambda w: {"user_id": w.admin.user_id}),
    "get_subscription": ("org.read", None),
    # employees and invitations
    "list_employees": ("employee.read", None),
    "add_employee": ("employee.add", lambda w: {"email": f"new-{uuid.uuid4().hex[:8]}@example.com",
                                                 "role": "member", "job_title": "Intern"}),
    "get_employee": ("employee.read", None),
    "update_employee": ("employee.update", _body(job_title="Changed by an intruder")),
    "remove_employee": ("employee.remove", None),
    "list_invitations": ("invitation.manage", None),
    "revoke_invitation": ("invitation.manage", None),
    # teams
    "list_teams": ("team.read", None),
    "create_team": ("team.create", _body(name="Intruders")),
    "get_team": ("team.read", None),
    "update_team": ("team.update", _body(name="Renamed team")),
    "delete_team": ("team.delete", None),
    "add_team_member": ("team.manage_members",
                        lambda w: {"employee_id": w.employee_ids["owner"], "role": "member"}),
    "remove_team_member": ("team.manage_members", None),
    "set_team_leader": ("team.update", lambda w: {"employee_id": w.employee_ids["bystander"]}),
    "get_team_permissions": ("team.read", None),
    "set_team_permissions": ("team.manage_permissions",
                             lambda w: {"permissions": {w.employee_ids["bystander"]:
                                                        ["task.assign_team"]}}),
    # tasks
    "list_tasks": ("task.read", None),
    "create_task": ("task.create", _body(title="Member's own task", priority="low")),
    "create_bulk_tasks": ("task.bulk_create",
                          lambda w: {"assignee_ids": [w.employee_ids["bystander"]],
                                     "task": {"title": "Bulk by an intruder"}}),
    "get_bulk_job": ("task.read", None),
    "task_stats": ("task.stats", None),
    "leaderboard": ("task.stats", None),
    "get_task": ("task.read", None),
    "update_task": ("task.update_any", _body(title="Changed by an intruder")),
    "delete_task": ("task.delete", None),
    "assign_task": ("task.assign_any", lambda w: {"assignee_id": w.employee_ids["bystander"]}),
    "change_task_status": ("task.update_any", _body(status="in_progress")),
    "add_task_comment": ("task.comment", _body(body="A member's comment")),
    "list_task_comments": ("task.read", None),
    "add_task_attachment": ("task.comment", "multipart"),
    "list_task_attachments": ("task.read", None),
    "download_task_attachment": ("task.read", None),
    # the uploader or who may change the task: the member here is neither
    "delete_task_attachment": ("task.update_any", None),
    "task_history": ("task.read", None),
    # subtasks, dependencies, watchers (task_svc/domain.py)
    "list_subtasks": ("task.read", None),
    "list_task_links": ("task.read", None),
    "add_task_link": ("task.update_any", lambda w: {"type": "blocked_by",
                                                     "task_id": w.ids["other_task_id"]}),
    "remove_task_link": ("task.update_any", None),
    "list_task_watchers": ("task.read", None),
    "watch_task": ("task.read", None),
    "unwatch_task": ("task.read", None),
    # saved views (the target is an org view of the owner's) and the CSV files
    "create_view": ("task.read", _body(name="A member's view", filter={"status": "todo"})),
    "list_views": ("task.read", None),
    "get_view": ("task.read", None),
    "update_view": ("task.update_any", _body(name="Renamed by an intruder")),
    "delete_view": ("task.update_any", None),
    "export_tasks": ("task.read", None),
    "export_employees": ("employee.read", None),
    "import_tasks": ("task.bulk_create", "csv"),
    # time tracking: who may change the task logs time on it
    "log_task_time": ("task.update_any", _body(minutes=5)),
    "list_task_time": ("task.read", None),
    "start_task_timer": ("task.update_any", None),
    "stop_task_timer": ("task.update_any", None),
    # notifications
    "notification_template": ("notification_templates.manage", None),
    "notification_template_put": ("notification_templates.manage",
                                  _body(subject="Hijacked {{ title }}", text="Hijacked")),
    # webhooks
    "create_webhook": ("webhook.manage", _body(url="https://127.0.0.1:9/intruder",
                                               event_types=["task.created"])),
    "list_webhooks": ("webhook.manage", None),
    "get_webhook": ("webhook.manage", None),
    "update_webhook": ("webhook.manage", _body(description="Changed by an intruder")),
    "delete_webhook": ("webhook.manage", None),
    "rotate_webhook_secret": ("webhook.manage", None),
    "list_webhook_deliveries": ("webhook.manage", None),
    "redeliver_webhook": ("webhook.manage", None),
    # analytics
    "analytics_summary": ("task.stats", None),
    "analytics_times": ("task.stats", None),
    "analytics_throughput": ("task.stats", None),
    "analytics_workload": ("task.stats", None),
    # search: every member reads tasks, employees and teams
    "search": ("task.read", None),
    "search_suggest": ("task.read", None),
    # audit
    "list_audit_records": ("audit.read", None),
    "export_audit_records": ("audit.read", None),
    # service accounts (non-human members holding org-bound tokens)
    "create_service_account": ("employee.add", _body(name="Intruder bot", role="member")),
    "list_service_accounts": ("employee.read", None),
    "delete_service_account": ("employee.remove", None),
    "create_service_token": ("employee.add", _body(name="Intruder token", scope="read")),
    "list_service_tokens": ("employee.read", None),
    "revoke_service_token": ("employee.add", None),
}

ACTORS = ("outsider", "removed", "member", "no_token", "expired", "deleted_user")
DENIED = {"outsider": 404, "removed": 404, "no_token": 401, "expired": 401, "deleted_user": 401}

# what a member's allowed write creates (so the "nothing changed" check can leave it out)
CREATED_ID = {"create_task": "task_id", "add_task_comment": "comment_id",
              "add_task_attachment": "attachment_id"}


def register(mesh, name):
    email = f"{name.lower().replace(' ', '-')}-{uuid.uuid4().hex[:10]}@example.com"
    response = mesh.request("POST", "/auth/register",
                            json={"email": email, "password": PASSWORD, "name": name})
    assert response.status_code == 201, response.text
    user = User(mesh, email, response.json())
    mesh.operator("auth", "confirm_email", user.user_id)  # only verified addresses join
    return user


def own_org(user) -> str:
    """The user's personal org once they can use it: /orgs lists it as soon as the
    organizations service has it, the owner's membership (employees) follows by event."""
    org_id = personal_org(user)["org_id"]
    wait_until(lambda: user.get(f"/orgs/{org_id}").status_code == 200, timeout=20, interval=0.1,
               what="the owner's membership of their new org")
    return org_id


class World:
    """The target org and everyone around it."""

    def __init__(self, mesh):
        self.mesh = mesh
        self.keyword = f"zq{uuid.uuid4().hex[:8]}"   # in target and outsider titles alike
        self.created: dict[str, set] = {key: set() for key in CREATED_ID.values()}

    def path(self, template: str, org_id: str | None = None) -> str:
        """The route with the target org's objects in it (and ``org_id`` instead of the
        target org's, for a caller addressing their own org with foreign ids)."""
        ids = {**self.ids, "org_id": org_id or self.org_id}

        def fill(match):
            name = match.group(1)
            assert name in ids, f"no object of the target org for <{name}> in {template}"
            return ids[name]
        return re.sub(PARAM, fill, template)


def _ok(response, status=None):
    assert response.status_code == (status or response.status_code) and response.ok, \
        f"{response.request.method} {response.url}: {response.status_code} {response.text}"
    return response.json() if response.content else None


def _add(owner, org_id, person, role):
    body = _ok(owner.post(f"/orgs/{org_id}/employees", json={"email": person.email, "role": role,
                                                             "job_title": role.title()}), 201)
    return body["employee_id"]


def _all(user, path, key, **params):
    items, cursor = [], None
    while True:
        query = {"limit": 200, **params, **({"cursor": cursor} if cursor else {})}
        page = _ok(user.get(path, params=query))
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return sorted(items, key=lambda item: item[key])


def snapshot(w: World) -> dict:
    """What an intruder's write could change, as the owner sees it."""
    owner, org = w.owner, f"/orgs/{w.org_id}"
    task = f"{org}/tasks/{w.ids['task_id']}"
    org_doc = _ok(owner.get(org))
    return {
        "org": {k: org_doc.get(k) for k in ("name", "owner_user_id", "deleted")},
        "subscription": _ok(owner.get(f"{org}/subscription"))["plan"],
        "settings": _ok(owner.get(f"{org}/settings")),
        "employees": [(e["employee_id"], e["user_id"], e["role"], e["status"], e.get("job_title"))
                      for status in ("active", "inactive", "removed")
                      for e in _all(owner, f"{org}/employees", "employee_id", status=status)],
        "invitations": [(i["invitation_id"], i.get("status"))
                        for i in _all(owner, f"{org}/invitations", "invitation_id")],
        "service_accounts": sorted(a["user_id"] for a in _ok(owner.get(f"{org}/service-accounts"))["items"]),
        "service_tokens": sorted((t["token_id"], t.get("revoked_at")) for t in _ok(owner.get(
            f"{org}/service-accounts/{w.ids['account_id']}/tokens"))["items"]),
        "teams": [(t["team_id"], t["name"], t.get("leader_id"),
                   sorted(m["employee_id"] for m in t.get("members", [])),
                   json.dumps(t.get("permissions"), sort_keys=True))
                  for t in _all(owner, f"{org}/teams", "team_id")],
        "tasks": [(t["task_id"], t["title"], t["status"], t.get("assignee_id"), t.get("team_id"),
                   t.get("priority"))
                  for t in _all(owner, f"{org}/tasks", "task_id")
                  if t["task_id"] not in w.created["task_id"]],
        "comments": [c["comment_id"] for c in _all(owner, f"{task}/comments", "comment_id")
                     if c["comment_id"] not in w.created["comment_id"]],
        "attachments": [a["attachment_id"] for a in _ok(owner.get(f"{task}/attachments"))["items"]
                        if a["attachment_id"] not in w.created["attachment_id"]],
        "template": _ok(owner.get(f"{org}/notification-templates/{TEMPLATE_KEY}")),
        "links": _ok(owner.get(f"{task}/links")),
        "views": [(v["view_id"], v["name"], v["visibility"], json.dumps(v["filter"], sort_keys=True))
                  for v in _all(owner, f"{org}/tasks/views", "view_id")],
    }


@pytest.fixture(scope="module")
def world(running_mesh):
    mesh = running_mesh
    w = World(mesh)
    w.owner, w.admin, w.member, w.bystander = (register(mesh, f"Matrix {who}") for who in
                                               ("Owner", "Admin", "Member", "Bystander"))
    w.outsider, w.removed, w.deleted = (register(mesh, f"Matrix {who}") for who in
                                        ("Outsider", "Removed", "Deleted"))
    w.org_id, w.outsider_org_id = own_org(w.owner), own_org(w.outsider)
    org = f"/orgs/{w.org_id}"
    mesh.operator("organizations", "set_plan", w.org_id, "enterprise")

    w.employee_ids = {"owner": next(e["employee_id"] for e in employees(w.owner, w.org_id)
                                    if e["user_id"] == w.owner.user_id)}
    for key, person, role in [("admin", w.admin, "admin"), ("member", w.member, "member"),
                              ("bystander", w.bystander, "member"), ("removed", w.removed, "member"),
                              ("deleted", w.deleted, "member")]:
        w.employee_ids[key] = _add(w.owner, w.org_id, person, role)

    team = _ok(w.owner.post(f"{org}/teams", json={"name": f"Core {w.keyword}"}), 201)
    for key, role in (("admin", "leader"), ("bystander", "member")):
        _ok(w.owner.post(f"{org}/teams/{team['team_id']}/members",
                         json={"employee_id": w.employee_ids[key], "role": role}), 201)
    task = _ok(w.owner.post(f"{org}/tasks", json={
        "title": f"Quarterly report {w.keyword}", "description": "numbers",
        "assignee_id": w.employee_ids["admin"], "priority": "high"}), 201)
    tpath = f"{org}/tasks/{task['task_id']}"
    comment = _ok(w.owner.post(f"{tpath}/comments", json={"body": "first draft soon"}), 201)
    blocker = _ok(w.owner.post(f"{org}/tasks", json={"title": f"Close the books {w.keyword}"}), 201)
    _ok(w.owner.post(f"{tpath}/links", json={"type": "blocked_by", "task_id": blocker["task_id"]}), 201)
    attachment = _ok(w.owner.mesh.request("POST", f"{tpath}/attachments", headers=w.owner.headers,
                                          files={"file": ("plan.txt", b"the plan", "text/plain")}), 201)
    job = _ok(w.owner.post(f"{org}/tasks/bulk", json={
        "assignee_ids": [w.employee_ids["admin"], w.employee_ids["bystander"]],
        "task": {"title": f"Onboarding {w.keyword}"}}), 202)
    invitation = _ok(w.owner.post(f"{org}/employees", json={
        "email": f"invitee-{uuid.uuid4().hex[:10]}@example.com", "role": "member"}), 202)
    hook = _ok(w.owner.post(f"{org}/webhooks", json={"url": "https://127.0.0.1:9/matrix",
                                                     "event_types": ["*"]}), 201)
    _ok(w.owner.post(f"{org}/tasks", json={"title": f"For the webhook {w.keyword}"}), 201)
    delivery = wait_until(lambda: w.owner.get(f"{org}/webhooks/{hook['webhook_id']}/deliveries")
                          .json()["items"], timeout=20, what="a webhook delivery")[0]
    view = _ok(w.owner.post(f"{org}/tasks/views", json={
        "name": f"Open {w.keyword}", "visibility": "org", "filter": {"status": "todo"}}), 201)
    account = _ok(w.owner.post(f"{org}/service-accounts", json={"name": "Matrix bot"}), 201)
    token = _ok(w.owner.post(f"{org}/service-accounts/{account['user_id']}/tokens",
                             json={"name": "Matrix token"}), 201)
    w.ids = {"account_id": account["user_id"], "token_id": token["token_id"],
             "org_id": w.org_id, "team_id": team["team_id"], "task_id": task["task_id"],
             "other_task_id": blocker["task_id"],
             "webhook_id": hook["webhook_id"], "delivery_id": delivery["delivery_id"],
             "employee_id": w.employee_ids["bystander"], "job_id": job["job_id"],
             "attachment_id": attachment["attachment_id"], "comment_id": comment["comment_id"],
             "invitation_id": invitation["invitation_id"], "key": TEMPLATE_KEY,
             "view_id": view["view_id"]}

    # the outsider's own org holds look-alikes, so their searches have something to find
    oorg = f"/orgs/{w.outsider_org_id}"
    _ok(w.outsider.post(f"{oorg}/teams", json={"name": f"Core {w.keyword}"}), 201)
    w.outsider_task = _ok(w.outsider.post(f"{oorg}/tasks", json={
        "title": f"Quarterly report {w.keyword}"}), 201)

    # the ex-employee and the deleted account were really in, before
    for person in (w.removed, w.deleted):
        _ok(person.get(org))
    _ok(w.owner.call("DELETE", f"{org}/employees/{w.employee_ids['removed']}"), 204)
    _ok(w.deleted.call("DELETE", "/users/me", json={"password": PASSWORD}), 204)

    # an expired token of an active member, signed with the key the mesh signs with;
    # the same key minting a live token gets in, so only the expiry can refuse it
    ring = load_keyring(mesh.env)
    live, _ = mint_access_token(ring, w.member.user_id, session_id=uuid.uuid4().hex,
                                email_verified=True)
    _ok(mesh.request("GET", org, headers={"Authorization": f"Bearer {live}"}))
    w.expired_token, _ = mint_access_token(ring, w.member.user_id, session_id=uuid.uuid4().hex,
                                           email_verified=True, ttl=900, now=time.time() - 3600)

    # let the asynchronous effects settle before the "before" picture
    wait_until(lambda: _ok(w.owner.get(f"{org}/tasks/bulk/{job['job_id']}"))["status"] == "done",
               timeout=30, interval=0.1, what="the bulk job")
    wait_until(lambda: any(e["employee_id"] == w.employee_ids["deleted"] for e in
                           employees(w.owner, w.org_id, status="removed")),
               timeout=30, interval=0.1, what="the deleted account to leave the org")
    w.before = snapshot(w)
    return w


def headers_of(w: World, actor: str) -> dict:
    token = {"outsider": lambda: w.outsider.token, "removed": lambda: w.removed.token,
             "member": lambda: w.member.token, "deleted_user": lambda: w.deleted.token,
             "expired": lambda: w.expired_token, "no_token": lambda: None}[actor]()
    return {"Authorization": f"Bearer {token}"} if token else {}


def send(w: World, actor: str, name: str, method: str, template: str):
    body = ROUTES[name][1]
    kwargs = {"headers": headers_of(w, actor)}
    if body == "multipart":
        kwargs["files"] = {"file": ("notes.txt", b"some notes", "text/plain")}
    elif body == "csv":
        kwargs["files"] = {"file": ("tasks.csv", b"title\r\nImported by an intruder\r\n", "text/csv")}
    elif body is not None:
        kwargs["json"] = body(w)
    return w.mesh.request(method, w.path(template), **kwargs)


def expected_status(actor: str, action: str) -> int | None:
    """The status due, or None for 'any 2xx' (a member doing what members may)."""
    if actor in DENIED:
        return DENIED[actor]
    return None if role_allows("member", action) else 403


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name, method, template", ORG_ROUTES,
                         ids=[f"{m} {p}" for _, m, p in ORG_ROUTES])
def test_route_refuses_those_outside(world, name, method, template, actor):
    if name not in ROUTES:
        pytest.fail(f"{method} {template} ({name}) is org-scoped but not in ROUTES: "
                    "name the action it needs and a valid body")
    action = ROUTES[name][0]
    assert action in ACTIONS, f"{name}: unknown action {action!r}"
    response = send(world, actor, name, method, template)
    due = expected_status(actor, action)
    where = f"{actor} {method} {template}: {response.status_code} {response.text[:300]}"
    if due is None:
        assert 200 <= response.status_code < 300, where
        if name in CREATED_ID:
            world.created[CREATED_ID[name]].add(response.json()[CREATED_ID[name]])
        return
    assert response.status_code == due, where
    assert response.headers.get("Content-Type", "").startswith(PROBLEM_JSON), where
    assert response.json()["status"] == due, where


def test_every_table_row_is_a_route():
    names = {name for name, _, _ in ORG_ROUTES}
    assert set(ROUTES) <= names, f"rows for routes that no longer exist: {set(ROUTES) - names}"


# Bodies that name the target org's objects, for routes whose path names none of them.
CROSS_BODIES = {
    "create_task": lambda w: {"title": "Borrowed", "assignee_id": w.employee_ids["admin"],
                              "team_id": w.ids["team_id"]},
}
# Routes whose body names objects of the target org already.
FOREIGN_BODY = {"add_team_member", "set_team_leader", "set_team_permissions", "create_bulk_tasks",
                "assign_task", "transfer_ownership", *CROSS_BODIES}
CROSS_ORG_ROUTES = [r for r in ORG_ROUTES
                    if r[0] in FOREIGN_BODY or set(re.findall(PARAM, r[2])) - {"org_id", "key"}]


@pytest.mark.parametrize("name, method, template", CROSS_ORG_ROUTES,
                         ids=[f"{m} {p}" for _, m, p in CROSS_ORG_ROUTES])
def test_own_org_with_foreign_ids(world, name, method, template):
    """The outsider, owner of their own org (so every permission passes), names the
    target org's objects under their own org: each must be unknown there."""
    w = world
    body = CROSS_BODIES.get(name, ROUTES[name][1])
    kwargs = {"headers": headers_of(w, "outsider")}
    if body == "multipart":
        kwargs["files"] = {"file": ("notes.txt", b"some notes", "text/plain")}
    elif body == "csv":
        kwargs["files"] = {"file": ("tasks.csv", b"title\r\nImported by an intruder\r\n", "text/csv")}
    elif body is not None:
        kwargs["json"] = body(w)
    response = w.mesh.request(method, w.path(template, w.outsider_org_id), **kwargs)
    where = f"{method} {template} under the outsider's org: {response.status_code} {response.text[:300]}"
    foreign_in_path = set(re.findall(PARAM, template)) - {"org_id", "key"}
    if name == "create_bulk_tasks" and response.status_code == 202:
        # bulk checks its assignees asynchronously (api.md: 202 and a job to poll):
        # a foreign employee must fail there exactly as an unknown id would
        job = response.json()
        state = wait_until(lambda: (lambda j: j if j["status"] == "done" else None)(
            w.outsider.get(f"/orgs/{w.outsider_org_id}/tasks/bulk/{job['job_id']}").json()),
            timeout=20, interval=0.1, what="the outsider's bulk job")
        assert (state["done"], state["failed"]) == (0, 1), state
        assert state["errors"] == [{"assignee_id": w.employee_ids["bystander"],
                                    "error": "not an active employee"}], state
        return
    # an id in the path is a missing object (404); one only in the body may also be
    # a refused field (422), never a success
    assert response.status_code in ((404,) if foreign_in_path else (404, 422)), where
    assert response.headers.get("Content-Type", "").startswith(PROBLEM_JSON), where


def test_nothing_changed_in_the_target_org(world):
    """Runs after the matrix and the cross-org calls: every refused write left no trace."""
    assert snapshot(world) == world.before


def _lists_of(user, org_id: str | None, w: World) -> dict:
    lists = {"/orgs": user.get("/orgs"), "/me/tasks": user.get("/me/tasks")}
    if user is w.outsider:
        lists["/notifications"] = user.get("/notifications")
        lists["/notifications?unread=true"] = user.get("/notifications", params={"unread": "true"})
    if org_id:
        org = f"/orgs/{org_id}"
        searches = {
            "employees?q=Matrix": (f"{org}/employees", {"q": "Matrix"}),
            "employees?team_id=<target team>": (f"{org}/employees", {"team_id": w.ids["team_id"]}),
            "teams": (f"{org}/teams", {}),
            "teams?employee_id=<target employee>": (f"{org}/teams",
                                                    {"employee_id": w.employee_ids["bystander"]}),
            "tasks?q=keyword": (f"{org}/tasks", {"q": w.keyword}),
            "tasks?q=Quarterly": (f"{org}/tasks", {"q": "Quarterly"}),
            "tasks?assignee_id=<target employee>": (f"{org}/tasks",
                                                    {"assignee_id": w.employee_ids["admin"]}),
            "tasks?team_id=<target team>": (f"{org}/tasks", {"team_id": w.ids["team_id"]}),
            "tasks/stats?team_id=<target team>": (f"{org}/tasks/stats",
                                                  {"team_id": w.ids["team_id"]}),
            "leaderboard": (f"{org}/leaderboard", {}),
            "search?q=keyword": (f"{org}/search", {"q": w.keyword}),
            "search?q=Quarterly": (f"{org}/search", {"q": "Quarterly"}),
            "search/suggest?q=Quar": (f"{org}/search/suggest", {"q": "Quar"}),
        }
        for label, (path, params) in searches.items():
            lists[label] = user.get(path, params=params)
    return lists


def test_no_foreign_document_in_any_list(world):
    w, org = world, f"/orgs/{world.org_id}"
    foreign = {w.org_id, *w.employee_ids.values(), *w.ids.values(),
               *(t["task_id"] for t in _all(w.owner, f"{org}/tasks", "task_id"))}
    foreign.discard(TEMPLATE_KEY)
    # people who are also in the outsider's world (their own user id) are not foreign
    for who, user, org_id in (("outsider", w.outsider, w.outsider_org_id),
                              ("removed", w.removed, None)):
        for label, response in _lists_of(user, org_id, w).items():
            assert response.status_code in (200, 422), f"{who} {label}: {response.text[:300]}"
            text = response.text
            leaked = sorted(i for i in foreign if i in text)
            assert not leaked, f"{who} {label} shows ids of the target org: {leaked}"
    # the searches do find the outsider's own look-alikes: they are not empty by accident
    found = w.outsider.get(f"/orgs/{w.outsider_org_id}/tasks", params={"q": w.keyword}).json()
    assert [t["task_id"] for t in found["items"]] == [w.outsider_task["task_id"]]
    assert [o["org_id"] for o in w.removed.get("/orgs").json()["items"]] != [] and \
        w.org_id not in [o["org_id"] for o in w.removed.get("/orgs").json()["items"]]
