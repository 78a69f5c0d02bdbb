"""The webhooks service against real RabbitMQ, Redis and SecantusDB, delivering
to a real HTTPS receiver on this machine (its own certificate authority):
signed deliveries, exactly one per event and endpoint, retries with back-off,
a delivery log, redelivery, and an endpoint disabled after failing too often."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import eventlet
import eventlet.wsgi
import pytest
from nameko.testing.services import entrypoint_waiter
from pymongo import monitoring

from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.mongo import utcnow
from tests.helpers import self_signed, wait_until
from tests.integration.tasks_mesh import FakeEmployees, call, database, dispatch, make_org
from webhook_svc import domain
from webhook_svc.service import WebhookService
from webhook_svc.store import WebhookStore


class Receiver:
    """An HTTPS server: ``/ok`` answers 200, ``/fail`` 500, ``/flaky/<n>`` 503 n times
    then 200, ``/redirect`` 302 to the metadata address. Records every request."""

    def __init__(self, directory):
        cert, key_path = self_signed(directory, name="receiver")
        self.cert_path = cert
        self.requests: list[dict] = []
        self.counts: dict[str, int] = {}
        self.sock = eventlet.wrap_ssl(eventlet.listen(("127.0.0.1", 0)), certfile=cert,
                                      keyfile=key_path, server_side=True)
        self.base = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = eventlet.spawn(eventlet.wsgi.server, self.sock, self.app, log_output=False)

    def app(self, environ, start_response):
        path = environ["PATH_INFO"] + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        self.requests.append({"path": path, "headers": headers, "body": body})
        count = self.counts[path] = self.counts.get(path, 0) + 1
        status, extra = "200 OK", []
        if path.startswith("/fail"):
            status = "500 Internal Server Error"
        elif path.startswith("/flaky/") and count <= int(path.rsplit("/", 1)[1]):
            status = "503 Service Unavailable"
        elif path == "/redirect":
            status, extra = "302 Found", [("Location", "https://169.254.169.254/latest/meta-data")]
        start_response(status, extra)
        return [b"ok" if status.startswith("200") else b"nope!!"]

    def stop(self):
        self.server.kill()
        self.sock.close()

    def to(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def hooks(container_factory, make_config, tmp_path):
    receiver = Receiver(tmp_path)
    config = make_config(OUTBOUND_ALLOWED_NETWORKS="127.0.0.1/32",
                         WEBHOOK_CA_BUNDLE=str(receiver.cert_path), WEBHOOK_TICK_SECONDS=0.1,
                         WEBHOOK_RETRY_SCHEDULE_S="0.2,0.4", WEBHOOK_DISABLE_AFTER_FAILURES=3)
    container_factory(FakeEmployees, config).start()
    service = container_factory(WebhookService, config)
    service.start()
    yield config, service, receiver
    receiver.stop()


class EndpointReads(monitoring.CommandListener):
    """Counts the ``find``s on one database's ``endpoints`` collection, per org filtered
    on (registered once, before the service's MongoDB client is made)."""

    def __init__(self):
        self.database, self.counts = None, {}

    def started(self, event):
        if event.database_name == self.database and event.command_name == "find" \
                and event.command.get("find") == "endpoints":
            org = (event.command.get("filter") or {}).get("org_id")
            self.counts[org] = self.counts.get(org, 0) + 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


ENDPOINT_READS = EndpointReads()
monitoring.register(ENDPOINT_READS)  # a global listener: it sees every client made after this


@pytest.fixture
def counted_hooks(make_config, request):
    ENDPOINT_READS.counts = {}
    config, svc, receiver = request.getfixturevalue("hooks")
    ENDPOINT_READS.database = f"{config['MONGODB_DB_PREFIX']}_webhooks"
    yield config, svc, receiver, ENDPOINT_READS.counts
    ENDPOINT_READS.database = None


def test_admins_register_only_public_https_endpoints_for_known_events(hooks):
    config, svc, receiver = hooks
    org, p = make_org({"boss": "admin", "ann": "member"})
    boss = p["boss"]["user_id"]
    body = {"url": f"{receiver.base}/ok", "event_types": ["task.created"]}
    with pytest.raises(Forbidden):
        call(svc, "create_webhook", p["ann"]["user_id"], org, body)
    for url in ("http://example.com/hook", "https://169.254.169.254/latest", "https://10.0.0.1/x",
                "https://user:pw@example.com/x"):  # (loopback is allowed to these tests only)
        with pytest.raises(ValidationFailed) as refused:
            call(svc, "create_webhook", boss, org, {**body, "url": url})
        assert "url" in refused.value.errors, url
    for types in (["user.password_reset.requested"], ["employee.invited"], ["no.such"], []):
        with pytest.raises(ValidationFailed):
            call(svc, "create_webhook", boss, org, {**body, "event_types": types})
    with pytest.raises(ValidationFailed):
        call(svc, "create_webhook", boss, org, {**body, "url": {"$gt": ""}})
    made = call(svc, "create_webhook", boss, org, body)
    assert made["secret"].startswith("whsec_") and made["enabled"] is True
    shown = call(svc, "get_webhook", boss, org, made["webhook_id"])
    assert "secret" not in shown
    _, q = make_org({"outsider": "owner"})
    with pytest.raises(NotFound):
        call(svc, "get_webhook", q["outsider"]["user_id"], org, made["webhook_id"])
    assert [w["webhook_id"] for w in call(svc, "list_webhooks", boss, org, {})["items"]] == \
        [made["webhook_id"]]


def test_an_event_is_delivered_once_signed_and_without_secrets(hooks):
    config, svc, receiver = hooks
    org, p = make_org({"boss": "admin"})
    boss = p["boss"]["user_id"]
    hook = call(svc, "create_webhook", boss, org, {"url": f"{receiver.base}/ok",
                                                   "event_types": ["task.created"]})
    other = call(svc, "create_webhook", boss, org, {"url": f"{receiver.base}/ok?all",
                                                    "event_types": ["*"]})
    envelope = dispatch(config, "tasks", "task.created",
                        {"org_id": org, "task_id": "t-1", "title": "Ship it", "token": "hunter2"})
    dispatch(config, "tasks", "task.created", envelope["data"], event_id=envelope["event_id"])
    dispatch(config, "tasks", "task.deleted", {"org_id": org, "task_id": "t-1"})
    other_org, _ = make_org({"x": "owner"})
    dispatch(config, "tasks", "task.created", {"org_id": other_org, "task_id": "t-9"})
    wait_until(lambda: len(receiver.to("/ok")) >= 1 and len(receiver.to("/ok?all")) >= 2,
               timeout=10, what="the deliveries")
    eventlet.sleep(0.5)  # would a duplicate delivery arrive now?
    (got,) = receiver.to("/ok")  # once, though the event came twice; task.deleted not subscribed
    assert len(receiver.to("/ok?all")) == 2  # task.created and task.deleted, this org only
    signature = got["headers"][domain.SIGNATURE_HEADER]
    assert domain.verify(hook["secret"], signature, got["body"], now=int(time.time()))
    assert not domain.verify(other["secret"], signature, got["body"], now=int(time.time()))
    assert not domain.verify(hook["secret"], signature, got["body"] + b" ", now=int(time.time()))
    sent = json.loads(got["body"])
    assert sent["event_id"] == envelope["event_id"] and sent["event_type"] == "task.created"
    assert sent["data"] == {"org_id": org, "task_id": "t-1", "title": "Ship it"}  # no token
    assert got["headers"]["Workforce-Event"] == "task.created"
    log = call(svc, "list_deliveries", boss, org, hook["webhook_id"], {})["items"]
    assert [(d["state"], d["attempts"], d["last"]["status_code"]) for d in log] == \
        [("succeeded", 1, 200)]


def test_a_burst_of_events_with_redeliveries_makes_one_delivery_per_endpoint_and_event(hooks):
    """Events handled in batches: 25 at once, five of them twice, two orgs."""
    config, svc, receiver = hooks
    org, p = make_org({"boss": "admin"})
    other_org, q = make_org({"x": "admin"})
    hook = call(svc, "create_webhook", p["boss"]["user_id"], org,
                {"url": f"{receiver.base}/burst", "event_types": ["task.updated"]})
    theirs = call(svc, "create_webhook", q["x"]["user_id"], other_org,
                  {"url": f"{receiver.base}/burst?other", "event_types": ["task.updated"]})
    sent = [dispatch(config, "tasks", "task.updated", {"org_id": org if i % 5 else other_org,
                                                       "task_id": f"t-{i}", "changes": {}})
            for i in range(25)]
    for envelope in sent[:5]:
        dispatch(config, "tasks", "task.updated", envelope["data"], event_id=envelope["event_id"])

    def recorded(endpoint, owner, org_id):
        return {d["event_id"] for d in call(svc, "list_deliveries", owner, org_id,
                                            endpoint["webhook_id"], {"limit": 100})["items"]}

    mine = {e["event_id"] for i, e in enumerate(sent) if i % 5}
    wait_until(lambda: recorded(hook, p["boss"]["user_id"], org) == mine, timeout=20,
               what="one delivery per event of the org")
    wait_until(lambda: recorded(theirs, q["x"]["user_id"], other_org) ==
               {e["event_id"] for e in sent} - mine, timeout=20, what="the other org's")
    deliveries = database(config, "webhooks").deliveries
    assert deliveries.count_documents({"endpoint_id": hook["webhook_id"]}) == 20
    assert deliveries.count_documents({"endpoint_id": theirs["webhook_id"]}) == 5


def test_an_orgs_endpoints_are_read_once_until_one_of_them_changes(counted_hooks):
    """An org's subscriptions are cached (webhooks:ver:org:<org> versions them): its
    events cost no MongoDB read until an endpoint is created, changed or deleted, and
    each change is seen by the very next event."""
    config, svc, receiver, reads = counted_hooks
    org, p = make_org({"boss": "admin"})
    boss = p["boss"]["user_id"]

    def event(n):
        with entrypoint_waiter(svc, "on_task_created", timeout=15):
            dispatch(config, "tasks", "task.created", {"org_id": org, "task_id": f"t-{n}"})

    for n in range(3):
        event(n)
    assert reads.get(org) == 1  # three events of an org with no endpoints: one read
    keep = call(svc, "create_webhook", boss, org, {"url": f"{receiver.base}/ok?keep",
                                                   "event_types": ["*"]})
    gone = call(svc, "create_webhook", boss, org, {"url": f"{receiver.base}/ok?gone",
                                                   "event_types": ["task.created"]})
    later = call(svc, "create_webhook", boss, org, {"url": f"{receiver.base}/ok?later",
                                                    "event_types": ["task.deleted"]})
    event(3)  # created after the list was cached: still delivered to
    wait_until(lambda: len(receiver.to("/ok?keep")) == 1 and len(receiver.to("/ok?gone")) == 1,
               timeout=10, what="the deliveries to the new endpoints")
    event(4)
    assert reads[org] == 2  # read again after the change, once
    wait_until(lambda: len(receiver.to("/ok?gone")) == 2, timeout=10, what="the second delivery")
    call(svc, "delete_webhook", boss, org, gone["webhook_id"])
    call(svc, "update_webhook", boss, org, later["webhook_id"], {"event_types": ["task.created"]})
    event(5)
    wait_until(lambda: len(receiver.to("/ok?keep")) == 3 and len(receiver.to("/ok?later")) == 1,
               timeout=10, what="the deliveries after the changes")
    deliveries = database(config, "webhooks").deliveries
    assert deliveries.count_documents({"endpoint_id": gone["webhook_id"]}) == 0  # none recorded
    assert len(receiver.to("/ok?gone")) == 2
    assert call(svc, "list_deliveries", boss, org, keep["webhook_id"], {})["items"][0]["state"] \
        == "succeeded"


def test_a_failing_receiver_is_retried_then_recovers_and_a_delivery_can_be_sent_again(hooks):
    config, svc, receiver = hooks
    org, p = make_org({"boss": "admin"})
    boss = p["boss"]["user_id"]
    hook = call(svc, "create_webhook", boss, org, {"url": f"{receiver.base}/flaky/2",
                                                   "event_types": ["task.completed"]})
    dispatch(config, "tasks", "task.completed", {"org_id": org, "task_id": "t-2"})

    def delivered():
        items = call(svc, "list_deliveries", boss, org, hook["webhook_id"], {})["items"]
        return items and items[0]["state"] == "succeeded" and items[0]

    delivery = wait_until(delivered, timeout=15, what="the third attempt to succeed")
    assert delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["log"]] == [503, 503, 200]
    assert delivery["log"][0]["response"] == "nope!!" and delivery["log"][0]["latency_ms"] > 0
    assert call(svc, "get_webhook", boss, org, hook["webhook_id"])["consecutive_failures"] == 0

    again = call(svc, "redeliver", boss, org, hook["webhook_id"], delivery["delivery_id"])
    assert again["state"] == "pending"
    wait_until(lambda: len(receiver.to("/flaky/2")) == 4, timeout=10, what="the redelivery")
    with pytest.raises(NotFound):
        call(svc, "redeliver", boss, org, hook["webhook_id"], "0" * 24)


def test_an_endpoint_that_keeps_failing_is_disabled_and_redirects_are_not_followed(hooks):
    config, svc, receiver = hooks
    org, p = make_org({"boss": "admin"})
    boss = p["boss"]["user_id"]
    hook = call(svc, "create_webhook", boss, org, {"url": f"{receiver.base}/fail",
                                                   "event_types": ["task.overdue"]})
    moved = call(svc, "create_webhook", boss, org, {"url": f"{receiver.base}/redirect",
                                                    "event_types": ["task.overdue"]})
    dispatch(config, "tasks", "task.overdue", {"org_id": org, "task_id": "t-3"})
    wait_until(lambda: not call(svc, "get_webhook", boss, org, hook["webhook_id"])["enabled"],
               timeout=15, what="the endpoint to be disabled")
    disabled = call(svc, "get_webhook", boss, org, hook["webhook_id"])
    assert "3 failed attempts in a row" in disabled["disabled_reason"]
    (delivery,) = call(svc, "list_deliveries", boss, org, hook["webhook_id"], {})["items"]
    assert (delivery["state"], delivery["attempts"]) == ("failed", 3)
    assert len(receiver.to("/fail")) == 3
    published = database(config, "webhooks").outbox.find_one(  # the admin is told
        {"envelope.event_type": "webhook.endpoint.disabled",
         "envelope.data.webhook_id": hook["webhook_id"]})
    assert published["envelope"]["data"]["created_by_user_id"] == boss
    # nothing more reaches a disabled endpoint
    dispatch(config, "tasks", "task.overdue", {"org_id": org, "task_id": "t-4"})
    wait_until(lambda: len(receiver.to("/redirect")) >= 2, timeout=10, what="the second event")
    assert len(receiver.to("/fail")) == 3
    # not even recorded: the org's cached subscriptions went stale when it was disabled
    assert len(call(svc, "list_deliveries", boss, org, hook["webhook_id"], {})["items"]) == 1
    # a 302 is a failure, and its Location (the metadata address) is never requested
    first = call(svc, "list_deliveries", boss, org, moved["webhook_id"], {})["items"][-1]
    assert first["log"][0]["status_code"] == 302
    # an admin turns it on again: a fresh start
    back = call(svc, "update_webhook", boss, org, hook["webhook_id"], {"enabled": True})
    assert back["enabled"] and back["consecutive_failures"] == 0 and back["disabled_reason"] is None


def test_senders_racing_for_due_deliveries_claim_each_once(make_config):
    """Replicas' ticks at once: every due delivery (a stale "sending" one too) is
    claimed by one of them, oldest first, and nothing not due is."""
    store = WebhookStore(database(make_config(), "webhooks"))
    store.ensure_indexes()
    now = utcnow()

    def delivery(n, state, at):
        return {"_id": f"d{n:03}", "endpoint_id": "e", "event_id": f"ev{n}", "state": state,
                "next_attempt_at": at, "attempts": 0, "log": []}

    due = [delivery(n, ("pending", "retrying", "sending")[n % 3], now - timedelta(seconds=60 - n))
           for n in range(45)]
    later = [delivery(100 + n, "pending", now + timedelta(hours=1)) for n in range(5)]
    done = [delivery(200 + n, state, None) for n, state in enumerate(("succeeded", "failed"))]
    store.deliveries.insert_many(due + later + done)

    def claimer(_):
        got = []
        while batch := store.claim_due(10, lease_s=60):
            got.append([d["_id"] for d in batch])
        return got

    batches = [b for got in eventlet.GreenPool(4).imap(claimer, range(4)) for b in got]
    claimed = [i for b in batches for i in b]
    assert sorted(claimed) == sorted(d["_id"] for d in due)  # each once, nothing else
    rank = {d["_id"]: (WebhookStore.DUE_STATES.index(d["state"]), d["next_attempt_at"])
            for d in due}
    assert all(b == sorted(b, key=rank.get) for b in batches)  # per state, oldest first
    assert store.deliveries.count_documents({"state": "sending"}) == len(due)
