"""The team and task routes of the gateway on a real socket."""
import pytest
import requests

from gateway_svc.service import GatewayService

ROUTES = [
    ("POST", "/orgs/o1/teams"), ("GET", "/orgs/o1/teams"), ("GET", "/orgs/o1/teams/t1"),
    ("PATCH", "/orgs/o1/teams/t1"), ("DELETE", "/orgs/o1/teams/t1"),
    ("POST", "/orgs/o1/teams/t1/members"), ("DELETE", "/orgs/o1/teams/t1/members/e1"),
    ("PUT", "/orgs/o1/teams/t1/leader"), ("GET", "/orgs/o1/teams/t1/permissions"),
    ("PUT", "/orgs/o1/teams/t1/permissions"),
    ("POST", "/orgs/o1/tasks"), ("GET", "/orgs/o1/tasks"), ("POST", "/orgs/o1/tasks/bulk"),
    ("GET", "/orgs/o1/tasks/bulk/j1"), ("GET", "/me/tasks"), ("GET", "/orgs/o1/tasks/stats"),
    ("GET", "/orgs/o1/leaderboard"), ("GET", "/orgs/o1/tasks/k1"), ("PATCH", "/orgs/o1/tasks/k1"),
    ("DELETE", "/orgs/o1/tasks/k1"), ("POST", "/orgs/o1/tasks/k1/assign"),
    ("POST", "/orgs/o1/tasks/k1/status"), ("POST", "/orgs/o1/tasks/k1/comments"),
    ("GET", "/orgs/o1/tasks/k1/comments"), ("POST", "/orgs/o1/tasks/k1/attachments"),
    ("GET", "/orgs/o1/tasks/k1/attachments"), ("GET", "/orgs/o1/tasks/k1/attachments/a1"),
    ("GET", "/orgs/o1/tasks/k1/history"),
]


@pytest.fixture
def gateway(container_factory, config):
    container_factory(GatewayService, config).start()
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"


def test_every_team_and_task_route_refuses_a_caller_without_a_token(gateway):
    for method, path in ROUTES:
        response = requests.request(method, f"{gateway}{path}", json={"title": "x"})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"
    bad = requests.get(f"{gateway}/orgs/o1/tasks", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401
