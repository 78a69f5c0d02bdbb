"""Operator pages: services' health, queues, dead letters (replay, purge with confirmation)."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from web_svc import auth
from web_svc.ops import SERVICES

bp = Blueprint("operator", __name__, url_prefix="/ops")


def _ops():
    return current_app.extensions["ops"]


def _service(name: str) -> str:
    if name not in SERVICES:
        abort(404)
    return name


@bp.get("/")
@auth.operator_required
def overview():
    return render_template("ops_health.html", services=_ops().health(),
                           swagger=current_app.config["SWAGGER_URL"])


@bp.get("/queues")
@auth.operator_required
def queues():
    return render_template("ops_queues.html", queues=_ops().queues())


@bp.get("/dead-letters")
@auth.operator_required
def dead_letters():
    service = _service(request.args.get("service", SERVICES[0]))
    return render_template("ops_dead_letters.html", services=SERVICES, service=service,
                           items=_ops().dead_letters(service), moved=request.args.get("moved"))


@bp.post("/dead-letters/<service>/replay")
@auth.operator_required
def replay(service):
    moved = _ops().replay(_service(service), request.form.get("event_id") or None)  # one, or all
    return redirect(url_for("operator.dead_letters", service=service, moved=f"replayed {moved}"))


@bp.post("/dead-letters/<service>/purge")
@auth.operator_required
def purge(service):
    service = _service(service)
    if request.form.get("confirm") != service:  # the operator types the service's name
        return render_template("ops_dead_letters.html", services=SERVICES, service=service,
                               items=_ops().dead_letters(service),
                               purge_error=f"Type {service} to confirm the purge."), 422
    purged = _ops().purge(service)
    return redirect(url_for("operator.dead_letters", service=service, moved=f"purged {purged}"))
