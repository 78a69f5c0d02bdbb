"""Teams: the list, create, a team's members (add, remove), leader and per-member
permissions. Actions the caller's role lacks are left out of the page
(web_svc.roles); the API decides, and a refusal is shown beside the form."""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from web_svc import auth, roles
from web_svc.gateway import ApiError
from web_svc.views.work import form_errors

bp = Blueprint("teams", __name__, url_prefix="/orgs/<org_id>/teams")


@bp.route("", methods=["GET", "POST"])
@auth.login_required
def teams(org_id):
    errors, form = {}, request.form.to_dict()
    if request.method == "POST":
        try:
            team = auth.api("POST", f"/orgs/{org_id}/teams", json={
                "name": form.get("name", ""), "description": form.get("description", "")})
            return redirect(url_for("teams.team", org_id=org_id, team_id=team["team_id"]))
        except ApiError as exc:
            errors = form_errors(exc)
    page = auth.api("GET", f"/orgs/{org_id}/teams")
    return render_template("teams.html", org_id=org_id, teams=page["items"], errors=errors, form=form,
                           may_create=roles.can(org_id, "team.create")), 422 if errors else 200


@bp.get("/<team_id>")
@auth.login_required
def team(org_id, team_id):
    return _team_page(org_id, team_id)


def _team_page(org_id, team_id, errors=None, status=200):
    found = auth.api("GET", f"/orgs/{org_id}/teams/{team_id}")
    may_grant = roles.can(org_id, "team.manage_permissions")
    grants = auth.api("GET", f"/orgs/{org_id}/teams/{team_id}/permissions") if may_grant else None
    member_ids = {m["employee_id"] for m in found.get("members", [])}
    people = [e for e in auth.api("GET", f"/orgs/{org_id}/employees")["items"]
              if e.get("status") == "active" and e["employee_id"] not in member_ids]
    return render_template(
        "team.html", org_id=org_id, team=found, grants=grants, people=people, errors=errors or {},
        may_manage=roles.can_manage_members(org_id, found, (grants or {}).get("permissions")),
        may_lead=roles.can(org_id, "team.update"), may_grant=may_grant), status


def _team_change(org_id, team_id, method, path, **kwargs):
    try:
        auth.api(method, f"/orgs/{org_id}/teams/{team_id}{path}", **kwargs)
    except ApiError as exc:
        return _team_page(org_id, team_id, form_errors(exc), 403 if exc.status == 403 else 422)
    return redirect(url_for("teams.team", org_id=org_id, team_id=team_id))


@bp.post("/<team_id>/members")
@auth.login_required
def add_member(org_id, team_id):
    return _team_change(org_id, team_id, "POST", "/members", json={
        "employee_id": request.form.get("employee_id", ""), "role": request.form.get("role", "member")})


@bp.post("/<team_id>/members/<employee_id>/remove")
@auth.login_required
def remove_member(org_id, team_id, employee_id):
    return _team_change(org_id, team_id, "DELETE", f"/members/{employee_id}")


@bp.post("/<team_id>/leader")
@auth.login_required
def leader(org_id, team_id):
    return _team_change(org_id, team_id, "PUT", "/leader",
                        json={"employee_id": request.form.get("employee_id", "")})


@bp.post("/<team_id>/permissions")
@auth.login_required
def permissions(org_id, team_id):
    """Checkboxes named ``<employee_id>:<permission>``: the full set of grants."""
    granted: dict[str, list[str]] = {}
    for name in request.form:
        employee_id, _, permission = name.partition(":")
        if permission:
            granted.setdefault(employee_id, []).append(permission)
    return _team_change(org_id, team_id, "PUT", "/permissions", json={"permissions": granted})
