"""Access tokens: the person's own (under the account) and an organization's
service accounts with theirs (under its settings), as GitHub's and GitLab's
pages do. A new token's secret is in the answer to the form that made it and
nowhere else: it is rendered once (the page is ``no-store``), never put in a
URL, the session or a redirect."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, redirect, render_template, request, url_for

from auth_svc.domain import PAT_DEFAULT_DAYS, PAT_MAX_DAYS, PAT_SCOPES
from web_svc import auth, roles
from web_svc.gateway import ApiError
from web_svc.views.work import form_errors

bp = Blueprint("tokens", __name__)
ACCOUNT_ROLES = ("member", "manager", "admin")  # a service account is never the owner


def _token_form() -> dict:
    """The create form's fields as the API takes them (it judges the values)."""
    form = request.form
    days = form.get("expires_in_days", "").strip()
    body = {"name": form.get("name", ""), "scope": form.get("scope", "read"),
            "expires_in_days": int(days) if days.isdigit() else days or PAT_DEFAULT_DAYS}
    if form.get("org_id"):
        body["org_id"] = form["org_id"]
    return body


def with_state(tokens: list[dict]) -> list[dict]:
    """Each token with ``state``: active, expired or revoked."""
    now = datetime.now(timezone.utc)
    for token in tokens:
        expires = datetime.fromisoformat(token["expires_at"].replace("Z", "+00:00"))
        token["state"] = "revoked" if token.get("revoked_at") else \
            "expired" if expires <= now else "active"
    return tokens


def _page(template: str, created=None, errors=None, form=None, **context):
    return render_template(template, created=created, errors=errors or {},
                           form=(form or {}) if errors else {}, scopes=PAT_SCOPES,
                           default_days=PAT_DEFAULT_DAYS, max_days=PAT_MAX_DAYS, **context), \
        422 if errors else 200


# -- the person's own tokens ---------------------------------------------------------
@bp.route("/account/tokens", methods=["GET", "POST"])
@auth.login_required
def personal_tokens():
    created, errors = None, {}
    if request.method == "POST":
        try:
            created = auth.api("POST", "/me/tokens", json=_token_form())
        except ApiError as exc:
            errors = form_errors(exc)
    orgs = auth.api("GET", "/orgs")["items"]
    return _page("account_tokens.html", created, errors, request.form.to_dict(),
                 tokens=with_state(auth.api("GET", "/me/tokens")["items"]), orgs=orgs,
                 org_names={o["org_id"]: o["name"] for o in orgs},
                 revoked=request.args.get("revoked"))


@bp.post("/account/tokens/<token_id>/revoke")
@auth.login_required
def revoke_personal_token(token_id):
    auth.api("DELETE", f"/me/tokens/{token_id}")
    return redirect(url_for("tokens.personal_tokens", revoked=1))


# -- an organization's service accounts ------------------------------------------------
@bp.route("/orgs/<org_id>/service-accounts", methods=["GET", "POST"])
@auth.login_required
def service_accounts(org_id):
    errors, form = {}, request.form.to_dict()
    if request.method == "POST":
        try:
            made = auth.api("POST", f"/orgs/{org_id}/service-accounts",
                            json={"name": form.get("name", ""), "role": form.get("role", "member")})
            return redirect(url_for("tokens.service_account", org_id=org_id,
                                    account_id=made["user_id"]))
        except ApiError as exc:
            errors = form_errors(exc)
    org = auth.api("GET", f"/orgs/{org_id}")
    accounts = auth.api("GET", f"/orgs/{org_id}/service-accounts")["items"]
    return render_template("service_accounts.html", org=org, accounts=accounts, errors=errors,
                           form=form if errors else {}, roles=ACCOUNT_ROLES,
                           may_add=roles.can(org_id, "employee.add"),
                           may_remove=roles.can(org_id, "employee.remove"),
                           deleted=request.args.get("deleted")), 422 if errors else 200


@bp.post("/orgs/<org_id>/service-accounts/<account_id>/delete")
@auth.login_required
def delete_service_account(org_id, account_id):
    auth.api("DELETE", f"/orgs/{org_id}/service-accounts/{account_id}")
    return redirect(url_for("tokens.service_accounts", org_id=org_id, deleted=1))


def _account(org_id: str, account_id: str) -> dict:
    accounts = auth.api("GET", f"/orgs/{org_id}/service-accounts")["items"]
    found = next((a for a in accounts if a["user_id"] == account_id), None)
    if found is None:
        raise ApiError(404, {"detail": "No such service account."})
    return found


@bp.route("/orgs/<org_id>/service-accounts/<account_id>", methods=["GET", "POST"])
@auth.login_required
def service_account(org_id, account_id):
    """One service account's tokens (always bound to the org): issue, revoke."""
    created, errors = None, {}
    if request.method == "POST":
        body = _token_form()
        body.pop("org_id", None)
        try:
            created = auth.api("POST", f"/orgs/{org_id}/service-accounts/{account_id}/tokens",
                               json=body)
        except ApiError as exc:
            errors = form_errors(exc)
    tokens = auth.api("GET", f"/orgs/{org_id}/service-accounts/{account_id}/tokens")["items"]
    return _page("service_account.html", created, errors, request.form.to_dict(),
                 org=auth.api("GET", f"/orgs/{org_id}"), account=_account(org_id, account_id),
                 tokens=with_state(tokens), may_add=roles.can(org_id, "employee.add"),
                 revoked=request.args.get("revoked"))


@bp.post("/orgs/<org_id>/service-accounts/<account_id>/tokens/<token_id>/revoke")
@auth.login_required
def revoke_service_token(org_id, account_id, token_id):
    auth.api("DELETE", f"/orgs/{org_id}/service-accounts/{account_id}/tokens/{token_id}")
    return redirect(url_for("tokens.service_account", org_id=org_id, account_id=account_id,
                            revoked=1))
