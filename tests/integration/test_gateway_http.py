"""The gateway's HTTP machinery on a real socket: problem+json for every
failure, body limits, rate limits, request ids carried through RPC."""
import json
import logging

import pytest
import requests
from marshmallow import Schema, fields
from nameko.dependency_providers import Config

from gateway_svc.http import api, read_json
from shared.redis import Redis
from shared.rpc import ServiceRpc, rpc
from shared.service import ServiceBase
from shared.telemetry import Telemetry
from tests.helpers import wait_until


class ThingSchema(Schema):
    name = fields.String(required=True)
    size = fields.Integer()


class Backend(ServiceBase):
    name = "backend"

    @rpc
    def whoami(self):
        return self.telemetry  # the correlation id of this call


class MiniGateway:
    name = "minigw"
    config = Config()
    telemetry = Telemetry()
    redis = Redis()
    backend = ServiceRpc("backend")
    created = []

    @api("POST", "/things", auth=False)
    def create(self, request):
        thing = read_json(request, ThingSchema())
        MiniGateway.created.append(thing)
        return 201, thing

    @api("GET", "/trace", auth=False)
    def trace(self, request):
        return {"correlation_id": self.backend.whoami()}

    @api("GET", "/limited", auth=False, limit="tight")
    def limited(self, request):
        return {"ok": True}

    @api("GET", "/private")
    def private(self, request):
        return {"ok": True}

    @api("GET", "/boom", auth=False)
    def boom(self, request):
        raise RuntimeError("internal detail that must not leak")


@pytest.fixture
def gateway(container_factory, make_config, unique):
    config = make_config(MAX_BODY_BYTES=1000, CORS_ORIGINS="https://app.example",
                         RATE_LIMITS={"default": "1000/60", "tight": "3/60"})
    MiniGateway.created = []
    # a name of its own: rate-limit keys ({service}:ratelimit:...) never collide across runs
    gateway_cls = type("MiniGateway", (MiniGateway,), {"name": f"minigw{unique}"})
    for cls in (Backend, gateway_cls):
        container_factory(cls, config).start()
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"


def problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"]
    return body


def test_valid_json_is_created(gateway):
    response = requests.post(f"{gateway}/things", json={"name": "a", "size": 2})
    assert response.status_code == 201 and response.json() == {"name": "a", "size": 2}


@pytest.mark.parametrize("kwargs,status", [
    ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, 400),
    ({"data": "name=a", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415),
    ({"json": {"name": "x" * 2000}}, 413),
    ({"json": {"size": "big"}}, 422),
    ({"json": {"name": {"$gt": ""}}}, 422),
    ({"json": ["name"]}, 400),
])
def test_bad_bodies_are_refused_with_problem_json_and_nothing_is_stored(gateway, kwargs, status):
    body = problem(requests.post(f"{gateway}/things", **kwargs), status)
    if status == 422:
        assert set(body["errors"]) & {"name", "size"}
    assert MiniGateway.created == []


def test_a_chunked_body_over_the_limit_is_refused(gateway):
    def chunks():
        for _ in range(20):
            yield b'{"name": "' + b"x" * 100 + b'"}'

    response = requests.post(f"{gateway}/things", data=chunks(),
                             headers={"Content-Type": "application/json"})
    problem(response, 413)
    assert MiniGateway.created == []


def test_unknown_route_wrong_method_and_crashes_are_problem_json(gateway):
    problem(requests.get(f"{gateway}/nothing-here"), 404)
    problem(requests.delete(f"{gateway}/things"), 405)
    body = problem(requests.get(f"{gateway}/boom"), 500)
    assert "internal detail" not in json.dumps(body)


def test_authenticated_routes_refuse_anonymous_callers(gateway):
    problem(requests.get(f"{gateway}/private"), 401)


def test_rate_limit_answers_429_with_headers(gateway):
    answers = [requests.get(f"{gateway}/limited") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "3"
    assert answers[0].headers["X-RateLimit-Remaining"] == "2"
    problem(answers[3], 429)
    assert int(answers[3].headers["Retry-After"]) >= 1


def test_request_id_reaches_the_service_behind_the_gateway(gateway):
    response = requests.get(f"{gateway}/trace", headers={"X-Request-ID": "trace-me-42"})
    assert response.json() == {"correlation_id": "trace-me-42"}
    assert response.headers["X-Request-ID"] == "trace-me-42"
    generated = requests.get(f"{gateway}/trace")
    assert generated.json()["correlation_id"] == generated.headers["X-Request-ID"]


def test_cors_for_configured_origins_only(gateway):
    allowed = requests.options(f"{gateway}/things", headers={"Origin": "https://app.example"})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = requests.get(f"{gateway}/limited", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_a_request_that_went_well_logs_its_access_line_only_and_a_failure_says_why(
        gateway, caplog):
    def lines(path):
        return [r for r in caplog.records if r.levelno >= logging.INFO and (
            r.name == "workforce.entrypoint" or path in r.getMessage())]

    with caplog.at_level(logging.INFO):
        assert requests.post(f"{gateway}/things", json={"name": "x"}).status_code == 201
        logged = wait_until(lambda: lines("/api/v1/things"), what="the access line")
        assert [r.name for r in logged] == ["nameko.web.server"]
        assert logged[0].getMessage() == "POST /api/v1/things 201"
        fields = logged[0].fields  # the JSON line's fields: method, path, status, user, duration
        assert (fields["method"], fields["path"], fields["status"]) == ("POST", "/api/v1/things", 201)
        assert fields["duration_ms"] > 0 and fields["user_id"] is None and fields["bytes"] > 0
        caplog.clear()
        assert requests.get(f"{gateway}/boom").status_code == 500
        logged = wait_until(lambda: len(lines("/api/v1/boom")) == 2 and lines("/api/v1/boom"),
                            what="the error and access lines")
    error = next(r for r in logged if r.name == "workforce.entrypoint")
    assert error.fields["outcome"] == "error" and "RuntimeError" in error.fields["error"]
