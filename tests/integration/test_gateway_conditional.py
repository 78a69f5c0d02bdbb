"""Idempotency-Key and ETag / If-Match / If-None-Match through the real gateway,
tasks and teams services (gateway_svc.idempotency, gateway_svc.etags)."""
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from gateway_svc.service import GatewayService
from task_svc.service import TaskService
from team_svc.service import TeamService
from tests.integration.tasks_mesh import (
    FakeEmployees,
    FakeOrganizations,
    database,
    make_org,
    problem,
    start_api,
)
from tests.tokens import auth_headers


@pytest.fixture
def api(container_factory, make_config, tmp_path):
    config = make_config(TASK_FILES_DIR=str(tmp_path / "files"))
    base, as_user = start_api(container_factory, config,
                              (FakeEmployees, FakeOrganizations, TeamService, TaskService, GatewayService))
    return config, base, as_user


def count_tasks(config, org_id, **query):
    return database(config, "tasks").tasks.count_documents({"org_id": org_id, **query})


# --- Idempotency-Key ------------------------------------------------------------

def test_a_retried_create_answers_the_first_result_and_creates_nothing_more(api):
    config, base, as_user = api
    org, p = make_org({"boss": "admin"})
    boss = as_user(p["boss"])
    url = f"{base}/orgs/{org}/tasks"
    key = {"Idempotency-Key": "create-task-1"}
    first = boss.post(url, json={"title": "once", "priority": "high"}, headers=key)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    # the same body, keys in another order: the same request
    again = boss.post(url, json={"priority": "high", "title": "once"}, headers=key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert count_tasks(config, org) == 1
    # another body under the same key: 422, nothing created
    body = problem(boss.post(url, json={"title": "other"}, headers=key), 422)
    assert "Idempotency-Key" in body["errors"]
    assert count_tasks(config, org) == 1
    # another key creates another
    assert boss.post(url, json={"title": "once", "priority": "high"},
                     headers={"Idempotency-Key": "create-task-2"}).status_code == 201
    assert count_tasks(config, org) == 2


def test_keys_belong_to_their_user_and_a_failed_first_try_keeps_nothing(api):
    config, base, as_user = api
    org, p = make_org({"boss": "admin", "ann": "admin", "mia": "member"})
    url = f"{base}/orgs/{org}/tasks"
    key = {"Idempotency-Key": "shared-key"}
    a = as_user(p["boss"]).post(url, json={"title": "boss's"}, headers=key)
    b = as_user(p["ann"]).post(url, json={"title": "ann's"}, headers=key)
    assert (a.status_code, b.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in b.headers and a.json()["task_id"] != b.json()["task_id"]
    # a refused first try (422) is not remembered: the corrected retry runs under its key
    refused = problem(as_user(p["boss"]).post(url, json={"title": ""},
                                              headers={"Idempotency-Key": "k2"}), 422)
    assert "title" in refused["errors"]
    fixed = as_user(p["boss"]).post(url, json={"title": "fixed"}, headers={"Idempotency-Key": "k2"})
    assert fixed.status_code == 201, fixed.text
    assert count_tasks(config, org) == 3
    problem(as_user(p["boss"]).post(url, json={"title": "x"},
                                    headers={"Idempotency-Key": "\u00e9"}), 422)
    problem(as_user(p["boss"]).post(url, json={"title": "x"},
                                    headers={"Idempotency-Key": "k" * 256}), 422)
    assert count_tasks(config, org) == 3


def test_parallel_retries_with_one_key_create_exactly_one_task(api):
    config, base, as_user = api
    org, p = make_org({"boss": "admin"})
    headers = {**auth_headers(config, p["boss"]["user_id"]), "Idempotency-Key": "burst"}

    def post(_):
        return requests.post(f"{base}/orgs/{org}/tasks", json={"title": "burst"}, headers=headers)

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(post, range(12)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 409}, [a.text for a in answers]
    created = [a for a in answers if a.status_code == 201]
    assert len({a.json()["task_id"] for a in created}) == 1
    assert sum("Idempotent-Replayed" not in a.headers for a in created) == 1
    for refused in (a for a in answers if a.status_code == 409):
        assert refused.headers["Retry-After"] == "1"
    assert count_tasks(config, org) == 1
    # once done, a late retry replays
    late = post(0)
    assert late.status_code == 201 and late.headers["Idempotent-Replayed"] == "true"
    assert count_tasks(config, org) == 1


def test_a_retried_bulk_request_creates_one_job(api):
    config, base, as_user = api
    org, p = make_org({"boss": "admin", "ann": "member", "bob": "member"})
    boss = as_user(p["boss"])
    body = {"assignee_ids": [p["ann"]["employee_id"], p["bob"]["employee_id"]],
            "task": {"title": "bulk"}}
    key = {"Idempotency-Key": "bulk-1"}
    first = boss.post(f"{base}/orgs/{org}/tasks/bulk", json=body, headers=key)
    again = boss.post(f"{base}/orgs/{org}/tasks/bulk", json=body, headers=key)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert database(config, "tasks").jobs.count_documents({"org_id": org}) == 1


def test_team_creation_is_idempotent_too(api):
    config, base, as_user = api
    org, p = make_org({"boss": "admin"})
    boss = as_user(p["boss"])
    key = {"Idempotency-Key": "team-1"}
    first = boss.post(f"{base}/orgs/{org}/teams", json={"name": "Core"}, headers=key)
    again = boss.post(f"{base}/orgs/{org}/teams", json={"name": "Core"}, headers=key)
    assert first.status_code == 201 and again.status_code == 201  # not the 409 of a duplicate
    assert again.headers["Idempotent-Replayed"] == "true"
    assert database(config, "teams").teams.count_documents({"org_id": org}) == 1


# --- ETag / If-Match / If-None-Match ---------------------------------------------

@pytest.mark.parametrize("kind", ["tasks", "teams"])
def test_etags_answer_304_and_stale_writes_get_412_and_change_nothing(api, kind):
    config, base, as_user = api
    org, p = make_org({"boss": "admin"})
    boss = as_user(p["boss"])
    field, value = ("title", "first") if kind == "tasks" else ("name", "First")
    created = boss.post(f"{base}/orgs/{org}/{kind}", json={field: value})
    assert created.status_code == 201, created.text
    url = f"{base}/orgs/{org}/{kind}/{created.json()[kind[:-1] + '_id']}"
    got = boss.get(url)
    tag = got.headers["ETag"]
    assert tag == f'"v{got.json()["version"]}"'
    # If-None-Match: 304 while unchanged
    cached = boss.get(url, headers={"If-None-Match": tag})
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["ETag"] == tag
    assert boss.get(url, headers={"If-None-Match": '"v999"'}).status_code == 200
    # If-Match with the current tag: written, with the new tag
    changed = boss.patch(url, json={field: "second"}, headers={"If-Match": tag})
    assert changed.status_code == 200, changed.text
    new_tag = changed.headers["ETag"]
    assert new_tag != tag and changed.json()[field] == "second"
    assert boss.get(url, headers={"If-None-Match": tag}).status_code == 200
    # the old tag is stale now: 412 for PATCH and DELETE, nothing changes
    problem(boss.patch(url, json={field: "third"}, headers={"If-Match": tag}), 412)
    problem(boss.delete(url, headers={"If-Match": tag}), 412)
    problem(boss.delete(url, headers={"If-Match": 'W/"v1", garbage'}), 412)
    after = boss.get(url)
    assert after.status_code == 200 and after.json()[field] == "second"
    assert after.headers["ETag"] == new_tag
    # If-Match: * only asks that it exists; the current tag deletes
    assert boss.delete(url, headers={"If-Match": new_tag}).status_code == 204
    problem(boss.get(url), 404)


def test_racing_conditional_writes_on_one_version_let_exactly_one_through(api):
    config, base, as_user = api
    org, p = make_org({"boss": "admin"})
    headers = auth_headers(config, p["boss"]["user_id"])
    created = requests.post(f"{base}/orgs/{org}/tasks", json={"title": "race"}, headers=headers)
    url = f"{base}/orgs/{org}/tasks/{created.json()['task_id']}"
    tag = requests.get(url, headers=headers).headers["ETag"]

    def patch(i):
        return requests.patch(url, json={"title": f"writer {i}"},
                              headers={**headers, "If-Match": tag})

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(patch, range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [412] * 7, [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200).json()["title"]
    assert requests.get(url, headers=headers).json()["title"] == winner


def test_a_chunked_body_is_compared_too(api):
    config, base, as_user = api
    org, p = make_org({"boss": "admin"})
    headers = {**auth_headers(config, p["boss"]["user_id"]), "Idempotency-Key": "chunked",
               "Content-Type": "application/json"}
    url = f"{base}/orgs/{org}/tasks"

    def chunked(text):
        return iter([text[:5].encode(), text[5:].encode()])

    first = requests.post(url, data=chunked('{"title": "one"}'), headers=headers)
    assert first.status_code == 201, first.text
    other = requests.post(url, data=chunked('{"title": "two"}'), headers=headers)
    assert other.status_code == 422, other.text
    same = requests.post(url, data=chunked('{"title": "one"}'), headers=headers)
    assert same.status_code == 201 and same.headers["Idempotent-Replayed"] == "true"
    assert count_tasks(config, org) == 1
