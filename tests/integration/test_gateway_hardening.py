"""The gateway's low-severity findings of the audit (issue 12), on a real
socket: deeply nested JSON, CSP and HSTS, /health and /jwks.json throttled
and telling only up/down, /metrics off the API port."""
import json

import pytest
import requests
from nameko.dependency_providers import Config

from gateway_svc.http import MAX_JSON_DEPTH, api, read_json
from gateway_svc.service import GatewayService
from shared.redis import Redis
from shared.telemetry import Telemetry


class EchoGateway:
    name = "echogw"
    config = Config()
    telemetry = Telemetry()
    redis = Redis()
    received = []

    @api("POST", "/echo", auth=False)
    def echo(self, request):
        body = read_json(request)
        EchoGateway.received.append(body)
        return 201, {"ok": True}


@pytest.fixture
def echo(container_factory, make_config, unique):
    config = make_config()  # the default 1 MiB body limit
    EchoGateway.received = []
    container_factory(type("EchoGateway", (EchoGateway,), {"name": f"echogw{unique}"}),
                      config).start()
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"


@pytest.fixture
def gateway(container_factory, make_config, unique):
    """The real gateway, alone (every other service down), public on https."""
    config = make_config(PUBLIC_URL="https://workforce.example",
                         RATE_LIMITS={"default": "1000/60", "auth": "1000/60", "public": "3/60"})
    # a name of its own: its rate-limit keys never meet another run's
    container_factory(type("GatewayService", (GatewayService,), {"name": f"gw{unique}"}),
                      config).start()
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"


def post_json(url, raw: bytes):
    return requests.post(url, data=raw, headers={"Content-Type": "application/json"}, timeout=10)


@pytest.mark.parametrize("depth", [100_000, MAX_JSON_DEPTH + 1])
def test_deeply_nested_json_is_a_400_and_nothing_is_done(echo, depth):
    response = post_json(f"{echo}/echo", b"[" * depth + b"]" * depth)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "nests deeper" in response.json()["detail"]
    objects = post_json(f"{echo}/echo", b'{"a":' * depth + b"1" + b"}" * depth)
    assert objects.status_code == 400
    assert EchoGateway.received == []


def test_json_nested_up_to_the_bound_is_taken(echo):
    body = {"a": [{"b": [1, 2]}]}
    assert post_json(f"{echo}/echo", json.dumps(body).encode()).status_code == 201
    deep = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert post_json(f"{echo}/echo", deep).status_code == 201
    assert EchoGateway.received[0] == body


def test_answers_carry_a_csp_and_hsts_when_public_url_is_https(gateway):
    spec = requests.get(f"{gateway}/openapi.json", timeout=10)
    assert spec.status_code == 200
    assert spec.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert spec.headers["Strict-Transport-Security"].startswith("max-age=")
    docs = requests.get(f"{gateway}/docs", timeout=10)
    csp = docs.headers["Content-Security-Policy"]
    # the Swagger UI page may load its own script and styles, nothing inline or foreign
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert 'src="docs/swagger-init.js"' in docs.text and "<script>" not in docs.text
    missing = requests.get(f"{gateway}/no/such/route", timeout=10)
    assert missing.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_no_hsts_over_plain_http(echo):
    response = post_json(f"{echo}/echo", b"{}")
    assert "Strict-Transport-Security" not in response.headers
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_health_tells_only_up_or_down_and_is_throttled_per_ip(gateway):
    response = requests.get(f"{gateway}/health", timeout=10)
    assert response.status_code == 503  # nothing but the gateway runs
    body = response.json()
    assert body["services"]["gateway"] == "up"
    assert body["services"]["tasks"] == "down" and "tasks" in body["down"]
    assert set(body["services"].values()) == {"up", "down"}
    assert "not running" not in response.text and "error" not in response.text
    for _ in range(2):  # the public limit is 3 a minute (shared with /jwks.json)
        requests.get(f"{gateway}/auth/jwks.json", timeout=10)
    limited = requests.get(f"{gateway}/health", timeout=10)
    assert limited.status_code == 429
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert int(limited.headers["Retry-After"]) > 0


def test_metrics_are_not_served_on_the_api_port(gateway):
    response = requests.get(f"{gateway}/metrics", timeout=10)
    assert response.status_code == 404
    assert "entrypoint_calls_total" not in response.text
