"""Operator pages: services' health and outbox backlog, queues, dead letters (replay,
purge with confirmation), the events flowing, bulk jobs in progress, links out."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from web_svc import auth, charts
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
    return render_template("ops_health.html", services=_ops().health(), links=_links())


def _links() -> list[tuple[str, str]]:
    """Swagger UI always (the gateway serves it); metrics and Grafana where configured."""
    config = current_app.config
    found = [("Swagger UI", config["SWAGGER_URL"]), ("Metrics", config["OPS_METRICS_URL"]),
             ("Grafana", config["OPS_GRAFANA_URL"])]
    return [(name, url) for name, url in found if url]


@bp.get("/events")
@auth.operator_required
def events():
    """Events flowing: type, producer, consumers, a chart per minute over the last hour
    (the page reloads itself every 30 s; counted by the console's own tap queue)."""
    flows = _ops().event_flows(current_app.extensions["web_redis"])
    total = [sum(minute) for minute in zip(*(f["per_minute"] for f in flows), strict=True)] if flows else []
    for flow in flows:
        flow["chart"] = charts.columns(flow["per_minute"], width=240, height=28)
    return render_template("ops_events.html", flows=flows, total=charts.columns(total))


@bp.get("/jobs")
@auth.operator_required
def jobs():
    return render_template("ops_jobs.html", jobs=_ops().running_jobs())


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
