"""Personal access tokens through the real gateway and auth service (and the
real tasks and teams services behind them; employees and organizations are
the fakes of tasks_mesh): shown once, stored hashed, scopes, org binding,
revocation within a request, last use, Redis losing the records; on the
websocket too, where a revoked token's socket is closed within seconds."""
import hashlib
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

from auth_svc.service import AuthService
from gateway_svc.service import GatewayService
from notify_svc.contract import user_channel
from task_svc.service import TaskService
from team_svc.service import TeamService
from tests.integration.tasks_mesh import PEOPLE, FakeEmployees, FakeOrganizations, database

PASSWORD = "correct horse battery"


@pytest.fixture
def mesh(container_factory, config):
    containers = {}
    for cls in (FakeEmployees, FakeOrganizations, AuthService, TeamService, TaskService,
                GatewayService):
        containers[cls.name] = container_factory(cls, config)
        containers[cls.name].start()
    return config, f"http://{config['WEB_SERVER_ADDRESS']}/api/v1", containers


def person(base: str, role: str = "admin", org_id: str | None = None) -> dict:
    """A registered user, an active employee (role) of a fresh org (or org_id)."""
    email = f"pat-{uuid.uuid4().hex[:10]}@example.com"
    answer = requests.post(f"{base}/auth/register",
                           json={"email": email, "password": PASSWORD, "name": "Pat"})
    assert answer.status_code == 201, answer.text
    user_id = answer.json()["user"]["user_id"]
    org_id = org_id or f"org-{uuid.uuid4().hex[:10]}"
    employee = {"employee_id": f"emp-{uuid.uuid4().hex[:8]}", "org_id": org_id,
                "user_id": user_id, "email": email, "name": "Pat", "role": role,
                "status": "active", "job_title": "engineer"}
    PEOPLE[employee["employee_id"]] = employee
    return {"user_id": user_id, "org_id": org_id, "employee": employee,
            "jwt": {"Authorization": f"Bearer {answer.json()['access_token']}"}}


def new_token(base, who, **body) -> dict:
    answer = requests.post(f"{base}/me/tokens", json={"name": "ci", **body}, headers=who["jwt"])
    assert answer.status_code == 201, answer.text
    return answer.json()


def bearer(token: dict) -> dict:
    return {"Authorization": f"Bearer {token['token']}"}


def test_a_token_is_shown_once_stored_hashed_and_works_as_a_bearer_token(mesh, caplog):
    config, base, _ = mesh
    caplog.set_level(logging.INFO)  # the configured level (LOG_LEVEL); nameko's DEBUG
    # lines show RPC replies whole, as they do a webhook's secret or a 2FA secret
    ada = person(base)
    made = new_token(base, ada, scope="write")
    secret = made["token"]
    assert secret.startswith("wfp_") and len(secret) == 47
    assert made["prefix"] == secret[:10] and made["scope"] == "write"
    # the stored token is its hash; Redis holds no secret either
    stored = database(config, "auth").access_tokens.find_one({"_id": made["token_id"]})
    assert stored["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(stored)
    listed = requests.get(f"{base}/me/tokens", headers=ada["jwt"]).json()["items"]
    assert [t["token_id"] for t in listed] == [made["token_id"]]
    assert "token" not in listed[0] and "token_hash" not in listed[0]
    assert listed[0]["last_used_at"] is None
    # as a bearer token
    org = f"{base}/orgs/{ada['org_id']}"
    created = requests.post(f"{org}/tasks", json={"title": "by token"}, headers=bearer(made))
    assert created.status_code == 201, created.text
    assert created.json()["creator_user_id"] == ada["user_id"]
    assert requests.get(f"{org}/tasks", headers=bearer(made)).status_code == 200
    me = requests.get(f"{base}/users/me", headers=bearer(made))
    assert me.status_code == 200 and me.json()["user_id"] == ada["user_id"]
    # its use shows in the list (reported at most once a minute)
    used = requests.get(f"{base}/me/tokens", headers=ada["jwt"]).json()["items"][0]
    assert used["last_used_at"] is not None
    assert secret not in caplog.text


def test_scopes_and_account_routes(mesh):
    config, base, _ = mesh
    ada = person(base)
    org = f"{base}/orgs/{ada['org_id']}"
    read = new_token(base, ada, scope="read")
    write = new_token(base, ada, scope="write")
    admin = new_token(base, ada, scope="admin")
    assert requests.get(f"{org}/tasks", headers=bearer(read)).status_code == 200
    refused = requests.post(f"{org}/tasks", json={"title": "x"}, headers=bearer(read))
    assert refused.status_code == 403 and refused.json()["errors"] == {"scope": ["Needs write."]}
    team = requests.post(f"{org}/teams", json={"name": "Core"}, headers=bearer(write))
    assert team.status_code == 201, team.text
    # admin routes (the org's webhooks, people, settings) need admin
    assert requests.patch(f"{org}/settings", json={}, headers=bearer(write)).status_code == 403
    assert requests.delete(f"{org}", headers=bearer(write)).status_code == 403
    # no token manages the account or mints tokens, whatever its scope
    for token in (read, write, admin):
        assert requests.post(f"{base}/me/tokens", json={"name": "x"},
                             headers=bearer(token)).status_code == 403
        assert requests.get(f"{base}/me/tokens", headers=bearer(token)).status_code == 403
        assert requests.post(f"{base}/auth/logout", headers=bearer(token)).status_code == 403
        assert requests.patch(f"{base}/users/me", json={"name": "Eve"},
                              headers=bearer(token)).status_code == 403
    assert database(config, "tasks").tasks.count_documents({"org_id": ada["org_id"]}) == 0


def test_a_token_bound_to_an_org_reaches_that_org_only(mesh):
    config, base, _ = mesh
    ada = person(base)
    other = person(base)  # ada joins a second org too
    PEOPLE[f"emp-{uuid.uuid4().hex[:8]}"] = {**ada["employee"], "org_id": other["org_id"]}
    bound = new_token(base, ada, scope="write", org_id=ada["org_id"])
    assert bound["org_id"] == ada["org_id"]
    assert requests.get(f"{base}/orgs/{ada['org_id']}/tasks", headers=bearer(bound)).status_code == 200
    assert requests.get(f"{base}/orgs/{other['org_id']}/tasks",
                        headers=bearer(bound)).status_code == 404
    assert requests.get(f"{base}/me/tasks", headers=bearer(bound)).status_code == 403
    assert requests.get(f"{base}/users/me", headers=bearer(bound)).status_code == 200
    # and one cannot bind a token to an org one is not a member of
    stranger = requests.post(f"{base}/me/tokens", json={"name": "x", "org_id": "org-nope"},
                             headers=ada["jwt"])
    assert stranger.status_code == 404


def test_revocation_is_honoured_on_the_next_request_and_survives_redis_losing_records(mesh):
    config, base, containers = mesh
    ada = person(base)
    org = f"{base}/orgs/{ada['org_id']}/tasks"
    kept, dropped = new_token(base, ada), new_token(base, ada)
    for token in (kept, dropped):
        assert requests.get(org, headers=bearer(token)).status_code == 200
    assert requests.delete(f"{base}/me/tokens/{dropped['token_id']}",
                           headers=ada["jwt"]).status_code == 204
    refused = requests.get(org, headers=bearer(dropped))
    assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/problem+json"
    assert requests.delete(f"{base}/me/tokens/{dropped['token_id']}",
                           headers=ada["jwt"]).status_code == 404
    listed = {t["token_id"]: t for t in
              requests.get(f"{base}/me/tokens", headers=ada["jwt"]).json()["items"]}
    assert listed[dropped["token_id"]]["revoked_at"] is not None
    # Redis loses every record: the gateway refuses until auth re-asserts them (every
    # minute), and re-asserting never brings a revoked token back
    client = redis.Redis.from_url(config["REDIS_URI"], decode_responses=True)
    for token in (kept, dropped):
        client.delete(f"auth:pat:{hashlib.sha256(token['token'].encode()).hexdigest()}")
    assert requests.get(org, headers=bearer(kept)).status_code == 401
    with entrypoint_hook(containers["auth"], "publish_tokens") as publish:
        publish()
    assert requests.get(org, headers=bearer(kept)).status_code == 200
    assert requests.get(org, headers=bearer(dropped)).status_code == 401
    # malformed and unknown tokens are plain 401s
    assert requests.get(org, headers={"Authorization": "Bearer wfp_short"}).status_code == 401
    assert requests.get(org, headers={"Authorization": f"Bearer wfp_{'A' * 43}"}).status_code == 401


def test_bad_token_requests_are_422_and_create_nothing(mesh):
    config, base, _ = mesh
    ada = person(base)
    for body in ({}, {"name": ""}, {"name": "x", "scope": "root"},
                 {"name": "x", "expires_in_days": 0}, {"name": "x", "expires_in_days": 9999}):
        answer = requests.post(f"{base}/me/tokens", json=body, headers=ada["jwt"])
        assert answer.status_code == 422, (body, answer.text)
    assert database(config, "auth").access_tokens.count_documents({"user_id": ada["user_id"]}) == 0


def test_a_replayed_token_creation_does_not_show_the_secret_again(mesh):
    config, base, _ = mesh
    ada = person(base)
    key = {**ada["jwt"], "Idempotency-Key": "make-ci-token"}
    first = requests.post(f"{base}/me/tokens", json={"name": "ci"}, headers=key)
    again = requests.post(f"{base}/me/tokens", json={"name": "ci"}, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["token_id"] == first.json()["token_id"]
    assert first.json()["token"].startswith("wfp_") and again.json()["token"] is None
    assert database(config, "auth").access_tokens.count_documents({"user_id": ada["user_id"]}) == 1
    client = redis.Redis.from_url(config["REDIS_URI"], decode_responses=True)
    stored = [client.get(k) for k in client.scan_iter(f"gateway:idem:{ada['user_id']}:*")]
    assert stored and not any(first.json()["token"] in (v or "") for v in stored)


# --- the websocket ----------------------------------------------------------------
@pytest.fixture
def ws_mesh(container_factory, make_config):
    """Auth and the gateway, whose sockets' tokens are checked every 0.2 s."""
    config = make_config(WS_REVOCATION_CHECK_SECONDS=0.2)
    for cls in (FakeEmployees, FakeOrganizations, AuthService, GatewayService):
        container_factory(cls, config).start()
    return (config, f"http://{config['WEB_SERVER_ADDRESS']}/api/v1",
            f"ws://{config['WEB_SERVER_ADDRESS']}/api/v1/ws")


def open_socket(ws_url, secret, first_message=False):
    if first_message:
        ws = websocket.create_connection(ws_url, timeout=5)
        ws.send(json.dumps({"type": "auth", "token": secret}))
    else:
        ws = websocket.create_connection(ws_url, timeout=5, subprotocols=["bearer", secret])
    return ws


def closed_with_1008(ws) -> str | None:
    """The close reason if the server closed ``ws`` with 1008 (policy violation)."""
    opcode, data = ws.recv_data(control_frame=True)
    ws.close()
    if opcode != websocket.ABNF.OPCODE_CLOSE or struct.unpack("!H", data[:2])[0] != 1008:
        return None
    return data[2:].decode() or "closed"


def test_a_read_token_receives_its_users_notifications_on_the_websocket(ws_mesh):
    config, base, ws_url = ws_mesh
    ada = person(base)
    read = new_token(base, ada, scope="read")
    client = redis.Redis.from_url(config["REDIS_URI"], decode_responses=True)
    for first_message in (False, True):  # as a subprotocol, and as the first message
        ws = open_socket(ws_url, read["token"], first_message)
        assert json.loads(ws.recv()) == {"type": "hello", "user_id": ada["user_id"]}
        if not first_message:
            assert ws.getsubprotocol() == "bearer"  # the answer never names the token
        # what the notifications service publishes for ada's new in-app item
        note = {"type": "notification", "notification": {"id": uuid.uuid4().hex, "title": "Hi"}}
        client.publish(user_channel(ada["user_id"]), json.dumps(note))
        assert json.loads(ws.recv()) == note
        ws.close()
    # its use shows in the list
    listed = requests.get(f"{base}/me/tokens", headers=ada["jwt"]).json()["items"]
    assert listed[0]["last_used_at"] is not None
    # a token in the URL is refused even when valid
    assert closed_with_1008(websocket.create_connection(f"{ws_url}?token={read['token']}",
                                                        timeout=5))


def test_a_token_the_http_routes_refuse_is_refused_on_the_websocket(ws_mesh):
    config, base, ws_url = ws_mesh
    ada = person(base)
    bound = new_token(base, ada, scope="admin", org_id=ada["org_id"])
    # bound to one org, it may not read the feed over HTTP: nor here
    assert requests.get(f"{base}/notifications", headers=bearer(bound)).status_code == 403
    assert "bound to one organization" in closed_with_1008(open_socket(ws_url, bound["token"]))
    revoked = new_token(base, ada, scope="read")
    assert requests.delete(f"{base}/me/tokens/{revoked['token_id']}",
                           headers=ada["jwt"]).status_code == 204
    assert closed_with_1008(open_socket(ws_url, revoked["token"], first_message=True))
    for garbage in ("wfp_short", f"wfp_{'A' * 43}"):  # malformed, unknown
        assert closed_with_1008(open_socket(ws_url, garbage))


def test_a_tokens_socket_is_closed_within_a_second_of_its_revocation(ws_mesh):
    config, base, ws_url = ws_mesh
    ada = person(base)
    kept, dropped = new_token(base, ada, scope="read"), new_token(base, ada, scope="write")
    sockets = {}
    for token in (kept, dropped):
        sockets[token["token_id"]] = open_socket(ws_url, token["token"])
        assert json.loads(sockets[token["token_id"]].recv())["type"] == "hello"
    assert requests.delete(f"{base}/me/tokens/{dropped['token_id']}",
                           headers=ada["jwt"]).status_code == 204
    started = time.monotonic()
    assert closed_with_1008(sockets[dropped["token_id"]]) == "token revoked"
    assert time.monotonic() - started < 1.5
    other = sockets[kept["token_id"]]  # the other token's socket stays open
    other.settimeout(0.6)
    with pytest.raises(websocket.WebSocketTimeoutException):
        other.recv()
    other.close()
