"""The mesh as `make run` starts it: health, request ids, problem+json."""
import json

from shared import services
from tests.helpers import wait_until

SERVICES = {*services.SERVICES, services.GATEWAY}


def test_health_lists_every_service_and_names_the_one_that_stops(running_mesh):
    response = running_mesh.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["services"] == {name: "up" for name in SERVICES} and body["down"] == []

    running_mesh.mesh.stop_service("teams")
    try:
        response = running_mesh.get("/health")
        assert response.status_code == 503
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["down"] == ["teams"]
        assert response.json()["services"]["teams"] == "down"  # why: only in the log
    finally:
        running_mesh.mesh.start_service("teams")
        running_mesh.wait_healthy()


def test_every_answer_carries_a_request_id_and_errors_are_problem_json(running_mesh):
    mine = running_mesh.get("/health", headers={"X-Request-ID": "abc-123"})
    assert mine.headers["X-Request-ID"] == "abc-123"
    assert mine.headers["X-Content-Type-Options"] == "nosniff"
    for method, path, status in [("GET", "/no/such/route", 404), ("DELETE", "/health", 405)]:
        response = running_mesh.request(method, path)
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["status"] == status and response.headers["X-Request-ID"]


def test_gateway_metrics_are_prometheus_text_on_their_own_port(running_mesh):
    import requests

    metrics = f"http://127.0.0.1:{running_mesh.env['METRICS_PORT_GATEWAY']}/metrics"
    assert running_mesh.get("/metrics").status_code == 404  # not on the API port
    running_mesh.get("/health")
    response = requests.get(metrics, timeout=5)
    assert response.status_code == 200
    assert "text/plain" in response.headers["Content-Type"]
    # only the first of the two gateway processes serves the port: ask until it answered one
    wait_until(lambda: running_mesh.get("/health") and 'entrypoint_calls_total{entrypoint="health"'
               in requests.get(metrics, timeout=5).text, timeout=10, what="health in metrics")


def run_cli(running_mesh, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=running_mesh.env,
                          capture_output=True, text=True, timeout=60,
                          cwd=running_mesh.env["PYTHONPATH"])


def test_operator_cli_reports_health_and_queues(running_mesh):
    result = run_cli(running_mesh, "health")
    assert result.returncode == 0, result.stdout + result.stderr
    for service in SERVICES - {"gateway"}:
        assert f"{service:<14} up" in result.stdout
    queues = run_cli(running_mesh, "queues")
    assert queues.returncode == 0 and "rpc-tasks" in queues.stdout


def test_openapi_and_swagger_ui_are_served_offline(running_mesh):
    spec = running_mesh.get("/openapi.json")
    assert spec.status_code == 200 and spec.json()["openapi"] == "3.1.0"
    page = running_mesh.get("/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    bundle = running_mesh.get("/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert running_mesh.get("/docs/..%2Fconfig.yaml").status_code == 404


def test_every_documented_route_is_routed(running_mesh):
    """No spec entry without a route behind it (a 404 'No such route' or 405 would say so)."""
    spec = running_mesh.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        url = path.replace("/api/v1", "", 1).replace("{", "x").replace("}", "")
        for method in operations:
            response = running_mesh.request(method.upper(), url, json={})
            assert response.status_code != 405, (method, path)
            if response.status_code == 404:
                assert response.json()["detail"] != "No such route.", (method, path)


def _login(running_mesh, email, password):
    response = running_mesh.request("POST", "/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _kid(token):
    import jwt

    return jwt.get_unverified_header(token)["kid"]


def test_operator_cli_creates_an_admin_and_rotates_the_signing_key(running_mesh):
    import uuid

    email, password = f"admin-{uuid.uuid4().hex[:8]}@example.com", "a long admin password 1"
    created = run_cli(running_mesh, "create-admin", "--email", email, "--name", "Admin",
                      "--password", password)
    assert created.returncode == 0, created.stderr
    old_token = _login(running_mesh, email, password)

    rotated = run_cli(running_mesh, "rotate-key")
    assert rotated.returncode == 0, rotated.stderr
    running_mesh.mesh.stop_service("auth")
    running_mesh.mesh.start_service("auth")
    running_mesh.wait_healthy()
    new_token = _login(running_mesh, email, password)
    assert _kid(new_token) != _kid(old_token)
    for token in (old_token, new_token):  # nobody is logged out by the rotation
        me = running_mesh.get("/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["email"] == email


def test_operator_cli_seeds_a_demo_organization(running_mesh):
    import re

    result = run_cli(running_mesh, "seed", "--api", running_mesh.base_url, "--employees", "3",
                     "--teams", "1", "--tasks", "4")
    assert result.returncode == 0, result.stderr
    org_id, email, password = re.search(r"organization (\w+): .* owner (\S+) / (.+)$",
                                        result.stdout.strip().splitlines()[-1]).groups()
    headers = {"Authorization": f"Bearer {_login(running_mesh, email, password)}"}
    staff = running_mesh.get(f"/orgs/{org_id}/employees", headers=headers).json()["items"]
    assert len(staff) == 4  # the owner and three employees
    assert len(running_mesh.get(f"/orgs/{org_id}/teams", headers=headers).json()["items"]) == 1
    wait_until(lambda: len(running_mesh.get(f"/orgs/{org_id}/tasks", headers=headers)
                           .json()["items"]) == 4, timeout=10, what="the seeded tasks")


def test_every_line_every_service_writes_is_one_json_object(running_mesh):
    running_mesh.get("/health")  # at least one request and one RPC per service logged
    logs = sorted(running_mesh.mesh.log_dir.glob("*.log"))
    assert {path.stem.split("-")[0] for path in logs} >= SERVICES
    for path in logs:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert lines, f"{path.name} is empty"
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                raise AssertionError(f"{path.name}: not JSON: {line[:200]}") from None
            assert isinstance(entry, dict) and {"ts", "level", "msg"} <= entry.keys(), line
