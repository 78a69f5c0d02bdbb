"""The gateway's one tenancy check: an authenticated route under
/orgs/<org_id> answers 404 to a non-member before anything else happens."""
import json

import pytest
import requests
from marshmallow import Schema, fields
from nameko.dependency_providers import Config

from employee_svc.contract import membership_key
from gateway_svc.cache import CachedRoute
from gateway_svc.http import api, read_json
from shared.redis import Redis, make_cache_client
from shared.rpc import ServiceRpc, rpc
from shared.telemetry import Telemetry
from tests.tokens import auth_headers


class FakeEmployees:
    name = "employees"

    @rpc
    def get_membership(self, org_id, user_id):
        if (org_id, user_id) == ("org-a", "alice"):
            return {"org_id": org_id, "user_id": user_id, "employee_id": "e1", "role": "member",
                    "status": "active", "permissions": [], "teams": {}}
        if (org_id, user_id) == ("org-a", "gone"):
            return {"org_id": org_id, "user_id": user_id, "employee_id": "e2", "role": "admin",
                    "status": "removed", "permissions": [], "teams": {}}
        return None


class NoteSchema(Schema):
    text = fields.String(required=True)


NOTE_LISTS = CachedRoute("notes:list", "notes")


class TenantGateway:
    name = "tenantgw"
    config = Config()
    telemetry = Telemetry()
    redis = Redis()
    rpc_employees = ServiceRpc("employees")
    stored = []
    computed = []

    @api("GET", "/orgs/<org_id>/notes", cached=NOTE_LISTS)
    def list_notes(self, request, org_id):
        def compute():
            TenantGateway.computed.append(org_id)
            return {"items": [note for org, note, _ in TenantGateway.stored if org == org_id]}
        return NOTE_LISTS.response(self.redis, request, org_id, compute)

    @api("POST", "/orgs/<org_id>/notes")
    def add_note(self, request, org_id):
        note = read_json(request, NoteSchema())
        TenantGateway.stored.append((org_id, note, request.membership["role"]))
        return 201, note


@pytest.fixture
def gateway(container_factory, config):
    TenantGateway.stored, TenantGateway.computed = [], []
    for cls in (FakeEmployees, TenantGateway):
        container_factory(cls, config).start()
    return config, f"http://{config['WEB_SERVER_ADDRESS']}/api/v1/orgs"


def test_non_members_and_removed_employees_get_404_before_validation(gateway):
    config, url = gateway
    for user in ("mallory", "gone"):
        for body in ({"text": "hi"}, {"text": {"$gt": ""}}, {}):
            response = requests.post(f"{url}/org-a/notes", json=body,
                                     headers=auth_headers(config, user))
            assert response.status_code == 404, (user, body, response.text)
            assert response.headers["Content-Type"] == "application/problem+json"
    assert TenantGateway.stored == []


def test_members_reach_the_route_with_their_membership(gateway):
    config, url = gateway
    headers = auth_headers(config, "alice")
    assert requests.post(f"{url}/org-a/notes", json={}, headers=headers).status_code == 422
    assert requests.post(f"{url}/org-b/notes", json={"text": "x"}, headers=headers).status_code == 404
    response = requests.post(f"{url}/org-a/notes", json={"text": "hi"}, headers=headers)
    assert response.status_code == 201
    assert TenantGateway.stored == [("org-a", {"text": "hi"}, "member")]


def test_a_cached_answer_reaches_only_a_member_whose_cached_membership_is_active(gateway, unique):
    config, url = gateway
    org, user = f"org-{unique}", f"user-{unique}"
    client = make_cache_client(config)  # memberships are cached where the cache lives
    member = {"org_id": org, "user_id": user, "employee_id": "e9", "role": "member",
              "status": "active", "permissions": [], "teams": {}}
    client.set(membership_key(org, user), json.dumps(member), ex=60)
    headers = auth_headers(config, user)
    first = requests.get(f"{url}/{org}/notes?limit=5", headers=headers)
    again = requests.get(f"{url}/{org}/notes?limit=5", headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() == {"items": []}
    assert again.headers["Content-Type"] == "application/json"
    assert again.headers["X-RateLimit-Limit"] and again.headers["X-Request-ID"]
    assert TenantGateway.computed == [org]                  # the second was the cached answer

    client.set(membership_key(org, user), json.dumps({**member, "status": "removed"}), ex=60)
    assert requests.get(f"{url}/{org}/notes?limit=5", headers=headers).status_code == 404
    client.delete(membership_key(org, user))                 # employees dropped it: ask them
    answer = requests.get(f"{url}/{org}/notes?limit=5", headers=headers)
    assert answer.status_code == 404 and answer.headers["Content-Type"] == "application/problem+json"
    assert TenantGateway.computed == [org]
