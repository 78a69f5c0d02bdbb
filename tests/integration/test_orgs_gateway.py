"""The organization, employee and invitation routes over HTTP: the real
gateway, organizations and employees services, auth/teams/tasks faked
(orgs_fakes), access tokens minted by auth's test helper (tests/tokens.py)."""
import pytest
import requests

from gateway_svc.service import GatewayService
from org_svc.domain import personal_org_id
from tests.helpers import wait_until
from tests.integration.orgs_fakes import FakeAuth, Mesh
from tests.tokens import auth_headers, token_of


@pytest.fixture
def gw(container_factory, make_config):
    config = make_config(ORG_PLANS={"free": {"employees": 3, "teams": 1}},
                         INVITATION_RATE_LIMITS={"address": "2/3600", "org": "100/3600"})
    mesh = Mesh(container_factory, config)
    container_factory(GatewayService, config).start()
    mesh.base = f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"
    mesh.config = config
    return mesh


def headers(gw, user):
    return auth_headers(gw.config, user["user_id"])


class Client:
    def __init__(self, gw, user):
        self.gw, self.user, self.h = gw, user, headers(gw, user)

    def __getattr__(self, method):
        def call(path, headers=None, **kwargs):
            return requests.request(method.upper(), f"{self.gw.base}{path}",
                                    headers={**self.h, **(headers or {})}, timeout=10, **kwargs)
        return call


def problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    return response.json()


def signed_up(gw, unique, name):
    user = gw.register(unique, name=name)
    org_id = personal_org_id(user["user_id"])
    wait_until(lambda: gw.call("employees", "get_membership", org_id, user["user_id"]))
    return Client(gw, user), org_id


def test_org_lifecycle_over_http(gw, unique):
    owner, _ = signed_up(gw, unique, "Olga Owner")
    created = owner.post("/orgs", json={"name": "Acme"})
    assert created.status_code == 201, created.text
    org_id = created.json()["org_id"]
    wait_until(lambda: owner.get(f"/orgs/{org_id}").status_code == 200)
    assert org_id in [o["org_id"] for o in owner.get("/orgs").json()["items"]]
    assert owner.get(f"/orgs/{org_id}").json()["name"] == "Acme"  # cached at the gateway now
    assert owner.patch(f"/orgs/{org_id}", json={"name": "Acme 2"}).json()["name"] == "Acme 2"
    assert owner.get(f"/orgs/{org_id}").json()["name"] == "Acme 2"  # stale at once
    problem(owner.patch(f"/orgs/{org_id}", json={"name": ""}), 422)
    problem(owner.patch(f"/orgs/{org_id}", data="{not json",
                        headers={"Content-Type": "application/json"}), 400)
    problem(owner.patch(f"/orgs/{org_id}", data="name=x",
                        headers={"Content-Type": "text/plain"}), 415)

    settings = owner.patch(f"/orgs/{org_id}/settings", json={"timezone": "Asia/Tokyo"})
    assert settings.status_code == 200 and settings.json()["timezone"] == "Asia/Tokyo"
    bad = problem(owner.patch(f"/orgs/{org_id}/settings", json={"favourite_colour": "red"}), 422)
    assert "favourite_colour" in bad["errors"]
    problem(owner.patch(f"/orgs/{org_id}/settings", json={"locale": "x" * 2_000_000}), 413)
    assert owner.get(f"/orgs/{org_id}/settings").json()["timezone"] == "Asia/Tokyo"

    assert owner.get(f"/orgs/{org_id}/subscription").json()["plan"] == "free"
    # the plan is billing's (an operator RPC), not a switch the owner flips
    problem(owner.put(f"/orgs/{org_id}/subscription", json={"plan": "enterprise"}), 405)
    assert owner.get(f"/orgs/{org_id}/subscription").json()["plan"] == "free"
    assert gw.call("organizations", "set_plan", org_id, "pro")["plan"] == "pro"
    assert owner.get(f"/orgs/{org_id}/subscription").json()["limits"]["employees"] == 250

    assert owner.delete(f"/orgs/{org_id}").status_code == 204
    problem(owner.get(f"/orgs/{org_id}"), 404)
    assert org_id not in [o["org_id"] for o in owner.get("/orgs").json()["items"]]


def test_employees_invitations_permissions_and_plan_limit(gw, unique):
    owner, org_id = signed_up(gw, unique, "Olga Owner")
    bob_user = gw.register(unique, name="Bob Builder", publish=False)
    added = owner.post(f"/orgs/{org_id}/employees",
                       json={"email": bob_user["email"], "role": "member", "job_title": "Mason"})
    assert added.status_code == 201, added.text
    bob_id = added.json()["employee_id"]
    problem(owner.post(f"/orgs/{org_id}/employees", json={"email": bob_user["email"]}), 409)
    problem(owner.post(f"/orgs/{org_id}/employees",
                       json={"email": "x@example.com", "role": "tsar"}), 422)
    problem(owner.post(f"/orgs/{org_id}/employees", json={"email": {"$gt": ""}}), 422)
    problem(owner.post(f"/orgs/{org_id}/employees", json={}), 422)

    bob = Client(gw, bob_user)
    assert bob.get(f"/orgs/{org_id}/employees", params={"q": "mas"}).json()["items"][0][
        "employee_id"] == bob_id
    # a member may not add, and learns so with a 403 (they are in the org)
    problem(bob.post(f"/orgs/{org_id}/employees", json={"email": "z@example.com"}), 403)
    # the role change is seen by bob's very next request
    assert owner.patch(f"/orgs/{org_id}/employees/{bob_id}",
                       json={"role": "manager"}).json()["role"] == "manager"
    invited = bob.post(f"/orgs/{org_id}/employees", json={"email": f"new-{unique}@example.com"})
    assert invited.status_code == 202 and invited.json()["email"] == f"new-{unique}@example.com"
    problem(bob.post(f"/orgs/{org_id}/employees", json={"email": "z@example.com",
                                                         "role": "admin"}), 403)
    limit = problem(owner.post(f"/orgs/{org_id}/employees",
                               json={"email": f"more-{unique}@example.com"}), 403)
    assert limit["type"].endswith("plan-limit")
    listed = owner.get(f"/orgs/{org_id}/invitations").json()["items"]
    assert [i["email"] for i in listed] == [f"new-{unique}@example.com"]
    assert owner.delete(f"/orgs/{org_id}/invitations/{listed[0]['invitation_id']}").status_code == 204
    problem(owner.get(f"/orgs/{org_id}/employees", params={"limit": 500}), 422)

    def listed_titles():
        items = owner.get(f"/orgs/{org_id}/employees").json()["items"]
        return {e["employee_id"]: e["job_title"] for e in items}

    assert listed_titles()[bob_id] == "Mason"  # now cached at the gateway
    owner.patch(f"/orgs/{org_id}/employees/{bob_id}", json={"job_title": "Architect"})
    assert listed_titles()[bob_id] == "Architect"  # the cached list went stale at once
    assert owner.delete(f"/orgs/{org_id}/employees/{bob_id}").status_code == 204
    assert bob_id not in listed_titles()
    problem(bob.get(f"/orgs/{org_id}/employees"), 404)


def test_accepting_an_invitation_over_http(gw, unique):
    owner, org_id = signed_up(gw, unique, "Olga Owner")
    invitee = gw.register(unique, name="Ivy", publish=False)
    FakeAuth.users.pop(invitee["user_id"])
    assert owner.post(f"/orgs/{org_id}/employees",
                      json={"email": invitee["email"]}).status_code == 202
    FakeAuth.users[invitee["user_id"]] = invitee
    doc = gw.store("employees").db.invitations.find_one({"org_id": org_id})
    assert doc and "token" not in doc
    # the token only travels in the event, sealed; unseal it from the outbox
    event = wait_until(lambda: gw.store("employees").db.outbox.find_one(
        {"envelope.event_type": "employee.invited"}), what="the invitation event")
    token = token_of(gw.config, event["envelope"]["data"])
    ivy = Client(gw, invitee)
    problem(ivy.post("/invitations/not-a-token/accept"), 404)
    joined = ivy.post(f"/invitations/{token}/accept")
    assert joined.status_code == 200 and joined.json()["org_id"] == org_id
    problem(ivy.post(f"/invitations/{token}/accept"), 404)
    assert ivy.get(f"/orgs/{org_id}").status_code == 200


def test_re_inviting_one_address_is_limited_with_a_429_and_retry_after(gw, unique):
    owner, org_id = signed_up(gw, unique, "Olga Owner")
    email = f"spam-{unique}@example.com"
    for _ in range(2):
        assert owner.post(f"/orgs/{org_id}/employees", json={"email": email}).status_code == 202
    refused = owner.post(f"/orgs/{org_id}/employees", json={"email": email})
    body = problem(refused, 429)
    assert body["type"].endswith("rate-limited") and "this address" in body["detail"]
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert len(owner.get(f"/orgs/{org_id}/invitations").json()["items"]) == 1


def test_transfer_ownership_over_http(gw, unique):
    owner, org_id = signed_up(gw, unique, "Olga Owner")
    bob_user = gw.register(unique, name="Bob", publish=False)
    owner.post(f"/orgs/{org_id}/employees", json={"email": bob_user["email"], "role": "admin"})
    bob = Client(gw, bob_user)
    problem(bob.post(f"/orgs/{org_id}/transfer-ownership",
                     json={"user_id": owner.user["user_id"]}), 403)
    problem(owner.post(f"/orgs/{org_id}/transfer-ownership", json={"user_id": "nobody"}), 422)
    done = owner.post(f"/orgs/{org_id}/transfer-ownership", json={"user_id": bob_user["user_id"]})
    assert done.status_code == 200 and done.json()["owner_user_id"] == bob_user["user_id"]
    problem(owner.delete(f"/orgs/{org_id}"), 403)  # an admin now
    assert bob.delete(f"/orgs/{org_id}").status_code == 204


def test_tenancy_matrix_a_user_of_org_a_sees_nothing_of_org_b(gw, unique):
    alice, org_a = signed_up(gw, unique, "Alice A")
    bert, org_b = signed_up(gw, unique, "Bert B")
    b_member = gw.register(unique, name="Bella B", publish=False)
    b_emp = bert.post(f"/orgs/{org_b}/employees", json={"email": b_member["email"]}).json()
    b_inv = bert.post(f"/orgs/{org_b}/employees", json={"email": f"inv-{unique}@example.com"}
                      ).json()
    e, i = b_emp["employee_id"], b_inv["invitation_id"]
    routes = [("get", f"/orgs/{org_b}", None), ("patch", f"/orgs/{org_b}", {"name": "x"}),
              ("delete", f"/orgs/{org_b}", None), ("get", f"/orgs/{org_b}/settings", None),
              ("patch", f"/orgs/{org_b}/settings", {"timezone": "UTC"}),
              ("post", f"/orgs/{org_b}/transfer-ownership", {"user_id": alice.user["user_id"]}),
              ("get", f"/orgs/{org_b}/subscription", None),
              ("post", f"/orgs/{org_b}/employees", {"email": f"z-{unique}@example.com"}),
              ("get", f"/orgs/{org_b}/employees", None),
              ("get", f"/orgs/{org_b}/employees/{e}", None),
              ("patch", f"/orgs/{org_b}/employees/{e}", {"role": "admin"}),
              ("delete", f"/orgs/{org_b}/employees/{e}", None),
              ("get", f"/orgs/{org_b}/invitations", None),
              ("delete", f"/orgs/{org_b}/invitations/{i}", None),
              # B's ids through A's org
              ("get", f"/orgs/{org_a}/employees/{e}", None),
              ("patch", f"/orgs/{org_a}/employees/{e}", {"job_title": "spy"}),
              ("delete", f"/orgs/{org_a}/employees/{e}", None),
              ("delete", f"/orgs/{org_a}/invitations/{i}", None)]
    for method, path, body in routes:
        kwargs = {"json": body} if body is not None else {}
        problem(getattr(alice, method)(path, **kwargs), 404)
    # nothing of B leaks into A's lists, and B is untouched
    assert {o["org_id"] for o in alice.get("/orgs").json()["items"]} == {org_a}
    assert {x["org_id"] for x in alice.get(f"/orgs/{org_a}/employees").json()["items"]} == {org_a}
    assert alice.get(f"/orgs/{org_a}/invitations").json()["items"] == []
    assert bert.get(f"/orgs/{org_b}").json()["name"] == "Bert B's workspace"
    assert bert.get(f"/orgs/{org_b}/employees/{e}").json()["role"] == "member"
    assert len(bert.get(f"/orgs/{org_b}/invitations").json()["items"]) == 1


def test_org_and_settings_etags_guard_writes(gw, unique):
    owner, _ = signed_up(gw, unique, "Etta Etag")
    created = owner.post("/orgs", json={"name": "Tags"}, headers={"Idempotency-Key": unique})
    assert created.status_code == 201, created.text
    org_id = created.json()["org_id"]
    again = owner.post("/orgs", json={"name": "Tags"}, headers={"Idempotency-Key": unique})
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["org_id"] == org_id
    wait_until(lambda: owner.get(f"/orgs/{org_id}").status_code == 200)
    got = owner.get(f"/orgs/{org_id}")
    tag = got.headers["ETag"]
    assert tag == f'"v{got.json()["version"]}"'
    assert owner.get(f"/orgs/{org_id}", headers={"If-None-Match": tag}).status_code == 304
    settings = owner.get(f"/orgs/{org_id}/settings")
    assert settings.headers["ETag"] == tag  # the settings' tag is the org's
    assert owner.get(f"/orgs/{org_id}/settings", headers={"If-None-Match": tag}).status_code == 304
    renamed = owner.patch(f"/orgs/{org_id}", json={"name": "Tags 2"}, headers={"If-Match": tag})
    assert renamed.status_code == 200, renamed.text
    new_tag = renamed.headers["ETag"]
    assert new_tag != tag
    problem(owner.patch(f"/orgs/{org_id}", json={"name": "lost"}, headers={"If-Match": tag}), 412)
    problem(owner.patch(f"/orgs/{org_id}/settings", json={"timezone": "Asia/Tokyo"},
                        headers={"If-Match": tag}), 412)
    problem(owner.delete(f"/orgs/{org_id}", headers={"If-Match": tag}), 412)
    assert owner.get(f"/orgs/{org_id}").json()["name"] == "Tags 2"
    assert owner.get(f"/orgs/{org_id}/settings").json()["timezone"] != "Asia/Tokyo"
    done = owner.patch(f"/orgs/{org_id}/settings", json={"timezone": "Asia/Tokyo"},
                       headers={"If-Match": new_tag})
    assert done.status_code == 200 and done.json()["timezone"] == "Asia/Tokyo"


def test_an_employee_etag_guards_its_changes(gw, unique):
    owner, org_id = signed_up(gw, unique, "Emma Etag")
    me = owner.get(f"/orgs/{org_id}/employees").json()["items"][0]
    url = f"/orgs/{org_id}/employees/{me['employee_id']}"
    got = owner.get(url)
    tag = got.headers["ETag"]
    assert tag == f'"v{got.json()["version"]}"'
    assert owner.get(url, headers={"If-None-Match": tag}).status_code == 304
    changed = owner.patch(url, json={"job_title": "Founder"}, headers={"If-Match": tag})
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] != tag
    problem(owner.patch(url, json={"job_title": "Lost"}, headers={"If-Match": tag}), 412)
    assert owner.get(url).json()["job_title"] == "Founder"
