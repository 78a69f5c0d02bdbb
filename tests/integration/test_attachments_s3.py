"""Attachments in S3-compatible object storage: the S3 store against a real S3
HTTP endpoint (moto's server mode, started once per session), and the whole
path through the gateway: upload, presigned download redirect, delete, and the
size and type policy."""
import uuid

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from gateway_svc.service import GatewayService
from task_svc.domain import content_disposition
from task_svc.files import S3FileStore
from task_svc.service import TaskService
from team_svc.service import TeamService
from tests.helpers import wait_until
from tests.integration.tasks_mesh import (
    FakeEmployees,
    Listener,
    database,
    make_org,
    problem,
    seen,
    start_api,
)


@pytest.fixture
def bucket(s3_endpoint):
    name = f"att-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=name)
    return client, name


def test_the_s3_store_puts_gets_deletes_and_signs_downloads(s3_endpoint, bucket):
    client, name = bucket
    store = S3FileStore(name, s3_endpoint, prefix="files/")
    store.put("ab/k1", b"\x00binary\xff", "application/pdf")
    assert store.get("ab/k1") == b"\x00binary\xff"
    assert client.head_object(Bucket=name, Key="files/ab/k1")["ContentType"] == "application/pdf"
    url = store.download_url("ab/k1", content_disposition("r\u00e9sum\u00e9.pdf"), "application/pdf")
    got = requests.get(url, timeout=10)  # a plain HTTP client, no credentials
    assert got.status_code == 200 and got.content == b"\x00binary\xff"
    assert got.headers["Content-Disposition"] == "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
    store.delete("ab/k1")
    with pytest.raises(ClientError):
        client.head_object(Bucket=name, Key="files/ab/k1")
    with pytest.raises(ValueError):
        store.put("../escape", b"x", "text/plain")


@pytest.fixture
def api(container_factory, make_config, s3_endpoint, bucket):
    client, name = bucket
    config = make_config(TASK_FILES_S3_BUCKET=name, TASK_FILES_S3_ENDPOINT=s3_endpoint,
                         TASK_ATTACHMENT_MAX_BYTES=200_000, ATTACHMENT_MAX_BODY_BYTES=400_000,
                         TASK_ATTACHMENT_TYPES="text/plain,image/*,application/pdf")
    base, as_user = start_api(container_factory, config,
                              (FakeEmployees, Listener, TeamService, TaskService, GatewayService))
    return config, base, as_user, client, name


def test_upload_redirected_download_and_delete_through_the_gateway(api):
    config, base, as_user, client, name = api
    org, p = make_org({"boss": "manager", "ann": "member", "bob": "member"})
    _, q = make_org({"outsider": "owner"})
    boss, ann, bob = as_user(p["boss"]), as_user(p["ann"]), as_user(p["bob"])
    o = f"{base}/orgs/{org}"
    task = boss.post(f"{o}/tasks", json={"title": "files"}).json()
    k = f"{o}/tasks/{task['task_id']}"
    blob = bytes(range(256)) * 600  # 150 KiB, binary
    meta = ann.post(f"{k}/attachments", files={"file": ("scan.png", blob, "image/png")})
    assert meta.status_code == 201, meta.text
    url = f"{k}/attachments/{meta.json()['attachment_id']}"
    [stored] = client.list_objects_v2(Bucket=name)["Contents"]
    assert stored["Size"] == len(blob)

    redirect = bob.get(url, allow_redirects=False)  # the bytes do not cross the mesh
    assert redirect.status_code == 302 and redirect.headers["Cache-Control"] == "private, no-store"
    assert redirect.headers["Location"].startswith(f"{config['TASK_FILES_S3_ENDPOINT']}/{name}/")
    got = bob.get(url)  # followed, as a browser does
    assert got.status_code == 200 and got.content == blob
    assert got.headers["Content-Type"] == "image/png"
    assert got.headers["Content-Disposition"] == "attachment; filename*=UTF-8''scan.png"
    problem(as_user(q["outsider"]).get(url, allow_redirects=False), 404)

    problem(bob.delete(url), 403)  # neither the uploader nor allowed to change the task
    problem(as_user(q["outsider"]).delete(url), 404)
    assert ann.delete(url).status_code == 204  # the uploader
    assert client.list_objects_v2(Bucket=name).get("KeyCount") == 0
    problem(ann.delete(url), 404)
    problem(bob.get(url, allow_redirects=False), 404)
    assert boss.get(f"{k}/attachments").json()["items"] == []
    history = [(h["field"], h["old"], h["new"]) for h in boss.get(f"{k}/history").json()["items"]]
    assert history[-2:] == [("attachments", None, "scan.png"), ("attachments", "scan.png", None)]
    [event] = wait_until(lambda: seen("task.attachment.deleted"))
    assert event["data"]["attachment_id"] == meta.json()["attachment_id"]
    assert event["actor_id"] == p["ann"]["user_id"]


def test_the_size_and_type_policy_answers_413_and_415_and_stores_nothing(api):
    config, base, as_user, client, name = api
    org, p = make_org({"boss": "manager"})
    boss = as_user(p["boss"])
    task = boss.post(f"{base}/orgs/{org}/tasks", json={"title": "x"}).json()
    k = f"{base}/orgs/{org}/tasks/{task['task_id']}"
    for filename, media in (("page.html", "text/html"), ("run.sh", "application/x-sh"),
                            ("a.bin", "application/octet-stream")):
        refused = problem(boss.post(f"{k}/attachments", files={"file": (filename, b"x", media)}), 415)
        assert "text/plain" in refused["allowed"]
    problem(boss.post(f"{k}/attachments", files={"file": ("big.txt", b"x" * 200_001, "text/plain")}), 413)
    problem(boss.post(f"{k}/attachments", files={"file": ("huge.txt", b"x" * 500_000, "text/plain")}),
            413)  # the gateway's body limit
    assert boss.post(f"{k}/attachments", files={"file": ("ok.txt", b"x" * 200_000, "text/plain")}) \
        .status_code == 201
    assert client.list_objects_v2(Bucket=name)["KeyCount"] == 1
    assert database(config, "tasks").attachments.count_documents({}) == 1
