"""The analytics page: the figures of ``/orgs/{org_id}/analytics/...`` as
server-side SVG charts (docs/analytics.md)."""
from __future__ import annotations

from flask import Blueprint, render_template, request

from web_svc import analytics_charts, auth, charts
from web_svc.analytics_charts import COLOURS, hours

bp = Blueprint("analytics", __name__)
PERIODS = ("day", "week", "month")


def _names(org_id: str) -> dict:
    """Employee id -> name, team id -> name, for the chart labels."""
    people = auth.api("GET", f"/orgs/{org_id}/employees", params={"limit": 200})["items"]
    teams = auth.api("GET", f"/orgs/{org_id}/teams", params={"limit": 200})["items"]
    return {**{e["employee_id"]: e.get("name") or e.get("email") or e["employee_id"][:8] for e in people},
            **{t["team_id"]: t["name"] for t in teams}}


@bp.get("/orgs/<org_id>/analytics")
@auth.login_required
def page(org_id):
    period = request.args.get("period") if request.args.get("period") in PERIODS else "week"
    query = {"period": period, **{k: request.args[k] for k in ("from", "to") if request.args.get(k)}}
    summary = auth.api("GET", f"/orgs/{org_id}/analytics/summary", params=query)
    times = auth.api("GET", f"/orgs/{org_id}/analytics/times", params=query)
    teams = auth.api("GET", f"/orgs/{org_id}/analytics/throughput", params={**query, "by": "team"})
    people = auth.api("GET", f"/orgs/{org_id}/analytics/throughput", params={**query, "by": "assignee"})
    workload = auth.api("GET", f"/orgs/{org_id}/analytics/workload")
    names = _names(org_id)
    starts = [row["start"] for row in summary["periods"]]
    flow = analytics_charts.columns(starts, {
        "created": [row["created"] for row in summary["periods"]],
        "completed": [row["completed"] for row in summary["periods"]]})
    lead = analytics_charts.columns(starts, {
        "lead time": [hours(row["lead_time"]["p50"]) for row in times["periods"]],
        "cycle time": [hours(row["cycle_time"]["p50"]) for row in times["periods"]]})

    def label(key, nobody):
        return names.get(key, key[:8]) if key else nobody

    return render_template(
        "analytics.html", period=period, periods=PERIODS, summary=summary, times=times, hours=hours,
        flow=flow, lead=lead, legend=list(zip(("created", "completed"), COLOURS, strict=False)),
        time_legend=list(zip(("median lead time", "median cycle time"), COLOURS, strict=False)),
        by_team=charts.bars([(label(r["id"], "no team"), r["completed"]) for r in teams["items"][:15]]),
        by_person=charts.bars([(label(r["id"], "unassigned"), r["completed"])
                               for r in people["items"][:15]]),
        load=charts.bars([(label(r["employee_id"], "unassigned"), r["open"])
                          for r in workload["items"][:15]]
                         + ([("unassigned", workload["unassigned"]["open"])]
                            if workload["unassigned"]["open"] else [])))
