"""Reset, verification and invitation links are bearer secrets: over the whole
mesh they reach the user's mailbox and nothing else (the in-app feed, the
websocket, the Redis streams, any database collection, the logs), and the
emailed links still work."""
import hashlib
import json
import re
import uuid

import pymongo
import redis
import websocket

from tests.e2e.mailbox import text_of
from tests.e2e.test_flows import PASSWORD, personal_org, register
from tests.helpers import wait_until


def link_token(mailbox, address, pattern):
    def found():
        for message in mailbox.messages(address):
            match = re.search(pattern, text_of(message))
            if match:
                return match.group(1)
        return None

    return wait_until(found, timeout=20, what=f"an email to {address} matching {pattern}")


def everything_stored(mongo_uri, prefix) -> str:
    """Every document of every collection of the mesh's databases, as text."""
    client = pymongo.MongoClient(mongo_uri)
    try:
        return "\n".join(json.dumps(doc, default=str)
                         for name in client.list_database_names() if name.startswith(prefix)
                         for coll in client[name].list_collection_names()
                         for doc in client[name][coll].find())
    finally:
        client.close()


def test_secret_links_reach_only_the_mailbox_and_still_work(running_mesh, mailbox, mongo_uri):
    user = register(running_mesh, "secrets")
    verify = link_token(mailbox, user.email, r"verify-email\?token=([\w\-]+)")
    ws = websocket.create_connection(f"ws{running_mesh.base_url[4:]}/api/v1/ws", timeout=10,
                                     subprotocols=["bearer", user.token])
    assert json.loads(ws.recv())["type"] == "hello"

    # a signed-in user (or whoever holds their access token) asks for a reset
    assert running_mesh.request("POST", "/auth/password/forgot",
                                json={"email": user.email}).status_code == 202
    reset = link_token(mailbox, user.email, r"reset-password\?token=([\w\-]+)")
    item = wait_until(lambda: next((n for n in user.get("/notifications").json()["items"]
                                    if n["kind"] == "password_reset"), None),
                      timeout=20, what="the in-app reset notice")
    assert item["link"] is None and "sent to your email" in item["body"]
    pushed = []
    while not any(m.get("notification", {}).get("kind") == "password_reset" for m in pushed):
        pushed.append(json.loads(ws.recv()))
    ws.close()

    # an invitation to an address with no account yet
    org_id = personal_org(user)["org_id"]
    invitee = f"invitee-{uuid.uuid4().hex[:10]}@example.com"
    assert user.post(f"/orgs/{org_id}/employees", json={"email": invitee}).status_code == 202
    invitation = link_token(mailbox, invitee, r"/invitations/([\w\-]+)/accept")
    # the link in the URL path never reaches a log (the owner is not the invitee: 403)
    assert user.post(f"/invitations/{invitation}/accept").status_code == 403

    secrets = {"verification": verify, "reset": reset, "invitation": invitation}
    feed = json.dumps(user.get("/notifications", params={"limit": 100}).json())
    streams = redis.Redis.from_url(running_mesh.env["REDIS_URI"], decode_responses=True)
    stream = json.dumps([fields for _, fields in streams.xrange(
        f"notifications:stream:{user.user_id}")], default=str)
    stored = everything_stored(mongo_uri, running_mesh.env["MONGODB_DB_PREFIX"])
    logs = "\n".join(path.read_text(errors="replace")
                     for path in running_mesh.mesh.log_dir.glob("*.log"))
    # what was searched holds what it should
    assert "password_reset" in stream and "/invitations/[redacted]/accept" in logs
    assert "employee.invited" in stored and "user.password.reset" in stored  # the outboxes
    for name, secret in secrets.items():
        for where, text in (("feed", feed), ("websocket", json.dumps(pushed)),
                            ("stream", stream), ("databases", stored), ("logs", logs)):
            assert secret not in text, f"the {name} token is in the {where}"

    # the emailed links are the live ones
    invitations = [json.loads(line) for line in stored.splitlines()
                   if hashlib.sha256(invitation.encode()).hexdigest() in line]
    assert invitations and invitations[0]["status"] == "pending"
    assert running_mesh.request("POST", "/auth/email/verify",
                                json={"token": verify}).status_code == 204
    assert running_mesh.request("POST", "/auth/password/reset", json={
        "token": reset, "password": f"{PASSWORD} renewed"}).status_code == 204
    assert running_mesh.request("POST", "/auth/login", json={
        "email": user.email, "password": f"{PASSWORD} renewed"}).status_code == 200
