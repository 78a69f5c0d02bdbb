"""An organization's webhooks (admins, ``webhook.manage``): register endpoints
(the signing secret shown once, in the form's answer only), see each one's
deliveries, redeliver, rotate the secret, enable again, delete."""
from __future__ import annotations

import re

from flask import Blueprint, redirect, render_template, request, url_for

from web_svc import auth
from web_svc.gateway import ApiError
from web_svc.views.work import form_errors

bp = Blueprint("webhooks", __name__)


def event_types(text: str) -> list[str]:
    """``task.created, task.completed`` (commas or spaces; ``*`` for all) as a list."""
    return [name for name in re.split(r"[\s,]+", text) if name]


@bp.route("/orgs/<org_id>/webhooks", methods=["GET", "POST"])
@auth.login_required
def webhooks(org_id):
    created, errors, form = None, {}, request.form.to_dict()
    if request.method == "POST":
        try:
            created = auth.api("POST", f"/orgs/{org_id}/webhooks", json={
                "url": form.get("url", "").strip(),
                "event_types": event_types(form.get("event_types", "")),
                "description": form.get("description", "")})
        except ApiError as exc:
            errors = form_errors(exc)
    return render_template(
        "webhooks.html", org=auth.api("GET", f"/orgs/{org_id}"),
        hooks=auth.api("GET", f"/orgs/{org_id}/webhooks")["items"], created=created,
        errors=errors, form=form if errors else {},
        deleted=request.args.get("deleted")), 422 if errors else 200


@bp.get("/orgs/<org_id>/webhooks/<webhook_id>")
@auth.login_required
def webhook(org_id, webhook_id, secret=None, errors=None):
    """One endpoint and its deliveries, newest first (cursor pages)."""
    params = {"cursor": request.args["cursor"]} if request.args.get("cursor") else None
    base = f"/orgs/{org_id}/webhooks/{webhook_id}"
    return render_template(
        "webhook.html", org=auth.api("GET", f"/orgs/{org_id}"), hook=auth.api("GET", base),
        deliveries=auth.api("GET", f"{base}/deliveries", params=params), secret=secret,
        errors=errors or {}, redelivered=request.args.get("redelivered"),
        enabled=request.args.get("enabled")), 422 if errors else 200


@bp.post("/orgs/<org_id>/webhooks/<webhook_id>/edit")
@auth.login_required
def edit_webhook(org_id, webhook_id):
    form = request.form
    try:
        auth.api("PATCH", f"/orgs/{org_id}/webhooks/{webhook_id}", json={
            "url": form.get("url", "").strip(), "event_types": event_types(form.get("event_types", "")),
            "description": form.get("description", "")})
    except ApiError as exc:
        return webhook(org_id, webhook_id, errors=form_errors(exc))
    return redirect(url_for("webhooks.webhook", org_id=org_id, webhook_id=webhook_id))


@bp.post("/orgs/<org_id>/webhooks/<webhook_id>/enable")
@auth.login_required
def enable_webhook(org_id, webhook_id):
    auth.api("PATCH", f"/orgs/{org_id}/webhooks/{webhook_id}", json={"enabled": True})
    return redirect(url_for("webhooks.webhook", org_id=org_id, webhook_id=webhook_id, enabled=1))


@bp.post("/orgs/<org_id>/webhooks/<webhook_id>/rotate-secret")
@auth.login_required
def rotate_secret(org_id, webhook_id):
    """The new secret in this answer only (not a redirect: it must not sit in a URL)."""
    secret = auth.api("POST", f"/orgs/{org_id}/webhooks/{webhook_id}/rotate-secret")["secret"]
    return webhook(org_id, webhook_id, secret=secret)


@bp.post("/orgs/<org_id>/webhooks/<webhook_id>/delete")
@auth.login_required
def delete_webhook(org_id, webhook_id):
    auth.api("DELETE", f"/orgs/{org_id}/webhooks/{webhook_id}")
    return redirect(url_for("webhooks.webhooks", org_id=org_id, deleted=1))


@bp.post("/orgs/<org_id>/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver")
@auth.login_required
def redeliver(org_id, webhook_id, delivery_id):
    auth.api("POST", f"/orgs/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
    return redirect(url_for("webhooks.webhook", org_id=org_id, webhook_id=webhook_id,
                            redelivered=delivery_id))
