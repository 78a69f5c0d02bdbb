"""Organizations, tasks (list, create, page, status, comments, bulk) and notifications."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, session, url_for

from web_svc import auth, charts
from web_svc.gateway import ApiError

bp = Blueprint("work", __name__)
TASK_FILTERS = ("status", "priority", "assignee_id", "team_id", "q", "labels", "overdue", "sort",
                "due_before", "due_after", "cursor")
STATUSES = ("todo", "in_progress", "done")
PRIORITIES = ("low", "medium", "high", "urgent")


def _form_errors(exc: ApiError) -> dict:
    if exc.status not in (400, 409, 422) and not (exc.status == 403 and exc.errors):
        raise exc
    return exc.field_errors() or {"_": exc.detail}


def _remember_org(org: dict) -> None:
    session["org"] = {"org_id": org["org_id"], "name": org["name"]}


@bp.get("/")
def home():
    if not auth.signed_in():
        return redirect(url_for("people.login"))
    org = session.get("org")
    if not org:
        orgs = auth.api("GET", "/orgs")["items"]
        if not orgs:
            return redirect(url_for("work.orgs"))
        _remember_org(orgs[0])
        org = session["org"]
    return redirect(url_for("work.tasks", org_id=org["org_id"]))


@bp.get("/orgs")
@auth.login_required
def orgs():
    return render_template("orgs.html", orgs=auth.api("GET", "/orgs")["items"])


@bp.post("/orgs/switch")
@auth.login_required
def switch_org():
    org = auth.api("GET", f"/orgs/{request.form.get('org_id', '')}")
    _remember_org(org)
    return redirect(url_for("work.tasks", org_id=org["org_id"]))


@bp.get("/orgs/<org_id>")
@auth.login_required
def org(org_id):
    """The organization's page: the setup guide the org_created email links to."""
    found = auth.api("GET", f"/orgs/{org_id}")
    _remember_org(found)
    return render_template("org.html", org=found, joined=bool(request.args.get("joined")))


@bp.route("/orgs/<org_id>/employees", methods=["GET", "POST"])
@auth.login_required
def employees(org_id):
    errors, form, invited = {}, request.form.to_dict(), None
    if request.method == "POST":
        try:
            invited = auth.api("POST", f"/orgs/{org_id}/employees", json={
                "email": form.get("email", ""), "role": form.get("role", "member"),
                "job_title": form.get("job_title", "")})
            form = {}
        except ApiError as exc:
            errors = _form_errors(exc)
    params = {"q": request.args["q"]} if request.args.get("q") else None
    page = auth.api("GET", f"/orgs/{org_id}/employees", params=params)
    try:  # managers and up; the section is left out for whoever the API refuses
        invitations = auth.api("GET", f"/orgs/{org_id}/invitations")["items"]
    except ApiError as exc:
        if exc.status != 403:
            raise
        invitations = None
    return render_template("employees.html", org_id=org_id, employees=page["items"], errors=errors,
                           form=form, invited=invited, q=request.args.get("q", ""),
                           invitations=invitations), 422 if errors else 200


@bp.route("/orgs/<org_id>/tasks", methods=["GET", "POST"])
@auth.login_required
def tasks(org_id):
    """The list; its filters are the URL's query, so a filtered list can be bookmarked."""
    errors, form = {}, request.form.to_dict()
    if request.method == "POST":
        body = {"title": form.get("title", ""), "description": form.get("description", ""),
                "priority": form.get("priority") or "medium"}
        if form.get("assignee_id"):
            body["assignee_id"] = form["assignee_id"]
        if form.get("due_at"):
            body["due_at"] = form["due_at"]
        try:
            created = auth.api("POST", f"/orgs/{org_id}/tasks", json=body)
            return redirect(url_for("work.task", org_id=org_id, task_id=created["task_id"]))
        except ApiError as exc:
            errors = _form_errors(exc)
    filters = {k: v for k, v in request.args.items() if k in TASK_FILTERS and v}
    try:
        page = auth.api("GET", f"/orgs/{org_id}/tasks", params=filters)
    except ApiError as exc:
        if exc.status != 422:
            raise
        page, errors = {"items": [], "next_cursor": None}, {**errors, **exc.field_errors()}
    people = auth.api("GET", f"/orgs/{org_id}/employees")["items"]
    org_info = session.get("org") or {}
    if org_info.get("org_id") != org_id:
        _remember_org(auth.api("GET", f"/orgs/{org_id}"))
    names = {e["employee_id"]: e.get("name") or e.get("email") for e in people}
    return render_template("tasks.html", org_id=org_id, page=page, filters=filters, errors=errors,
                           form=form, people=people, names=names, statuses=STATUSES,
                           priorities=PRIORITIES), 422 if errors else 200


@bp.get("/orgs/<org_id>/tasks/<task_id>")
@auth.login_required
def task(org_id, task_id):
    return _task_page(org_id, task_id)


def _task_page(org_id, task_id, errors=None, status=200):
    found = auth.api("GET", f"/orgs/{org_id}/tasks/{task_id}")
    comments = auth.api("GET", f"/orgs/{org_id}/tasks/{task_id}/comments")["items"]
    history = auth.api("GET", f"/orgs/{org_id}/tasks/{task_id}/history")["items"]
    return render_template("task.html", org_id=org_id, task=found, comments=comments, history=history,
                           errors=errors or {}, statuses=STATUSES), status


@bp.post("/orgs/<org_id>/tasks/<task_id>/status")
@auth.login_required
def task_status(org_id, task_id):
    try:
        auth.api("POST", f"/orgs/{org_id}/tasks/{task_id}/status",
                 json={"status": request.form.get("status", "")})
    except ApiError as exc:
        return _task_page(org_id, task_id, _form_errors(exc), 422)
    return redirect(url_for("work.task", org_id=org_id, task_id=task_id))


@bp.post("/orgs/<org_id>/tasks/<task_id>/comments")
@auth.login_required
def task_comment(org_id, task_id):
    try:
        auth.api("POST", f"/orgs/{org_id}/tasks/{task_id}/comments",
                 json={"body": request.form.get("body", "")})
    except ApiError as exc:
        return _task_page(org_id, task_id, _form_errors(exc), 422)
    return redirect(url_for("work.task", org_id=org_id, task_id=task_id))


@bp.route("/orgs/<org_id>/tasks/bulk", methods=["GET", "POST"])
@auth.login_required
def bulk(org_id):
    errors, form = {}, request.form.to_dict()
    if request.method == "POST":
        try:
            job = auth.api("POST", f"/orgs/{org_id}/tasks/bulk", json={
                "assignee_ids": request.form.getlist("assignee_ids"),
                "task": {"title": form.get("title", ""), "description": form.get("description", ""),
                         "priority": form.get("priority") or "medium"}})
            return redirect(url_for("work.bulk_job", org_id=org_id, job_id=job["job_id"]))
        except ApiError as exc:
            errors = _form_errors(exc)
    people = auth.api("GET", f"/orgs/{org_id}/employees")["items"]
    return render_template("bulk.html", org_id=org_id, people=people, errors=errors, form=form,
                           priorities=PRIORITIES), 422 if errors else 200


@bp.get("/orgs/<org_id>/tasks/bulk/<job_id>")
@auth.login_required
def bulk_job(org_id, job_id):
    job = auth.api("GET", f"/orgs/{org_id}/tasks/bulk/{job_id}")
    if request.accept_mimetypes.best == "application/json":  # the progress bar polls this
        return jsonify({k: job.get(k) for k in ("status", "total", "done", "failed", "errors")})
    return render_template("bulk_job.html", org_id=org_id, job=job)


@bp.get("/orgs/<org_id>/stats")
@auth.login_required
def stats(org_id):
    found = auth.api("GET", f"/orgs/{org_id}/tasks/stats")
    board = auth.api("GET", f"/orgs/{org_id}/leaderboard", params={"limit": 10})["items"]
    by_status = charts.bars([(s, found.get("by_status", {}).get(s, 0)) for s in STATUSES])
    leaders = charts.bars([(row.get("name") or row["employee_id"][:8], row["completed"]) for row in board])
    return render_template("stats.html", stats=found, by_status=by_status, leaders=leaders)


@bp.post("/orgs/<org_id>/invitations/<invitation_id>/revoke")
@auth.login_required
def revoke_invitation(org_id, invitation_id):
    auth.api("DELETE", f"/orgs/{org_id}/invitations/{invitation_id}")
    return redirect(url_for("work.employees", org_id=org_id))


# -- notifications ------------------------------------------------------------------
@bp.get("/notifications")
@auth.login_required
def notifications():
    params = {"cursor": request.args["cursor"]} if request.args.get("cursor") else None
    page = auth.api("GET", "/notifications", params=params)
    return render_template("notifications.html", page=page)


@bp.post("/notifications/<notification_id>/read")
@auth.login_required
def notification_read(notification_id):
    auth.api("POST", f"/notifications/{notification_id}/read")
    if request.accept_mimetypes.best == "application/json":
        return jsonify({"unread": auth.api("GET", "/notifications/unread-count")["unread"]})
    return redirect(url_for("work.notifications"))


@bp.post("/notifications/read-all")
@auth.login_required
def notifications_read_all():
    auth.api("POST", "/notifications/read-all")
    return redirect(url_for("work.notifications"))


@bp.get("/live")
def live():
    """For the page's script: the unread count, and what it needs to open the
    gateway's websocket (a short-lived access token; the refresh token never
    leaves the server). Same-origin JSON: no CORS header lets another site read it."""
    if not auth.signed_in():
        return jsonify({"signed_in": False}), 401
    return jsonify({"signed_in": True, "token": auth.access_token(),
                    "ws_url": current_app.config["WS_URL"],
                    "unread": auth.api("GET", "/notifications/unread-count")["unread"]})
