"""Access tokens in the console: a person makes one, sees its secret once, uses
it, revokes it; an org's owner makes a service account and issues and revokes
its token."""
from selenium.webdriver.support.ui import Select

from tests.browser.walk import sign_in
from tests.e2e.test_flows import personal_org, register


def test_a_token_is_made_shown_once_and_revoked_and_a_service_account_gets_one(
        browsers, running_mesh):
    ada = register(running_mesh, "tokens")
    org = personal_org(ada)
    me = browsers("ada")
    sign_in(me, ada.email)
    me.open("/account")
    me.click("#access-tokens")
    me.wait_text("h1", "Access tokens")
    me.fill(name="laptop script")
    Select(me.find("#f-scope")).select_by_visible_text("read")
    Select(me.find("#f-org_id")).select_by_value(org["org_id"])
    me.click("#create-token")
    secret = me.wait_text("#new-token", "wfp_")
    me.shot("token-shown-once")
    pat = {"Authorization": f"Bearer {secret}"}
    assert running_mesh.request("GET", f"/orgs/{org['org_id']}/tasks", headers=pat).status_code == 200
    me.open("/account/tokens")  # never again
    assert not me.all("#new-token") and secret not in me.driver.page_source
    row = "tr.token[data-name='laptop script']"
    assert "read" in me.text(row) and org["name"] in me.text(row)
    me.click(f"{row} button.revoke")
    me.wait_text("#token-revoked", "revoked")
    assert me.text(f"{row} .state") == "revoked"
    me.shot("token-revoked")
    assert running_mesh.request("GET", f"/orgs/{org['org_id']}/tasks", headers=pat).status_code == 401

    # the org's settings lead to its service accounts
    me.open(f"/orgs/{org['org_id']}/settings")
    me.click("#manage-service-accounts")
    me.fill(name="Deploy bot")
    me.click("#create-service-account")
    me.wait_text("h1", "Deploy bot")
    me.fill(name="deploys")
    Select(me.find("#f-scope")).select_by_visible_text("write")
    me.click("#create-token")
    bot_secret = me.wait_text("#new-token", "wfp_")
    me.shot("service-token-shown-once")
    bot = {"Authorization": f"Bearer {bot_secret}"}
    made = running_mesh.request("POST", f"/orgs/{org['org_id']}/tasks", headers=bot,
                                json={"title": "deployed by the bot"})
    assert made.status_code == 201, made.text
    me.click("tr.token[data-name='deploys'] button.revoke")
    me.wait_text("#token-revoked", "revoked")
    assert running_mesh.request("GET", f"/orgs/{org['org_id']}/tasks", headers=bot).status_code == 401
    me.open(f"/orgs/{org['org_id']}/service-accounts")
    assert "Deploy bot" in me.text("#service-accounts")
