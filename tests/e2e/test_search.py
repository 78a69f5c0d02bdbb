"""Search through the gateway, over the whole mesh: a task created over HTTP
is found by its description, by a prefix as it is typed and with a typo; a
comment's words find it too; a deleted task is gone; a non-member gets 404."""
from __future__ import annotations

import uuid

from tests.e2e.test_flows import personal_org, register
from tests.helpers import wait_until


def _hits(user, org_id, q, **params):
    response = user.get(f"/orgs/{org_id}/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_task_is_found_by_prefix_and_typo_and_only_by_members(running_mesh):
    ada = register(running_mesh, "ada")
    org_id = personal_org(ada)["org_id"]
    word = "xylophone" + uuid.uuid4().hex[:6]  # a made-up word only this task holds
    created = ada.post(f"/orgs/{org_id}/tasks", json={
        "title": f"Tune the {word}", "description": "before the concert", "priority": "high"})
    assert created.status_code == 201, created.text
    task_id = created.json()["task_id"]

    found = wait_until(lambda: _hits(ada, org_id, word)["items"], timeout=20,
                       what="the task to be searchable")
    assert [(h["type"], h["id"]) for h in found] == [("task", task_id)]
    assert found[0]["meta"]["priority"] == "high"
    assert [h["id"] for h in _hits(ada, org_id, word[:5])["items"]] == [task_id]   # as typed
    typo = word[:2] + word[3] + word[2] + word[4:]                                   # swapped
    assert task_id in [h["id"] for h in _hits(ada, org_id, typo)["items"]]
    assert [h["id"] for h in _hits(ada, org_id, "concert", types="task")["items"]] == [task_id]
    suggested = ada.get(f"/orgs/{org_id}/search/suggest", params={"q": f"tune {word[:4]}"})
    assert suggested.status_code == 200 and [s["id"] for s in suggested.json()["items"]] == [task_id]

    comment = ada.post(f"/orgs/{org_id}/tasks/{task_id}/comments",
                       json={"body": f"bring the {word}mallets"})
    assert comment.status_code == 201, comment.text
    wait_until(lambda: _hits(ada, org_id, f"{word}mallets")["items"], timeout=20,
               what="the comment to be searchable")

    # a member of another org: nothing of this org exists for them
    eve = register(running_mesh, "eve")
    for path in ("search", "search/suggest"):
        refused = eve.get(f"/orgs/{org_id}/{path}", params={"q": word})
        assert refused.status_code == 404, refused.text
        assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert _hits(eve, personal_org(eve)["org_id"], word)["items"] == []

    bad = ada.get(f"/orgs/{org_id}/search", params={"q": word, "types": "secrets"})
    assert bad.status_code == 422 and "types" in bad.text

    assert ada.call("DELETE", f"/orgs/{org_id}/tasks/{task_id}").status_code == 204
    wait_until(lambda: not _hits(ada, org_id, word)["items"], timeout=20,
               what="the deleted task to leave the index")
