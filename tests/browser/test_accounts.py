"""People's walks through the emailed links: verify, reset, invitation; bad input
and forged posts change nothing."""
import requests

from tests.browser.walk import PASSWORD, mailed_link, new_email, sign_in, sign_up
from tests.e2e.test_flows import personal_org, register
from tests.helpers import wait_until


def test_sign_up_then_the_verification_link_confirms_the_address(browsers, mailbox, web):
    ada = browsers("ada")
    email = new_email("ada")
    sign_up(ada, email, "Ada")
    ada.open("/account")
    assert ada.find("#email-unverified")

    link = mailed_link(mailbox, email, r"(http://\S+/verify-email\?token=[\w\-]+)")
    assert link.startswith(web)  # PUBLIC_URL is the console
    ada.open(link)
    assert "token=" not in ada.driver.current_url  # moved into the session at once
    ada.shot("verify-link")
    ada.click("#confirm-email")
    ada.wait_text("h1", "Your email address is confirmed")
    ada.shot("verified")
    ada.open("/account")
    assert ada.find("#email-verified").text == "verified"

    ada.open(link)  # used: a clear page, not an error
    ada.click("#confirm-email")
    ada.wait_text("h1", "This verification link does not work")
    ada.shot("used-link")


def test_forgot_password_mail_link_new_password_then_sign_in(browsers, mailbox, running_mesh):
    owner = register(running_mesh, "forgetful")
    bob = browsers("bob")
    bob.open("/forgot-password")
    bob.fill(email=owner.email)
    bob.click("#send-reset")
    bob.wait_text("#reset-sent", "reset link is on its way")
    link = mailed_link(mailbox, owner.email, r"(http://\S+/reset-password\?token=[\w\-]+)")

    bob.open(link)
    assert "At least 10 characters." in bob.text(".rules")
    bob.fill(password="short")  # the API's rule, beside the field; nothing changes
    bob.click("#set-password")
    bob.wait_text(".field-error[data-field=password]", "at least 10 characters")
    bob.shot("reset-refused")
    new_password = "a brand new password 42"
    bob.fill(password=new_password)
    bob.click("#set-password")
    bob.wait_text("h1", "Your password is changed")
    bob.shot("reset-done")

    sign_in(bob, owner.email, new_password)
    bob.shot("signed-in")
    assert "Sign out" in bob.text("nav")
    bob.open(link)  # used: said so when it is tried, the password stays
    bob.fill(password="yet another password 77")
    bob.click("#set-password")
    bob.wait_text("h1", "This password reset link does not work")
    old = requests.post(f"{running_mesh.api}/auth/login", json={"email": owner.email, "password": PASSWORD},
                        timeout=15)
    assert old.status_code == 401


def test_invitation_new_address_registers_verifies_and_accepts(browsers, mailbox, running_mesh):
    owner_email = new_email("owner")
    owner = browsers("owner")
    sign_up(owner, owner_email, "Owner")
    org_id = wait_until(lambda: _first_org(running_mesh, owner_email), timeout=20,
                        what="the owner's organization")
    owner.open(f"/orgs/{org_id}/employees")
    owner.fill(email="someone@nowhere")  # a browser lets it through, the API does not
    owner.click("#invite")
    owner.wait_text(".field-error[data-field=email]", "email")  # the API's field error
    guest_email = new_email("guest")
    owner.fill(email=guest_email)
    owner.click("#invite")
    owner.wait_text("#invited", "invitation sent")
    assert "pending" in owner.find(f"#invitations tr[data-email='{guest_email}']").text
    owner.shot("invited")

    link = mailed_link(mailbox, guest_email, r"(http://\S+/invitations/[\w\-]+)")
    guest = browsers("guest")
    guest.open(link)
    guest.shot("invitation-signed-out")
    guest.click("#invite-register")
    sign_up(guest, guest_email, "Guest", start=None)
    verify = mailed_link(mailbox, guest_email, r"(http://\S+/verify-email\?token=[\w\-]+)")
    guest.open(verify)
    guest.click("#confirm-email")
    guest.wait_text("h1", "confirmed")
    guest.open("/invitation")
    guest.click("#accept-invitation")
    # the invited address joined on its own (at sign-up, or once verified): the
    # invitation is used, and the page says where this person is a member now
    guest.wait_text("h1", "This invitation link does not work")
    guest.click(f"#my-orgs a[href='/orgs/{org_id}']")
    guest.wait_text("h1", "Owner")
    guest.shot("joined")
    guest.open(f"/orgs/{org_id}/employees")
    rows = [row.text for row in guest.all("#employees tr")]
    assert any(guest_email in row and "active" in row for row in rows), rows


def _first_org(mesh, email):
    login = requests.post(f"{mesh.api}/auth/login", json={"email": email, "password": PASSWORD}, timeout=15)
    items = requests.get(f"{mesh.api}/orgs", timeout=15,
                         headers={"Authorization": f"Bearer {login.json()['access_token']}"}).json()["items"]
    return items[0]["org_id"] if items else None


def test_bad_sign_up_shows_the_field_error_and_creates_nothing(browsers, running_mesh):
    eve = browsers("eve")
    email = new_email("eve")
    eve.open("/register")
    eve.fill(name="Eve", email=email, password="password")
    eve.click("#register")
    eve.wait_text(".field-error[data-field=password]", "")
    assert eve.find("#f-password").get_attribute("aria-invalid") == "true"
    assert eve.find("#f-email").get_attribute("value") == email  # kept, the password is not
    eve.shot("refused")
    login = requests.post(f"{running_mesh.api}/auth/login", json={"email": email, "password": "password"},
                          timeout=15)
    assert login.status_code == 401


def test_member_gets_403_on_operator_pages_and_a_post_without_csrf_changes_nothing(browsers, running_mesh):
    member = register(running_mesh, "member")
    personal_org(member)
    mia = browsers("mia")
    sign_in(mia, member.email)
    mia.open("/ops/")
    assert mia.find(".error").get_attribute("data-status") == "403"
    mia.shot("operator-403")
    mia.open("/ops/dead-letters?service=tasks")
    assert mia.find(".error").get_attribute("data-status") == "403"

    # a form posted without its CSRF token (as another site would): refused, nothing changed
    mia.open("/account")
    mia.driver.execute_script(
        "const f = document.querySelector('form[method=post]:not(.inline)');"
        "f.querySelector('[name=csrf_token]').remove();"
        "f.querySelector('[name=name]').value = 'Forged'; f.submit();")
    mia.wait_text("h1", "Please try again")
    assert mia.find(".error").get_attribute("data-status") == "400"
    mia.shot("csrf-refused")
    assert member.get("/users/me").json()["name"] == "Member"


def test_two_factor_setup_with_the_qr_code_then_sign_in_with_a_recovery_code(browsers, running_mesh):
    import pyotp

    user = register(running_mesh, "careful")
    cy = browsers("careful")
    sign_in(cy, user.email)
    cy.open("/account/2fa")
    cy.click("#setup-2fa")
    wait_until(lambda: cy.all("#qr svg"), timeout=20, what="the QR code")  # drawn server side
    secret = cy.text("#mfa-secret")
    cy.shot("2fa-qr")
    cy.fill(code="000000")
    cy.click("#enable-2fa")
    cy.wait_text(".field-error[data-field=code]", "")
    cy.fill(code=pyotp.TOTP(secret).now())
    cy.click("#enable-2fa")
    cy.wait_text("h1", "Two-factor sign-in is on")
    codes = [li.text for li in cy.all("#recovery-codes li")]
    assert codes
    cy.shot("recovery-codes")

    cy.click("nav button.link")  # sign out
    cy.open("/login")
    cy.fill(email=user.email, password=PASSWORD)
    cy.click("#sign-in")
    cy.wait_text("h1", "Your code")
    cy.fill(code=codes[0])
    cy.click("button[type=submit]")
    wait_until(lambda: "/login" not in cy.path, timeout=20, what="the second step to sign in")
    assert "Sign out" in cy.text("nav")
    cy.shot("signed-in-2fa")
