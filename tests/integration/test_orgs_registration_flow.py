"""Flow 1 of architecture.md with the real auth service: registering over HTTP
gives the user a personal org they own, and an owner adds another registered
user by email (auth.find_user_by_email) or invites one who registers later."""
import pytest
import requests

from auth_svc.service import AuthService
from employee_svc.service import EmployeeService
from gateway_svc.service import GatewayService
from org_svc.service import OrganizationService
from tests.helpers import wait_until


@pytest.fixture
def base(container_factory, make_config):
    config = make_config(BCRYPT_ROUNDS=4)
    for cls in (AuthService, OrganizationService, EmployeeService, GatewayService):
        container_factory(cls, config).start()
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"


def register(base, email, name):
    response = requests.post(f"{base}/auth/register", timeout=10, json={
        "email": email, "password": "a long passphrase 42", "name": name})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def my_orgs(base, headers):
    return requests.get(f"{base}/orgs", headers=headers, timeout=10).json()["items"]


def test_registration_makes_a_personal_org_and_members_join_by_email(base, unique):
    owner = register(base, f"olga-{unique}@example.com", "Olga Owner")
    org = wait_until(lambda: my_orgs(base, owner), what="the personal org")[0]
    assert org["personal"] and org["name"] == "Olga Owner's workspace"
    org_id = org["org_id"]
    listed = requests.get(f"{base}/orgs/{org_id}/employees", headers=owner, timeout=10).json()
    assert [(e["email"], e["role"]) for e in listed["items"]] == [
        (f"olga-{unique}@example.com", "owner")]

    bob = register(base, f"bob-{unique}@example.com", "Bob Builder")
    added = requests.post(f"{base}/orgs/{org_id}/employees", headers=owner, timeout=10,
                          json={"email": f"BOB-{unique}@example.com", "role": "manager"})
    assert added.status_code == 201, added.text
    assert added.json()["name"] == "Bob Builder"
    assert org_id in [o["org_id"] for o in wait_until(
        lambda: len(my_orgs(base, bob)) == 2 and my_orgs(base, bob))]

    invited = requests.post(f"{base}/orgs/{org_id}/employees", headers=owner, timeout=10,
                            json={"email": f"cat-{unique}@example.com"})
    assert invited.status_code == 202, invited.text
    cat = register(base, f"cat-{unique}@example.com", "Cat")
    wait_until(lambda: org_id in [o["org_id"] for o in my_orgs(base, cat)],
               what="the invitation turned into a membership")
    assert requests.get(f"{base}/orgs/{org_id}", headers=cat, timeout=10).status_code == 200
