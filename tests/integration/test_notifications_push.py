"""Web push (RFC 8030/8291, VAPID) to a local push endpoint that checks the
VAPID header and decrypts what it receives; a 410 removes the subscription."""
from __future__ import annotations

import base64
import json
import uuid

import eventlet
import eventlet.wsgi
import http_ece
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from nameko.testing.services import entrypoint_hook
from py_vapid import Vapid

from notify_svc.service import NotificationService
from shared.mongo import Mongo
from shared.sealed import seal
from tests.helpers import events_handled, self_signed, wait_until
from tests.integration.test_notifications import make_producer


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class PushEndpoint:
    """A push service over https: /ok/<id> accepts (201), /gone/<id> answers 410,
    /moved/<id> redirects (307) to Redis."""

    def __init__(self, host: str, cert: tuple[str, str]):
        self.host = host
        self.keys = {}      # endpoint id -> (private key, auth secret)
        self.received = []  # (endpoint id, authorization header, decrypted payload)
        self.requests = []  # every path asked for
        self.sock = eventlet.wrap_ssl(eventlet.listen((host, 0)), certfile=cert[0],
                                      keyfile=cert[1], server_side=True)
        self.port = self.sock.getsockname()[1]
        self.server = eventlet.spawn(eventlet.wsgi.server, self.sock, self.app,
                                     log_output=False)

    def subscription(self, kind: str) -> dict:
        key_id = uuid.uuid4().hex[:8]
        private = ec.generate_private_key(ec.SECP256R1())
        auth = uuid.uuid4().bytes
        self.keys[key_id] = (private, auth)
        public = private.public_key().public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": f"https://{self.host}:{self.port}/{kind}/{key_id}",
                "keys": {"p256dh": b64(public), "auth": b64(auth)}}

    def app(self, environ, start_response):
        _, kind, key_id = environ["PATH_INFO"].split("/")
        self.requests.append(environ["PATH_INFO"])
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if kind == "gone":
            start_response("410 Gone", [])
            return [b""]
        if kind == "moved":
            start_response("307 Temporary Redirect", [("Location", "https://127.0.0.1:6379/")])
            return [b""]
        private, auth = self.keys[key_id]
        payload = http_ece.decrypt(body, private_key=private, auth_secret=auth,
                                   version="aes128gcm")
        self.received.append((key_id, environ.get("HTTP_AUTHORIZATION", ""),
                              json.loads(payload)))
        start_response("201 Created", [])
        return [b""]

    def stop(self):
        self.server.kill()
        self.sock.close()


@pytest.fixture
def certificate(tmp_path, monkeypatch):
    cert = self_signed(tmp_path, hosts=("127.0.0.1", "127.0.0.2"), name="push")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert[0])  # requests (pywebpush) trusts it
    return cert


@pytest.fixture
def push_endpoint(certificate):
    endpoint = PushEndpoint("127.0.0.1", certificate)
    yield endpoint
    endpoint.stop()


@pytest.fixture
def private_endpoint(certificate):
    """On 127.0.0.2: loopback, outside the test's OUTBOUND_ALLOWED_NETWORKS."""
    endpoint = PushEndpoint("127.0.0.2", certificate)
    yield endpoint
    endpoint.stop()


def test_push_is_encrypted_signed_and_gone_subscriptions_are_removed(
        container_factory, make_config, push_endpoint, private_endpoint, tmp_path):
    vapid = Vapid()
    vapid.generate_keys()
    config = make_config(VAPID_PRIVATE_KEY=vapid.private_pem().decode(),
                         MAIL_DIR=str(tmp_path / "mail"),
                         OUTBOUND_ALLOWED_NETWORKS="127.0.0.1/32")  # the local push service
    service = container_factory(NotificationService, config)
    tasks = container_factory(make_producer("tasks"), config)
    auth = container_factory(make_producer("auth"), config)
    for container in (service, tasks, auth):
        container.start()
    user = uuid.uuid4().hex[:8]
    with entrypoint_hook(auth, "emit") as emit:
        emit("user.registered", {"user_id": user, "email": f"{user}@example.com", "name": "P",
                                 "sealed_link": seal(config, "https://v/1", 60)})
    ok, gone = push_endpoint.subscription("ok"), push_endpoint.subscription("gone")
    moved = push_endpoint.subscription("moved")
    for sub in (ok, gone, moved):
        with entrypoint_hook(service, "add_push_subscription") as add:
            add(user, sub)
    db = next(d for d in service.dependencies if isinstance(d, Mongo)).store.db
    # accepted when it pointed at a public address, now resolving to a private one
    # (DNS rebinding): checked again before sending, never contacted, removed
    rebound = private_endpoint.subscription("ok")
    db.push_subscriptions.insert_one({"_id": rebound["endpoint"], **rebound, "user_id": user})
    handled = events_handled("notifications", "on_task_assigned")
    assigned = {"org_id": "o", "task_id": "t1", "title": "Pushed", "assignee_id": "e",
                "assignee_user_id": user, "assigned_by_user_id": "x", "due_at": None,
                "priority": "high", "job_id": None}
    event_id = uuid.uuid4().hex
    for _ in range(2):  # the same event twice (a redelivery, maybe in its first's batch): heard once
        with entrypoint_hook(tasks, "emit") as emit:
            emit("task.assigned", assigned, "o", event_id)
    key_id, authorization, payload = wait_until(
        lambda: next((r for r in push_endpoint.received if r[2]["kind"] == "task_assigned"), None),
        what="the task's push")
    assert ok["endpoint"].endswith(key_id)
    assert payload["title"] == "New task: Pushed" and payload["kind"] == "task_assigned"
    assert authorization.startswith("vapid t=") or authorization.startswith("WebPush ")
    wait_until(lambda: db.push_subscriptions.count_documents({}) == 1,
               what="gone, redirecting and rebound endpoints removed")
    assert db.push_subscriptions.find_one()["_id"] == ok["endpoint"]
    assert private_endpoint.requests == []
    # with no SMTP configured the emails went to .eml files
    files = wait_until(lambda: (lambda f: f if len(f) == 2 else None)(
        list((tmp_path / "mail").glob("*.eml"))), what="two .eml files")
    assert any(b"Subject: New task: Pushed" in f.read_bytes() for f in files)
    wait_until(lambda: events_handled("notifications", "on_task_assigned") >= handled + 2,
               what="both copies settled")
    assert [r[2]["kind"] for r in push_endpoint.received].count("task_assigned") == 1
    assert db.notifications.count_documents({"user_id": user, "kind": "task_assigned"}) == 1
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 2  # the welcome and the task
