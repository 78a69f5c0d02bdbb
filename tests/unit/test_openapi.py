"""The OpenAPI document: valid 3.1, and exactly the gateway's routes."""
from openapi_spec_validator import validate

from gateway_svc.openapi import api_entrypoints, build_spec, openapi_path
from gateway_svc.service import GatewayService


def test_spec_is_valid_openapi_3_1():
    spec = build_spec(GatewayService)
    assert spec["openapi"] == "3.1.0"
    validate(spec)


def test_every_route_has_a_spec_entry_and_every_entry_a_route():
    spec = build_spec(GatewayService)
    routes = {(openapi_path(ep.url), method.lower())
              for _, ep in api_entrypoints(GatewayService) for method in ep.method.split(",")}
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert routes == documented
    assert ("/api/v1/health", "get") in documented


def test_authenticated_routes_declare_the_bearer_scheme_and_401():
    spec = build_spec(GatewayService)
    by_id = {op["operationId"]: op for ops in spec["paths"].values() for op in ops.values()}
    authed = {name for name, ep in api_entrypoints(GatewayService) if ep.auth}
    for name in authed:
        assert by_id[name]["security"] == [{"bearerAuth": []}] and "401" in by_id[name]["responses"]
    assert by_id["health"]["security"] == []
