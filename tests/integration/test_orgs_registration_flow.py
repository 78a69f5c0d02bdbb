"""Flow 1 of architecture.md with the real auth service: registering over HTTP
gives the user a personal org they own, and an owner adds another user by email
(auth.find_user_by_email) or invites one; a membership goes only to the account
that holds the address *verified* (audit finding: whoever registered an invited
address first used to become an employee, an admin if invited as one)."""
import pytest
import requests
from nameko.events import event_handler

from auth_svc.service import AuthService
from employee_svc.service import EmployeeService
from gateway_svc.service import GatewayService
from org_svc.service import OrganizationService
from tests.helpers import wait_until
from tests.tokens import token_of

PASSWORD = "a long passphrase 42"


class VerificationLinks:
    """What the user's mailbox would get: the verification link of each address
    (sealed in the event: only what renders the email opens it)."""
    name = "mailbox"
    config: dict = {}
    tokens: dict[str, str] = {}

    @event_handler("auth", "user.registered")
    def registered(self, event):
        VerificationLinks.tokens[event["data"]["email"]] = token_of(self.config, event["data"])

    @event_handler("auth", "user.email.verification.requested")
    def requested(self, event):
        VerificationLinks.tokens[event["data"]["email"]] = token_of(self.config, event["data"])


@pytest.fixture
def base(container_factory, make_config):
    config = make_config(BCRYPT_ROUNDS=4)
    VerificationLinks.config = config
    for cls in (VerificationLinks, AuthService, OrganizationService, EmployeeService,
                GatewayService):
        container_factory(cls, config).start()
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"


def register(base, email, name):
    VerificationLinks.tokens.pop(email.lower(), None)  # a link of an earlier holder
    response = requests.post(f"{base}/auth/register", timeout=10, json={
        "email": email, "password": PASSWORD, "name": name})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def verify(base, email):
    """The owner of ``email`` follows the link mailed to it."""
    token = wait_until(lambda: VerificationLinks.tokens.pop(email.lower(), None),
                       what=f"the verification link of {email}")
    response = requests.post(f"{base}/auth/email/verify", json={"token": token}, timeout=10)
    assert response.status_code == 204, response.text


def my_orgs(base, headers):
    return requests.get(f"{base}/orgs", headers=headers, timeout=10).json()["items"]


def my_invitations(base, headers):
    response = requests.get(f"{base}/me/invitations", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def owner_with_org(base, unique):
    owner = register(base, f"olga-{unique}@example.com", "Olga Owner")
    org_id = wait_until(lambda: my_orgs(base, owner), what="the personal org")[0]["org_id"]
    return owner, org_id


def test_registration_makes_a_personal_org_and_members_join_by_email(base, unique):
    owner = register(base, f"olga-{unique}@example.com", "Olga Owner")
    org = wait_until(lambda: my_orgs(base, owner), what="the personal org")[0]
    assert org["personal"] and org["name"] == "Olga Owner's workspace"
    org_id = org["org_id"]
    listed = requests.get(f"{base}/orgs/{org_id}/employees", headers=owner, timeout=10).json()
    assert [(e["email"], e["role"]) for e in listed["items"]] == [
        (f"olga-{unique}@example.com", "owner")]

    bob = register(base, f"bob-{unique}@example.com", "Bob Builder")
    verify(base, f"bob-{unique}@example.com")
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
    assert [i["org_id"] for i in my_invitations(base, cat)] == [org_id]
    verify(base, f"cat-{unique}@example.com")
    wait_until(lambda: org_id in [o["org_id"] for o in my_orgs(base, cat)],
               what="the invitation turned into a membership")
    assert requests.get(f"{base}/orgs/{org_id}", headers=cat, timeout=10).status_code == 200
    assert my_invitations(base, cat) == []


def test_registering_an_invited_address_first_gains_nothing(base, unique):
    owner, org_id = owner_with_org(base, unique)
    newhire = f"newhire-{unique}@example.com"
    invited = requests.post(f"{base}/orgs/{org_id}/employees", headers=owner, timeout=10,
                            json={"email": newhire, "role": "admin"})
    assert invited.status_code == 202, invited.text

    squatter = register(base, newhire, "Not The New Hire")   # cannot read newhire's mail
    wait_until(lambda: my_orgs(base, squatter), what="the squatter's personal org")
    assert [(i["org_id"], i["role"]) for i in my_invitations(base, squatter)] == [
        (org_id, "admin")]   # visible, pending
    assert requests.get(f"{base}/orgs/{org_id}", headers=squatter, timeout=10).status_code == 404
    assert org_id not in [o["org_id"] for o in my_orgs(base, squatter)]
    # adding the squatter's (unverified) account by email is an invitation too, not a seat
    again = requests.post(f"{base}/orgs/{org_id}/employees", headers=owner, timeout=10,
                          json={"email": newhire, "role": "admin"})
    assert again.status_code == 202, again.text
    staff = requests.get(f"{base}/orgs/{org_id}/employees", headers=owner, timeout=10).json()
    assert [e["email"] for e in staff["items"]] == [f"olga-{unique}@example.com"]


def test_the_verified_owner_of_the_address_gets_the_membership(base, unique):
    owner, org_id = owner_with_org(base, unique)
    newhire = f"newhire-{unique}@example.com"
    squatter = register(base, newhire, "Squatter")          # registered first, never verified
    added = requests.post(f"{base}/orgs/{org_id}/employees", headers=owner, timeout=10,
                          json={"email": newhire, "role": "admin"})
    assert added.status_code == 202, added.text
    # the squatter moves to an address of their own and proves it: the invitation stays
    # with the address, not with the account that held it
    moved = requests.patch(f"{base}/users/me", headers=squatter, timeout=10,
                           json={"email": f"squatter-{unique}@example.com"})
    assert moved.status_code == 200, moved.text
    verify(base, f"squatter-{unique}@example.com")
    assert my_invitations(base, squatter) == []

    real = register(base, newhire, "New Hire")              # the address is free again
    verify(base, newhire)
    wait_until(lambda: org_id in [o["org_id"] for o in my_orgs(base, real)],
               what="the verified owner's membership")
    staff = requests.get(f"{base}/orgs/{org_id}/employees", headers=owner, timeout=10).json()
    assert sorted((e["email"], e["role"]) for e in staff["items"]) == [
        (newhire, "admin"), (f"olga-{unique}@example.com", "owner")]
    assert requests.get(f"{base}/orgs/{org_id}", headers=squatter, timeout=10).status_code == 404
