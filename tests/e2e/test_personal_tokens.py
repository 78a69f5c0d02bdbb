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
