"""The console's access-token pages with its test client, over the real gateway
and auth service (employees and organizations are small fakes): a token made
in the page is shown once and works, a form without its CSRF token or with bad
values makes nothing, a revoked one is refused by the API."""
import re
import uuid

import pytest
import requests

from auth_svc.service import AuthService
from gateway_svc.service import GatewayService
from shared.rpc import rpc
from tests.integration.tasks_mesh import PEOPLE, FakeEmployees
from tests.integration.test_web_app import csrf_of, make_app

PASSWORD = "correct horse battery"


class FakeOrganizations:
    name = "organizations"

    @rpc
    def check_plan_limit(self, org_id, resource, current=None):
        return None

    @rpc
    def list_orgs_for_user(self, user_id, args):
        orgs = sorted({p["org_id"] for p in PEOPLE.values() if p["user_id"] == user_id})
        return {"items": [self.get_org(o) for o in orgs], "next_cursor": None}

    @rpc
    def get_org(self, org_id):
        return {"org_id": org_id, "name": f"Org {org_id}", "owner_user_id": None}


def signed_in_console(container_factory, config, services=(), role="admin"):
    """Auth, the gateway, fake employees and organizations and ``services``; a new
    user, ``role`` in a fresh org, signed in to the console: (test client, API
    base URL, org id)."""
    for cls in (FakeEmployees, FakeOrganizations, AuthService, GatewayService, *services):
        container_factory(cls, config).start()
    gateway = f"http://{config['WEB_SERVER_ADDRESS']}"
    email = f"web-{uuid.uuid4().hex[:10]}@example.com"
    answer = requests.post(f"{gateway}/api/v1/auth/register",
                           json={"email": email, "password": PASSWORD, "name": "Pat"})
    assert answer.status_code == 201, answer.text
    user_id = answer.json()["user"]["user_id"]
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    employee_id = f"emp-{uuid.uuid4().hex[:8]}"
    PEOPLE[employee_id] = {
        "employee_id": employee_id, "org_id": org_id, "user_id": user_id, "email": email,
        "name": "Pat", "role": role, "status": "active", "job_title": "engineer"}
    client = make_app(GATEWAY_URL=gateway).test_client()
    signed_in = client.post("/login", data={"email": email, "password": PASSWORD,
                                            "csrf_token": csrf_of(client.get("/login").data)})
    assert signed_in.status_code == 302, signed_in.data
    return client, f"{gateway}/api/v1", org_id


@pytest.fixture
def console(container_factory, config):
    return signed_in_console(container_factory, config)


def test_a_token_made_in_the_console_is_shown_once_works_and_is_revoked(console):
    client, api, org_id = console
    page = client.get("/account/tokens")
    assert page.status_code == 200 and b"No tokens yet." in page.data
    assert page.headers["Cache-Control"] == "no-store"
    made = client.post("/account/tokens", data={
        "name": "deploys", "scope": "read", "expires_in_days": "7", "org_id": org_id,
        "csrf_token": csrf_of(page.data)})
    assert made.status_code == 200
    secret = re.search(rb'<code id="new-token">(wfp_[\w-]{43})</code>', made.data).group(1).decode()
    assert b"shown only this once" in made.data
    pat = {"Authorization": f"Bearer {secret}"}
    assert requests.get(f"{api}/users/me", headers=pat).status_code == 200
    # the list shows its name, scope, organization and last use, never the secret again
    listed = client.get("/account/tokens")
    assert secret.encode() not in listed.data and secret[:10].encode() in listed.data
    row = re.search(rb'<tr class="token" data-name="deploys" data-state="active">(.*?)</tr>',
                    listed.data, re.S).group(1)
    assert b"<td>read</td>" in row and f"Org {org_id}".encode() in row and b"never" not in row
    token_id = re.search(rb'/account/tokens/(\w+)/revoke', listed.data).group(1).decode()
    # revoking needs the form's CSRF token too
    assert client.post(f"/account/tokens/{token_id}/revoke").status_code == 400
    assert requests.get(f"{api}/users/me", headers=pat).status_code == 200
    revoked = client.post(f"/account/tokens/{token_id}/revoke",
                          data={"csrf_token": csrf_of(listed.data)})
    assert revoked.status_code == 302
    after = client.get(revoked.headers["Location"])
    assert b'id="token-revoked"' in after.data and b'data-state="revoked"' in after.data
    assert requests.get(f"{api}/users/me", headers=pat).status_code == 401


def test_a_refused_or_forged_token_form_makes_nothing(console):
    client, api, _ = console
    page = client.get("/account/tokens")
    forged = client.post("/account/tokens", data={"name": "x", "scope": "admin"})
    assert forged.status_code == 400
    for data, field in (({"name": "", "scope": "read"}, "name"),
                        ({"name": "x", "scope": "root"}, "scope"),
                        ({"name": "x", "expires_in_days": "0"}, "expires_in_days"),
                        ({"name": "x", "expires_in_days": "soon"}, "expires_in_days")):
        refused = client.post("/account/tokens", data={**data, "csrf_token": csrf_of(page.data)})
        assert refused.status_code == 422, (data, refused.status_code)
        assert f'data-field="{field}"'.encode() in refused.data, data
        assert b'id="new-token"' not in refused.data
    stranger = client.post("/account/tokens", data={"name": "x", "org_id": "org-not-mine",
                                                    "csrf_token": csrf_of(page.data)})
    assert stranger.status_code == 404  # an organization one is not a member of
    assert b"No tokens yet." in client.get("/account/tokens").data
