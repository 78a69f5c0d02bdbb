"""Organizations, tasks (list, create, page, status, comments, bulk) and notifications."""
from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)

from web_svc import auth, charts, roles
from web_svc.gateway import ApiError
from web_svc.views import task_links

bp = Blueprint("work", __name__)
TASK_FILTERS = ("status", "priority", "assignee_id", "team_id", "q", "labels", "overdue", "sort",
                "due_before", "due_after", "cursor", "view")
VIEW_FILTERS = tuple(f for f in TASK_FILTERS if f not in ("cursor", "view"))  # what a view saves
STATUSES = ("todo", "in_progress", "done")
PRIORITIES = ("low", "medium", "high", "urgent")
ROLES = ("member", "manager", "admin", "owner")


def form_errors(exc: ApiError) -> dict:
    """A refusal to show beside the form (400/409/422, a 403 with field errors); else raised."""
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
    """Your organizations, and the invitations waiting for your address: verifying
    that address accepts them all (the emailed link accepts one)."""
    return render_template("orgs.html", orgs=auth.api("GET", "/orgs")["items"],
                           invitations=auth.api("GET", "/me/invitations")["items"],
                           me=auth.api("GET", "/users/me"))


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


WORKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@bp.route("/orgs/<org_id>/settings", methods=["GET", "POST"])
@auth.login_required
def org_settings(org_id):
    """Name and settings (admins), the plan (read only: operators set it with
    ``ops.cli set-plan``), ownership transfer (the owner, with confirmation)."""
    errors, saved, form = {}, False, request.form.to_dict()
    if request.method == "POST":
        try:
            auth.api("PATCH", f"/orgs/{org_id}", json={"name": form.get("name", "")})
            auth.api("PATCH", f"/orgs/{org_id}/settings", json={
                "timezone": form.get("timezone", ""), "locale": form.get("locale", ""),
                "default_task_priority": form.get("default_task_priority", ""),
                "week_start": form.get("week_start", ""),
                "working_days": request.form.getlist("working_days")})
            saved = True
        except ApiError as exc:
            errors = form_errors(exc)
    return _settings_page(org_id, errors, saved, form)


def _settings_page(org_id, errors=None, saved=False, form=None, status=None):
    found = auth.api("GET", f"/orgs/{org_id}")
    _remember_org(found)
    people = [e for e in auth.api("GET", f"/orgs/{org_id}/employees")["items"]
              if e.get("status") == "active" and e.get("user_id") != found.get("owner_user_id")]
    return render_template(
        "org_settings.html", org=found, settings=auth.api("GET", f"/orgs/{org_id}/settings"),
        plan=auth.api("GET", f"/orgs/{org_id}/subscription"), people=people, errors=errors or {},
        saved=saved, form=(form or {}) if errors else {}, days=WORKDAYS, priorities=PRIORITIES,
        may_update=roles.can(org_id, "org.settings.update"),
        may_transfer=roles.can(org_id, "org.transfer"),
        may_manage_accounts=roles.can(org_id, "employee.add"),
        may_manage_webhooks=roles.can(org_id, "webhook.manage")), status or (422 if errors else 200)


@bp.post("/orgs/<org_id>/transfer-ownership")
@auth.login_required
def transfer_ownership(org_id):
    """The new owner is chosen, and the organization's name typed to confirm."""
    found = auth.api("GET", f"/orgs/{org_id}")
    if request.form.get("confirm", "").strip() != found["name"]:
        return _settings_page(org_id, {"confirm": f"Type {found['name']} to confirm the transfer."})
    try:
        auth.api("POST", f"/orgs/{org_id}/transfer-ownership",
                 json={"user_id": request.form.get("user_id", "")})
    except ApiError as exc:
        return _settings_page(org_id, form_errors(exc))
    return redirect(url_for("work.org_settings", org_id=org_id, transferred=1))


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
            errors = form_errors(exc)
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
                           invitations=invitations, roles=ROLES,
                           may_change_roles=roles.can(org_id, "employee.update_role"),
                           may_add=roles.can(org_id, "employee.add")), 422 if errors else 200


@bp.post("/orgs/<org_id>/employees/<employee_id>/role")
@auth.login_required
def employee_role(org_id, employee_id):
    try:
        auth.api("PATCH", f"/orgs/{org_id}/employees/{employee_id}",
                 json={"role": request.form.get("role", "")})
    except ApiError as exc:
        if exc.status not in (403, 409, 422):
            raise
        return render_template("error.html", status=exc.status, detail=exc.detail), exc.status
    return redirect(url_for("work.employees", org_id=org_id))


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
            errors = form_errors(exc)
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
    saved = auth.api("GET", f"/orgs/{org_id}/tasks/views", params={"limit": 200})["items"]
    teams = auth.api("GET", f"/orgs/{org_id}/teams", params={"limit": 200})["items"]
    export = {k: v for k, v in filters.items() if k != "cursor"}
    picked = next((v for v in saved if v["view_id"] == filters.get("view")), None)
    # what "Save view" saves: the list as shown, the picked view's filter under the URL's
    shown = {**{k: _query_value(v) for k, v in (picked or {}).get("filter", {}).items()},
             **{k: v for k, v in filters.items() if k in VIEW_FILTERS}}
    return render_template("tasks.html", org_id=org_id, page=page, filters=filters, errors=errors,
                           form=form, people=people, names=names, statuses=STATUSES,
                           priorities=PRIORITIES, may_bulk=roles.can(org_id, "task.bulk_create"),
                           views=saved, teams=teams, export=export, shown=shown), \
        422 if errors else 200


def _query_value(value) -> str:
    """A view's stored filter value as the list's URL writes it."""
    if isinstance(value, list):
        return ",".join(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


@bp.post("/orgs/<org_id>/tasks/views")
@auth.login_required
def save_view(org_id):
    """Save the list's current filters (the form carries them) as a named view."""
    form = request.form.to_dict()
    body = {"name": form.get("name", ""), "visibility": form.get("visibility") or "private",
            "filter": {k: form[k] for k in VIEW_FILTERS if form.get(k)}}
    if body["visibility"] == "team":
        body["team_id"] = form.get("team_id") or None
    try:
        view = auth.api("POST", f"/orgs/{org_id}/tasks/views", json=body)
    except ApiError as exc:
        detail = "; ".join(f"{k}: {v}" for k, v in form_errors(exc).items())
        return render_template("error.html", status=exc.status, detail=detail), exc.status
    return redirect(url_for("work.tasks", org_id=org_id, view=view["view_id"]))


@bp.post("/orgs/<org_id>/tasks/views/<view_id>/delete")
@auth.login_required
def delete_view(org_id, view_id):
    auth.api("DELETE", f"/orgs/{org_id}/tasks/views/{view_id}")
    return redirect(url_for("work.tasks", org_id=org_id))


@bp.get("/orgs/<org_id>/tasks.csv")
@auth.login_required
def tasks_csv(org_id):
    """The list (its filters, or a view) as the API's streamed CSV file."""
    params = {k: v for k, v in request.args.items() if k in TASK_FILTERS and k != "cursor" and v}
    answer = auth.api("GET", f"/orgs/{org_id}/tasks.csv", params=params, raw=True)
    headers = {k: answer.headers[k] for k in ("Content-Type", "Content-Disposition")
               if k in answer.headers}
    return Response(stream_with_context(answer.iter_content(64 * 1024)), headers=headers)


@bp.get("/orgs/<org_id>/board")
@auth.login_required
def board(org_id):
    """The tasks by status, a column each (the list's filters apply): a card moves to
    another column with its buttons."""
    filters = {k: v for k, v in request.args.items() if k in TASK_FILTERS and v and k != "status"}
    columns = [(status, auth.api("GET", f"/orgs/{org_id}/tasks",
                                 params={**filters, "status": status, "limit": 50})["items"])
               for status in STATUSES]
    people = auth.api("GET", f"/orgs/{org_id}/employees")["items"]
    names = {e["employee_id"]: e.get("name") or e.get("email") for e in people}
    return render_template("board.html", org_id=org_id, columns=columns, names=names,
                           filters=filters, statuses=STATUSES)


@bp.get("/orgs/<org_id>/tasks/<task_id>")
@auth.login_required
def task(org_id, task_id):
    return _task_page(org_id, task_id)


def _task_page(org_id, task_id, errors=None, status=200, form=None):
    base = f"/orgs/{org_id}/tasks/{task_id}"
    found = auth.api("GET", base)
    people = auth.api("GET", f"/orgs/{org_id}/employees")["items"]
    names = {e["employee_id"]: e.get("name") or e.get("email") for e in people}
    return render_template(
        "task.html", org_id=org_id, task=found, comments=auth.api("GET", f"{base}/comments")["items"],
        history=auth.api("GET", f"{base}/history")["items"],
        attachments=auth.api("GET", f"{base}/attachments")["items"],
        people=people, names=names, errors=errors or {}, form=form or {}, statuses=STATUSES,
        priorities=PRIORITIES, may_assign=roles.can(org_id, "task.assign_any"),
        **task_links.page_context(org_id, found, people)), status


def _task_change(org_id, task_id, method, path, **kwargs):
    """One change to the task through the API; refused: the task page again with the
    API's field errors (what was typed kept), else back to the task (or the board,
    when the change was made there)."""
    try:
        auth.api(method, f"/orgs/{org_id}/tasks/{task_id}{path}", **kwargs)
    except ApiError as exc:
        return _task_page(org_id, task_id, form_errors(exc), 422, request.form.to_dict())
    if request.form.get("back") == "board":
        return redirect(url_for("work.board", org_id=org_id))
    return redirect(url_for("work.task", org_id=org_id, task_id=task_id))


@bp.post("/orgs/<org_id>/tasks/<task_id>/status")
@auth.login_required
def task_status(org_id, task_id):
    return _task_change(org_id, task_id, "POST", "/status", json={"status": request.form.get("status", "")})


@bp.post("/orgs/<org_id>/tasks/<task_id>/comments")
@auth.login_required
def task_comment(org_id, task_id):
    return _task_change(org_id, task_id, "POST", "/comments", json={"body": request.form.get("body", "")})


@bp.post("/orgs/<org_id>/tasks/<task_id>/edit")
@auth.login_required
def task_edit(org_id, task_id):
    form = request.form
    body = {"title": form.get("title", ""), "description": form.get("description", ""),
            "priority": form.get("priority", ""), "due_at": form.get("due_at") or None,
            "estimate_minutes": _minutes(form.get("estimate_minutes"))}
    rule = form.get("recurrence", "").strip()
    if rule != form.get("recurrence_was", ""):  # unchanged: the series keeps its anchor
        body["recurrence"] = {"rule": rule} if rule else None
    return _task_change(org_id, task_id, "PATCH", "", json=body)


def _minutes(text: str | None) -> int | str | None:
    """A number of minutes as typed: empty is none; anything else goes to the API as
    typed when it is not a whole number, for it to refuse beside the field."""
    text = (text or "").strip()
    return int(text) if text.isdigit() else (text or None)


@bp.post("/orgs/<org_id>/tasks/<task_id>/time")
@auth.login_required
def task_time(org_id, task_id):
    action = request.form.get("action")
    if action in ("start", "stop"):
        return _task_change(org_id, task_id, "POST", f"/time/{action}")
    return _task_change(org_id, task_id, "POST", "/time",
                        json={"minutes": _minutes(request.form.get("minutes")) or 0,
                              "note": request.form.get("note", "")})


@bp.post("/orgs/<org_id>/tasks/<task_id>/assign")
@auth.login_required
def task_assign(org_id, task_id):
    return _task_change(org_id, task_id, "POST", "/assign",
                        json={"assignee_id": request.form.get("assignee_id") or None})


@bp.post("/orgs/<org_id>/tasks/<task_id>/attachments")
@auth.login_required
def task_attach(org_id, task_id):
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _task_page(org_id, task_id, {"file": "Choose a file to upload."}, 422)
    return _task_change(org_id, task_id, "POST", "/attachments", files={
        "file": (upload.filename, upload.stream, upload.mimetype or "application/octet-stream")})


@bp.get("/orgs/<org_id>/tasks/<task_id>/attachments/<attachment_id>")
@auth.login_required
def task_attachment(org_id, task_id, attachment_id):
    """The file through the API; with S3 storage the API's presigned URL (short-lived,
    no bearer token in it) is where the browser goes."""
    answer = auth.api("GET", f"/orgs/{org_id}/tasks/{task_id}/attachments/{attachment_id}", raw=True)
    if answer.is_redirect:
        return redirect(answer.headers["Location"])
    headers = {k: answer.headers[k] for k in ("Content-Type", "Content-Disposition", "Content-Length")
               if k in answer.headers}
    return Response(stream_with_context(answer.iter_content(64 * 1024)), headers=headers)


@bp.post("/orgs/<org_id>/tasks/<task_id>/attachments/<attachment_id>/delete")
@auth.login_required
def task_attachment_delete(org_id, task_id, attachment_id):
    return _task_change(org_id, task_id, "DELETE", f"/attachments/{attachment_id}")


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
            errors = form_errors(exc)
    people = auth.api("GET", f"/orgs/{org_id}/employees")["items"]
    return render_template("bulk.html", org_id=org_id, people=people, errors=errors, form=form,
                           priorities=PRIORITIES), 422 if errors else 200


@bp.post("/orgs/<org_id>/tasks/import")
@auth.login_required
def import_tasks(org_id):
    """A CSV file of tasks: checked only (the rows' errors and the count it would create,
    shown on the bulk page), or created through a bulk job (its progress page)."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        check, errors = None, {"file": "Choose a CSV file."}
    else:
        dry_run = bool(request.form.get("dry_run"))
        try:
            result = auth.api("POST", f"/orgs/{org_id}/tasks/import",
                              params={"dry_run": "true"} if dry_run else None,
                              files={"file": (upload.filename, upload.stream,
                                              upload.mimetype or "text/csv")})
        except ApiError as exc:
            check, errors = None, form_errors(exc)
        else:
            if not dry_run:
                return redirect(url_for("work.bulk_job", org_id=org_id, job_id=result["job_id"]))
            check, errors = result, {}
    people = auth.api("GET", f"/orgs/{org_id}/employees")["items"]
    return render_template("bulk.html", org_id=org_id, people=people, errors={}, form={},
                           priorities=PRIORITIES, check=check, import_errors=errors), \
        422 if errors else 200


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
    people = auth.api("GET", f"/orgs/{org_id}/employees")["items"]
    names = {e["employee_id"]: e.get("name") or e.get("email") for e in people}
    time = found.get("time") or {}
    logged = charts.bars([(names.get(row["assignee_id"]) or row["assignee_id"][:8], row["minutes"])
                          for row in time.get("per_assignee", [])[:10]])
    return render_template("stats.html", stats=found, by_status=by_status, leaders=leaders,
                           time=time, logged=logged)


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
    return render_template("notifications.html", page=page,
                           vapid_key=current_app.config["VAPID_PUBLIC_KEY"])


def _notification_change(method: str, path: str):
    """The change; the page's script (JSON) gets the new unread count, a form the feed."""
    auth.api(method, path)
    if request.accept_mimetypes.best == "application/json":
        return jsonify({"unread": auth.api("GET", "/notifications/unread-count")["unread"]})
    return redirect(url_for("work.notifications"))


@bp.post("/notifications/<notification_id>/read")
@auth.login_required
def notification_read(notification_id):
    return _notification_change("POST", f"/notifications/{notification_id}/read")


@bp.post("/notifications/<notification_id>/delete")
@auth.login_required
def notification_delete(notification_id):
    return _notification_change("DELETE", f"/notifications/{notification_id}")


@bp.post("/notifications/push")
@auth.login_required
def push_subscribe():
    """The browser's ``PushSubscription.toJSON()`` (from the page's script), handed
    to the API; its refusal comes back as the API's status and field errors."""
    try:
        auth.api("POST", "/notifications/push-subscriptions", json=request.get_json(silent=True))
    except ApiError as exc:
        if exc.status not in (400, 409, 422):
            raise
        return jsonify({"detail": exc.detail, "errors": exc.errors}), exc.status
    return jsonify({"subscribed": True}), 201


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
