"""Analytics through the gateway, over the whole mesh: tasks created, assigned and
completed over HTTP reach the analytics service as the tasks service's events,
and its summary, times, throughput and workload say so, in the org's time zone."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import requests

from tests.e2e.test_flows import PASSWORD, personal_org, register
from tests.helpers import wait_until


def console_session(mesh, user) -> requests.Session:
    """Signed in to the web console as ``user``, through its sign-in form."""
    web = requests.Session()
    page = web.get(f"{mesh.web_url}/login", timeout=15)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    signed_in = web.post(f"{mesh.web_url}/login", timeout=15, data={
        "email": user.email, "password": PASSWORD, "csrf_token": token})
    assert signed_in.status_code == 200 and "Sign out" in signed_in.text, signed_in.text[:500]
    return web


def test_tasks_created_and_completed_show_in_the_analytics(running_mesh):
    owner = register(running_mesh, "analyst")
    org_id = personal_org(owner)["org_id"]
    org = f"/orgs/{org_id}"
    me = wait_until(lambda: owner.get(f"{org}/employees").json()["items"], timeout=20,
                    what="the owner as employee")[0]["employee_id"]
    zone = "Pacific/Auckland"  # far from UTC: a wrong zone would shift the day often
    assert owner.call("PATCH", f"{org}/settings", {"timezone": zone}).status_code == 200
    team = owner.post(f"{org}/teams", json={"name": "Analysts"})
    assert team.status_code == 201, team.text
    team_id = team.json()["team_id"]

    made = []
    for n, body in enumerate([{"assignee_id": me, "team_id": team_id}, {"assignee_id": me}, {}]):
        response = owner.post(f"{org}/tasks", json={"title": f"Count me {n}", **body})
        assert response.status_code == 201, response.text
        made.append(response.json()["task_id"])
    for status in ("in_progress", "done"):
        response = owner.post(f"{org}/tasks/{made[0]}/status", json={"status": status})
        assert response.status_code == 200, response.text

    today = datetime.now(ZoneInfo(zone)).date()
    days = {"period": "day", "from": (today - timedelta(days=1)).isoformat(), "to": today.isoformat()}

    def summary():
        body = owner.get(f"{org}/analytics/summary", params=days).json()
        return body if body.get("totals", {}).get("completed") == 1 \
            and body["totals"]["created"] == 3 else None

    found = wait_until(summary, timeout=30, interval=0.2, what="the summary to count the tasks")
    assert found["timezone"] == zone
    assert found["periods"][-1]["start"] == today.isoformat()
    assert found["periods"][-1]["completed"] == 1 and found["totals"]["overdue"] == 0

    throughput = owner.get(f"{org}/analytics/throughput", params={**days, "by": "team"})
    assert throughput.status_code == 200, throughput.text
    assert [(row["id"], row["completed"]) for row in throughput.json()["items"]] == [(team_id, 1)]
    people = owner.get(f"{org}/analytics/throughput", params={**days, "by": "assignee"}).json()
    assert [(row["id"], row["per_period"]) for row in people["items"]] == [(me, [0, 1])]

    times = owner.get(f"{org}/analytics/times", params=days).json()
    assert times["lead_time"]["count"] == 1 and times["cycle_time"]["count"] == 1
    assert 0 <= times["cycle_time"]["p50"] <= times["lead_time"]["p50"]

    workload = owner.get(f"{org}/analytics/workload").json()
    assert workload["items"] == [{"employee_id": me, "open": 1, "todo": 1, "in_progress": 0,
                                  "overdue": 0}]
    assert workload["unassigned"]["open"] == 1

    # the console's analytics page draws them (server-side SVG)
    page = console_session(running_mesh, owner).get(
        f"{running_mesh.web_url}/orgs/{org_id}/analytics", params=days, timeout=15)
    assert page.status_code == 200, page.text[:500]
    completed = re.findall(r'data-series="completed" data-label="([\d-]+)" data-value="(\d+)"', page.text)
    assert completed[-1] == (today.isoformat(), "1") and len(completed) == 2
    assert 'id="chart-teams"' in page.text and "Analysts" in page.text
    workload_chart = page.text.split('id="chart-workload"', 1)[1].split("</svg>", 1)[0]
    assert re.findall(r'<g class="bar" data-label="([^"]+)" data-value="(\d+)"', workload_chart) == [
        ("Analyst", "1"), ("unassigned", "1")]

    bad = owner.get(f"{org}/analytics/summary", params={"period": "fortnight"})
    assert bad.status_code == 422 and bad.headers["Content-Type"].startswith("application/problem+json")
    assert "period" in bad.json()["errors"]
    outsider = register(running_mesh, "nosy")
    assert outsider.get(f"{org}/analytics/workload").status_code == 404
