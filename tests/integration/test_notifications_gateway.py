"""Notifications through the gateway: the HTTP routes with real tokens, and
the websocket (real time within 1 s, catch-up after a reconnect, 1008 on a
bad token)."""
from __future__ import annotations

import json
import logging
import struct
import time
import uuid

import pytest
import redis
import requests
import websocket
from nameko.testing.services import entrypoint_hook

from employee_svc.contract import membership_key
from gateway_svc import realtime
from gateway_svc.service import GatewayService
from notify_svc.service import NotificationService
from shared import service as base
from shared.events import Events
from shared.rpc import rpc
from tests.helpers import wait_until
from tests.integration.test_auth_flows import Recorder, start_mesh, wait_event
from tests.smtp_sink import smtp_sink  # noqa: F401  (fixture)
from tests.tokens import access_token, auth_headers, token_of


class FakeTasks:
    name = "tasks"
    events = Events()
    store = base.Mongo()

    @rpc
    def emit(self, event_type, data, org_id=None):
        self.events.publish(event_type, data, org_id=org_id)


class FakeEmployees:
    name = "employees"

    @rpc
    def get_membership(self, org_id, user_id):
        return None  # nobody is a member unless the cache says so


@pytest.fixture
def stack(container_factory, make_config, smtp_sink):  # noqa: F811
    config = make_config(SMTP_URL=smtp_sink.url)
    containers = {cls: container_factory(cls, config)
                  for cls in (NotificationService, GatewayService, FakeTasks, FakeEmployees)}
    for container in containers.values():
        container.start()
    tasks = containers[FakeTasks]

    class Stack:
        base = f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"
        ws_url = f"ws://{config['WEB_SERVER_ADDRESS']}/api/v1/ws"

        def emit(self, event_type, data):
            with entrypoint_hook(tasks, "emit") as emit:
                emit(event_type, data, data.get("org_id"))

        def assign(self, user_id, title):
            self.emit("task.assigned", {"org_id": "o1", "task_id": uuid.uuid4().hex[:8],
                                        "title": title, "assignee_id": "e1",
                                        "assignee_user_id": user_id, "assigned_by_user_id": "x",
                                        "due_at": None, "priority": "normal", "job_id": None})

    Stack.config = config
    return Stack()


def get(stack, path, user, **kw):
    return requests.get(stack.base + path, headers=auth_headers(stack.config, user), **kw)


def send(stack, method, path, user, headers=None, **kw):
    return requests.request(method, stack.base + path,
                            headers={**auth_headers(stack.config, user), **(headers or {})}, **kw)


def items(stack, user):
    return get(stack, "/notifications", user).json()["items"]


def test_feed_routes_and_ownership(stack, unique):
    ann, eve = f"ann-{unique}", f"eve-{unique}"
    stack.assign(ann, "One")
    wait_until(lambda: len(items(stack, ann)) == 1, what="one item")
    stack.assign(ann, "Two")
    wait_until(lambda: len(items(stack, ann)) == 2, what="two items")
    page = get(stack, "/notifications", ann, params={"limit": 1}).json()
    assert page["items"][0]["title"] == "New task: Two" and page["next_cursor"]
    older = get(stack, "/notifications", ann, params={"limit": 1, "cursor": page["next_cursor"]})
    assert older.json()["items"][0]["title"] == "New task: One"
    assert get(stack, "/notifications/unread-count", ann).json() == {"unread": 2}
    nid = page["items"][0]["id"]
    # another user sees nothing and can touch nothing: 404
    assert items(stack, eve) == []
    assert send(stack, "POST", f"/notifications/{nid}/read", eve).status_code == 404
    assert send(stack, "DELETE", f"/notifications/{nid}", eve).status_code == 404
    assert send(stack, "POST", f"/notifications/{nid}/read", ann).status_code == 204
    assert get(stack, "/notifications/unread-count", ann).json() == {"unread": 1}
    assert get(stack, "/notifications", ann, params={"unread": "true"}).json()["items"][0][
        "title"] == "New task: One"
    assert send(stack, "POST", "/notifications/read-all", ann).json() == {"marked": 1}
    assert send(stack, "DELETE", f"/notifications/{nid}", ann).status_code == 204
    assert len(items(stack, ann)) == 1
    # bad query values and no token
    assert get(stack, "/notifications", ann, params={"limit": "x"}).status_code == 422
    assert get(stack, "/notifications", ann, params={"cursor": "@@"}).status_code == 422
    assert requests.get(stack.base + "/notifications").status_code == 401


def test_preferences_push_and_template_routes_refuse_bad_input(stack, unique):
    ann = f"ann-{unique}"
    url = "/notifications/preferences"
    ok = send(stack, "PUT", url, ann, json={"channels": {"task_assigned": {"email": False}},
                                            "quiet_hours": {"start": "22:00", "end": "07:00"},
                                            "timezone": "Europe/Paris", "digest": "daily"})
    assert ok.status_code == 200 and ok.json()["digest"] == "daily"
    for body in ({"colour": "red"}, {"channels": {"nope": {"email": True}}},
                 {"channels": {"task_assigned": {"email": "yes"}}}, {"digest": {"$gt": ""}},
                 {"timezone": "Mars/Olympus"}, {"quiet_hours": {"start": "25:00", "end": "1"}}):
        answer = send(stack, "PUT", url, ann, json=body)
        assert answer.status_code == 422, body
        assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert send(stack, "PUT", url, ann, data="{",
                headers={"Content-Type": "application/json"}).status_code == 400
    assert send(stack, "PUT", url, ann, data="x").status_code == 415
    assert get(stack, url, ann).json()["timezone"] == "Europe/Paris"

    push = "/notifications/push-subscriptions"
    sub = {"endpoint": f"https://93.184.215.14/push/{ann}",
           "keys": {"p256dh": "B" * 87, "auth": "A" * 22}}
    for endpoint in ("ftp://x", "http://127.0.0.1:6379/", "https://169.254.169.254/latest"):
        refused = send(stack, "POST", push, ann, json={"endpoint": endpoint, "keys": sub["keys"]})
        assert refused.status_code == 422, endpoint
        assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert send(stack, "POST", push, ann, json={"endpoint": sub["endpoint"]}).status_code == 422
    assert send(stack, "POST", push, ann, json=sub).status_code == 201
    assert send(stack, "DELETE", push, ann, json={"endpoint": sub["endpoint"]}).status_code == 204
    assert send(stack, "DELETE", push, ann, json={"endpoint": sub["endpoint"]}).status_code == 404

    org, admin, member = f"org-{unique}", f"adm-{unique}", f"mem-{unique}"
    client = redis.Redis.from_url(stack.config["REDIS_URI"])
    for user, role in ((admin, "admin"), (member, "member")):
        client.set(membership_key(org, user), json.dumps(
            {"org_id": org, "user_id": user, "role": role, "status": "active",
             "permissions": [], "teams": {}}), ex=60)
    tpl = f"/orgs/{org}/notification-templates/task_assigned"
    assert get(stack, tpl, ann).status_code == 404          # not a member
    assert get(stack, tpl, member).status_code == 403       # lacks the permission
    assert get(stack, tpl, admin).json()["overridden"] is False
    bad = send(stack, "PUT", tpl, admin, json={"subject": "Hi", "text": "a\nb\n{{ title }"})
    assert bad.status_code == 422 and "line 3" in json.dumps(bad.json())
    sneaky = send(stack, "PUT", tpl, admin,
                  json={"subject": "{{ title.__class__.__mro__[1].__subclasses__() }}", "text": "x"})
    assert sneaky.status_code == 422
    started = time.monotonic()
    for hostile in ("{{ 'x' * 1000000000 }}", "{% for a in range(10**6) %}x{% endfor %}",
                    "{% for a in range(99) %}{% for b in range(99) %}{{ title }}{{ title }}"
                    "{{ title }}{% endfor %}{% endfor %}", "{{ title.ljust(10**9) }}"):
        refused = send(stack, "PUT", tpl, admin, json={"subject": "Hi", "text": hostile})
        assert refused.status_code == 422, hostile
        assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert time.monotonic() - started < 5
    assert get(stack, tpl, admin).json()["overridden"] is False
    good = send(stack, "PUT", tpl, admin, json={"subject": "Do {{ title }}", "text": "{{ link }}"})
    assert good.status_code == 200 and get(stack, tpl, admin).json()["subject"] == "Do {{ title }}"
    client.delete(membership_key(org, admin), membership_key(org, member))


def connect(stack, user, last_id=None):
    """As a browser does: ``new WebSocket(url, ["bearer", token])``."""
    token, _ = access_token(stack.config, user)
    url = stack.ws_url + (f"?last_id={last_id}" if last_id else "")
    ws = websocket.create_connection(url, timeout=5, subprotocols=["bearer", token])
    assert json.loads(ws.recv())["type"] == "hello"
    return ws


def closed_with_1008(ws) -> bool:
    opcode, data = ws.recv_data(control_frame=True)
    ws.close()
    return opcode == websocket.ABNF.OPCODE_CLOSE and struct.unpack("!H", data[:2])[0] == 1008


def test_websocket_real_time_and_catch_up(stack, unique):
    ann = f"ann-{unique}"
    ws = connect(stack, ann)
    started = time.monotonic()
    stack.assign(ann, "Live")
    ws.settimeout(1.0)
    message = json.loads(ws.recv())
    assert time.monotonic() - started < 1.0
    assert message["type"] == "notification"
    assert message["notification"]["title"] == "New task: Live"
    last_id = message["notification"]["id"]
    ws.close()
    # one after the other: two events emitted in the same instant may be handled
    # by two workers at once, and have no order between them
    stack.assign(ann, "Missed 1")
    wait_until(lambda: len(items(stack, ann)) == 2, what="2 items")
    stack.assign(ann, "Missed 2")
    wait_until(lambda: len(items(stack, ann)) == 3, what="3 items")
    ws = connect(stack, ann, last_id=last_id)
    got = [json.loads(ws.recv())["notification"]["title"] for _ in range(2)]
    assert got == ["New task: Missed 1", "New task: Missed 2"]
    # and it keeps streaming new ones after the catch-up
    stack.assign(ann, "After")
    assert json.loads(ws.recv())["notification"]["title"] == "New task: After"
    ws.close()


def test_websocket_takes_the_token_as_its_first_message_never_in_the_url(stack, unique):
    ann = f"ann-{unique}"
    token, _ = access_token(stack.config, ann)
    ws = websocket.create_connection(stack.ws_url, timeout=5)
    ws.send(json.dumps({"type": "auth", "token": token}))
    assert json.loads(ws.recv()) == {"type": "hello", "user_id": ann}
    stack.assign(ann, "First message")
    assert json.loads(ws.recv())["notification"]["title"] == "New task: First message"
    ws.close()
    # the subprotocol answer names "bearer", never the token
    ws = connect(stack, ann)
    assert ws.getsubprotocol() == "bearer"
    ws.close()
    # a token in the URL is refused even when valid
    assert closed_with_1008(websocket.create_connection(f"{stack.ws_url}?token={token}",
                                                        timeout=5))


@pytest.mark.parametrize("token", ["garbage", "expired", ""])
def test_websocket_with_a_bad_token_is_closed_with_1008(stack, unique, token):
    if token == "expired":
        token, _ = access_token(stack.config, f"u-{unique}", ttl=-60)
    ws = websocket.create_connection(stack.ws_url, timeout=5)
    ws.send(json.dumps({"type": "auth", "token": token}))
    assert closed_with_1008(ws)
    if token:
        ws = websocket.create_connection(stack.ws_url, timeout=5, subprotocols=["bearer", token])
        assert closed_with_1008(ws)


def test_websocket_without_a_first_message_is_closed(stack, monkeypatch):
    monkeypatch.setattr(realtime, "AUTH_SECONDS", 0.5)
    ws = websocket.create_connection(stack.ws_url, timeout=5)
    ws.send(json.dumps({"type": "ping"}))         # not an auth message
    assert closed_with_1008(ws)


def test_access_log_lines_carry_no_bearer_secrets(stack, unique, caplog):
    caplog.set_level(logging.INFO, logger="nameko.web.server")
    ann = f"ann-{unique}"
    token, _ = access_token(stack.config, ann)
    secret = f"invitation-secret-{unique}"
    requests.post(f"{stack.base}/invitations/{secret}/accept", headers=auth_headers(
        stack.config, ann))
    requests.get(f"{stack.base}/notifications?token=query-secret-{unique}",
                 headers=auth_headers(stack.config, ann))
    old_client = websocket.create_connection(f"{stack.ws_url}?token={token}", timeout=5)
    assert closed_with_1008(old_client)
    wait_until(lambda: caplog.text.count("[redacted]") >= 3, what="the access log lines")
    assert secret not in caplog.text and f"query-secret-{unique}" not in caplog.text
    assert token not in caplog.text
    assert "/invitations/[redacted]/accept" in caplog.text
    listed = next(r for r in caplog.records if getattr(r, "fields", {}).get("path", "")
                  .startswith("/api/v1/notifications?token="))
    assert listed.fields["user_id"] == ann and listed.fields["status"] == 422  # unknown parameter


def test_websocket_is_closed_when_its_token_is_revoked(container_factory, make_config, unique):
    """Logout, a revoked session and a password change each end the socket at once
    (within the check interval), not when the token expires 15 min later."""
    config = make_config(WS_REVOCATION_CHECK_SECONDS=0.2)
    Recorder.seen = []
    api = start_mesh(container_factory, config)
    ws_url = f"ws://{config['WEB_SERVER_ADDRESS']}/api/v1/ws"
    email = f"rev-{unique}@example.com"
    first = api.register(email)

    def open_socket(access_token):
        ws = websocket.create_connection(ws_url, timeout=5,
                                         subprotocols=["bearer", access_token])
        assert json.loads(ws.recv())["type"] == "hello"
        return ws

    def revoked_within_a_second(ws):
        started = time.monotonic()
        assert closed_with_1008(ws)
        return time.monotonic() - started < 1.5

    ws = open_socket(first["access_token"])
    assert api("POST", "/auth/logout", first["access_token"]).status_code == 204
    assert revoked_within_a_second(ws)

    second, third = api.login(email), api.login(email)
    ws2, ws3 = open_socket(second["access_token"]), open_socket(third["access_token"])
    sessions = api("GET", "/auth/sessions", third["access_token"]).json()["items"]
    other = next(s["session_id"] for s in sessions if not s["current"])
    assert api("DELETE", f"/auth/sessions/{other}", third["access_token"]).status_code == 204
    assert revoked_within_a_second(ws2)
    ws3.settimeout(0.6)                       # the current session's socket stays open
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws3.recv()
    # a password reset revokes every session, the current one's socket too
    assert api("POST", "/auth/password/forgot", json={"email": email}).status_code == 202
    reset = token_of(config, wait_event("user.password.reset", email=email)["data"])
    assert api("POST", "/auth/password/reset", json={
        "token": reset, "password": "an entirely new passphrase"}).status_code == 204
    assert revoked_within_a_second(ws3)
