"""A personal access token through the whole mesh (every service as its own
RabbitMQ and Redis user, two gateway processes): it creates and reads tasks,
an Idempotency-Key makes a retried create answer the first task, ETags guard
writes, and a revoked token is refused by every gateway at once."""
import uuid

from tests.e2e.test_flows import personal_org, register


def test_a_personal_access_token_works_through_the_mesh_until_revoked(running_mesh):
    ada = register(running_mesh, "pat")
    org_id = personal_org(ada)["org_id"]
    made = ada.post("/me/tokens", json={"name": "ci", "scope": "write", "org_id": org_id})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("wfp_")
    pat = {"Authorization": f"Bearer {token}"}

    def call(method, path, **kwargs):
        return running_mesh.request(method, path, headers={**pat, **kwargs.pop("headers", {})},
                                    **kwargs)

    key = {"Idempotency-Key": uuid.uuid4().hex}
    title = f"by token {uuid.uuid4().hex[:6]}"
    first = call("POST", f"/orgs/{org_id}/tasks", json={"title": title}, headers=key)
    assert first.status_code == 201, first.text
    again = call("POST", f"/orgs/{org_id}/tasks", json={"title": title}, headers=key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["task_id"] == first.json()["task_id"]
    listed = call("GET", f"/orgs/{org_id}/tasks", params={"q": title.split()[-1]}).json()["items"]
    assert [t["task_id"] for t in listed] == [first.json()["task_id"]]

    task = f"/orgs/{org_id}/tasks/{first.json()['task_id']}"
    got = call("GET", task)
    tag = got.headers["ETag"]
    assert call("GET", task, headers={"If-None-Match": tag}).status_code == 304
    assert call("PATCH", task, json={"title": "renamed"}, headers={"If-Match": tag}).status_code == 200
    assert call("PATCH", task, json={"title": "lost"}, headers={"If-Match": tag}).status_code == 412
    assert ada.get(task).json()["title"] == "renamed"

    # the token cannot reach the account, and auth saw it used
    assert call("GET", "/me/tokens").status_code == 403
    mine = ada.get("/me/tokens").json()["items"]
    assert [t["last_used_at"] is not None for t in mine] == [True]
    assert token not in str(mine)

    # revoked: refused on the next request by every gateway process
    assert ada.call("DELETE", f"/me/tokens/{made.json()['token_id']}").status_code == 204
    assert {call("GET", task).status_code for _ in range(6)} == {401}


def test_a_service_account_holds_org_bound_tokens_and_goes_with_them(running_mesh):
    from tests.helpers import wait_until

    owner = register(running_mesh, "sa-owner")
    org_id = personal_org(owner)["org_id"]
    other_org = owner.post("/orgs", json={"name": f"Other {uuid.uuid4().hex[:6]}"}).json()["org_id"]
    made = owner.post(f"/orgs/{org_id}/service-accounts", json={"name": "Deploy bot", "role": "member"})
    assert made.status_code == 201, made.text
    account = made.json()
    assert account["role"] == "member" and account["email"].endswith("@service-accounts.invalid")
    listed = owner.get(f"/orgs/{org_id}/service-accounts").json()["items"]
    assert [a["user_id"] for a in listed] == [account["user_id"]]
    staff = owner.get(f"/orgs/{org_id}/employees", params={"limit": 200}).json()["items"]
    assert any(e["user_id"] == account["user_id"] and e["status"] == "active" for e in staff)

    tokens = f"/orgs/{org_id}/service-accounts/{account['user_id']}/tokens"
    token = owner.post(tokens, json={"name": "ci", "scope": "write"})
    assert token.status_code == 201, token.text
    assert token.json()["org_id"] == org_id
    bot = {"Authorization": f"Bearer {token.json()['token']}"}
    task = running_mesh.request("POST", f"/orgs/{org_id}/tasks", headers=bot,
                                json={"title": "deployed"})
    assert task.status_code == 201, task.text
    assert task.json()["creator_user_id"] == account["user_id"]
    assert running_mesh.request("GET", f"/orgs/{other_org}/tasks", headers=bot).status_code == 404
    # the account cannot sign in: it has no password
    login = running_mesh.request("POST", "/auth/login",
                                 json={"email": account["email"], "password": "x" * 12})
    assert login.status_code == 401
    assert [t["token_id"] for t in owner.get(tokens).json()["items"]] == [token.json()["token_id"]]

    assert owner.call("DELETE", f"/orgs/{org_id}/service-accounts/{account['user_id']}").status_code == 204
    assert running_mesh.request("GET", f"/orgs/{org_id}/tasks", headers=bot).status_code == 401
    assert owner.get(f"/orgs/{org_id}/service-accounts").json()["items"] == []

    def membership_gone():
        staff = owner.get(f"/orgs/{org_id}/employees", params={"limit": 200}).json()["items"]
        return not any(e["user_id"] == account["user_id"] and e["status"] == "active" for e in staff)

    wait_until(membership_gone, timeout=20, interval=0.2, what="the account's membership to go")
