"""The task page's subtasks, dependencies (blocks / blocked_by) and watchers
(docs/web.md): what the page shows (``page_context``) and its forms, each one
API call, refused ones shown on the task page as the other task forms are."""
from __future__ import annotations

from flask import Blueprint, redirect, request, session, url_for

from web_svc import auth
from web_svc.gateway import ApiError

bp = Blueprint("task_links", __name__)


def page_context(org_id: str, task: dict, people: list[dict]) -> dict:
    """What the task page shows of the task's parent, subtasks, links and watchers."""
    base = f"/orgs/{org_id}/tasks/{task['task_id']}"
    parent = None
    if task.get("parent_id"):
        try:
            parent = auth.api("GET", f"/orgs/{org_id}/tasks/{task['parent_id']}")
        except ApiError as exc:  # deleted meanwhile
            if exc.status != 404:
                raise
    watchers = [w["user_id"] for w in auth.api("GET", f"{base}/watchers")["items"]]
    others = [t for t in auth.api("GET", f"/orgs/{org_id}/tasks", params={"limit": 100})["items"]
              if t["task_id"] != task["task_id"]]
    return {"parent": parent, "subtasks": auth.api("GET", f"{base}/subtasks",
                                                   params={"limit": 100})["items"],
            "links": auth.api("GET", f"{base}/links"), "watchers": watchers,
            "watching": session.get("user", {}).get("user_id") in watchers, "other_tasks": others,
            "user_names": {e["user_id"]: e.get("name") or e.get("email") for e in people}}


def _change(org_id, task_id, method, path, **kwargs):
    from web_svc.views import work  # the task page and its error handling live there
    return work._task_change(org_id, task_id, method, path, **kwargs)


@bp.post("/orgs/<org_id>/tasks/<task_id>/subtasks")
@auth.login_required
def add_subtask(org_id, task_id):
    from web_svc.views import work
    try:
        auth.api("POST", f"/orgs/{org_id}/tasks", json={"title": request.form.get("subtask_title", ""),
                                                        "parent_id": task_id})
    except ApiError as exc:
        errors = work.form_errors(exc)
        if "title" in errors:
            errors["subtask_title"] = errors.pop("title")
        return work._task_page(org_id, task_id, errors, 422, request.form.to_dict())
    return redirect(url_for("work.task", org_id=org_id, task_id=task_id))


@bp.post("/orgs/<org_id>/tasks/<task_id>/links")
@auth.login_required
def add_link(org_id, task_id):
    return _change(org_id, task_id, "POST", "/links", json={
        "type": request.form.get("type", ""), "task_id": request.form.get("task_id", "")})


@bp.post("/orgs/<org_id>/tasks/<task_id>/links/<other_id>/delete")
@auth.login_required
def remove_link(org_id, task_id, other_id):
    return _change(org_id, task_id, "DELETE", f"/links/{other_id}")


@bp.post("/orgs/<org_id>/tasks/<task_id>/watch")
@auth.login_required
def watch(org_id, task_id):
    method = "DELETE" if request.form.get("watch") == "off" else "PUT"
    return _change(org_id, task_id, method, "/watchers/me")
