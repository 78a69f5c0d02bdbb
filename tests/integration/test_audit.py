"""The audit service against real RabbitMQ, Redis and SecantusDB: events in,
records out (each once, also with two replicas racing for one org's chain),
a tampered chain found at its first break (RPC and ops.cli audit-verify), and
the retention sweep, after which the chain still verifies."""
from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

import eventlet
import pytest
import requests
import yaml
from click.testing import CliRunner
from marshmallow import ValidationError
from nameko.dependency_providers import Config

from audit_svc import domain
from audit_svc.service import AuditService
from audit_svc.store import AuditStore
from gateway_svc.csvstream import EXPORT_PAGE
from gateway_svc.routes.audit import AuditRoutes
from ops.cli import cli
from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.events import make_envelope
from shared.mongo import utcnow
from shared.redis import Redis
from shared.rpc import ServiceRpc
from shared.telemetry import Telemetry
from tests.helpers import events_handled, wait_until
from tests.integration.tasks_mesh import FakeEmployees, call, database, dispatch, make_org
from tests.tokens import auth_headers


@pytest.fixture
def audit(container_factory, config):
    container_factory(FakeEmployees, config).start()
    service = container_factory(AuditService, config)
    service.start()
    return config, service


def _records(config, org_id):
    return list(database(config, "audit").records.find({"org_id": org_id}).sort("_id", 1))


def _wait_for(config, org_id, count):
    return wait_until(lambda: (lambda found: found if len(found) >= count else None)(
        _records(config, org_id)), timeout=20, what=f"{count} audit records")


def test_events_become_records_an_owner_lists_and_filters(audit):
    config, svc = audit
    org, p = make_org({"boss": "owner", "deputy": "admin", "ann": "member"})
    boss = p["boss"]["user_id"]
    task = dispatch(config, "tasks", "task.created", {"org_id": org, "task_id": "t-1",
                                                      "title": "Ship"},
                    actor_id=boss, correlation_id="req-1", client_ip="203.0.113.7")
    dispatch(config, "tasks", "task.comment.added", {"org_id": org, "task_id": "t-1",
                                                     "comment_id": "c-1"}, actor_id="someone")
    dispatch(config, "employees", "employee.invited", {
        "org_id": org, "invitation_id": "inv-1", "email": "x@example.com", "role": "member",
        "sealed_link": "v1.this-must-not-be-kept"}, actor_id=boss)
    login = make_envelope("user.login", {"user_id": boss, "session_id": "s1", "ip": "203.0.113.7"},
                          producer="auth", actor_id=boss)
    from nameko.standalone.events import event_dispatcher
    event_dispatcher(config)("auth", "user.login", login)
    _wait_for(config, org, 3)

    everything = call(svc, "list_records", boss, org, {})
    assert sorted(r["event_type"] for r in everything["items"]) == [
        "employee.invited", "task.comment.added", "task.created"]
    assert [r["seq"] for r in everything["items"]] == [3, 2, 1]
    created = next(r for r in everything["items"] if r["event_type"] == "task.created")
    assert created["event_id"] == task["event_id"] and created["actor_id"] == boss
    assert created["object"] == {"type": "task", "id": "t-1"}
    assert (created["correlation_id"], created["client_ip"]) == ("req-1", "203.0.113.7")
    invited = next(r for r in everything["items"] if r["event_type"] == "employee.invited")
    assert invited["object"] == {"type": "invitation", "id": "inv-1"}
    assert "this-must-not-be-kept" not in str(invited) and "this-must-not-be-kept" not in str(
        _records(config, org))

    def types(**args):
        return sorted(r["event_type"] for r in call(svc, "list_records", boss, org, args)["items"])

    assert types(object_type="task", object_id="t-1") == ["task.comment.added", "task.created"]
    assert types(actor="someone") == ["task.comment.added"]
    assert types(event_type="employee.invited") == ["employee.invited"]
    later = (utcnow() + timedelta(minutes=5)).isoformat()
    assert types(**{"from": later}) == []
    assert len(types(to=later)) == 3
    first = call(svc, "list_records", p["deputy"]["user_id"], org, {"limit": 2})
    rest = call(svc, "list_records", boss, org, {"limit": 2, "cursor": first["next_cursor"]})
    assert [r["seq"] for r in first["items"] + rest["items"]] == [3, 2, 1]
    assert rest["next_cursor"] is None

    with pytest.raises(Forbidden):
        call(svc, "list_records", p["ann"]["user_id"], org, {})
    _, q = make_org({"outsider": "owner"})
    with pytest.raises(NotFound):
        call(svc, "list_records", q["outsider"]["user_id"], org, {})
    for bad in ({"limit": 0}, {"cursor": "!!"}, {"from": "soon"}, {"object_id": ""}):
        with pytest.raises((ValidationFailed, ValidationError)):  # both are a 422 over RPC
            call(svc, "list_records", boss, org, bad)
    # the sign-in has no org: it is in the chain of events without one
    no_org = call(svc, "verify_chain", None)
    assert no_org["ok"] and no_org["checked"] >= 1


def test_a_duplicate_event_is_recorded_once_and_two_replicas_keep_one_chain(
        container_factory, config):
    container_factory(FakeEmployees, config).start()
    replicas = [container_factory(AuditService, config) for _ in range(2)]
    for replica in replicas:
        replica.start()
    org, _ = make_org({"boss": "owner"})

    handled_before = events_handled("audit", "on_task_updated")
    sent = [dispatch(config, "tasks", "task.updated", {"org_id": org, "task_id": f"t-{i}",
                                                       "changes": {"title": str(i)}})
            for i in range(40)]
    for envelope in sent[:10]:  # redelivered, or relayed twice by an outbox
        dispatch(config, "tasks", "task.updated", envelope["data"], event_id=envelope["event_id"])
    # and appended straight to the store by many writers at once
    store = AuditStore(database(config, "audit"))
    again = [domain.entry(e, utcnow()) for e in sent[10:20]]
    written = [r for r in eventlet.GreenPool(20).imap(store.append, again + again) if r]
    assert len({r["event_id"] for r in written}) == len(written)  # none twice
    _wait_for(config, org, 40)
    wait_until(lambda: events_handled("audit", "on_task_updated") - handled_before >= 50,
               timeout=20, what="the ten redelivered events handled again")
    records = _records(config, org)
    assert sorted(r["event_id"] for r in records) == sorted(e["event_id"] for e in sent)
    assert [r["seq"] for r in records] == list(range(1, 41))
    verdict = call(replicas[0], "verify_chain", org)
    assert verdict["ok"] and verdict["checked"] == 40 and verdict["last_seq"] == 40


def test_batches_that_overlap_and_race_append_each_event_once_in_one_unbroken_chain(
        container_factory, config):
    """A handler's batch of envelopes (``append_many``): an event recorded already in
    the middle of a batch, one twice in a batch, and batches of the same events
    appended by many writers at once still give each event one seq, 1..n."""
    container_factory(FakeEmployees, config).start()
    service = container_factory(AuditService, config)
    service.start()
    org, _ = make_org({"boss": "owner"})
    store = AuditStore(database(config, "audit"))
    events = [make_envelope("task.updated", {"org_id": org, "task_id": f"t-{i}",
                                             "changes": {"title": str(i)}},
                            producer="tasks", org_id=org) for i in range(60)]
    entries = [domain.entry(e, utcnow()) for e in events]
    first = store.append_many(entries[:5])
    assert [r["seq"] for r in first] == [1, 2, 3, 4, 5]
    # recorded already (2, 3) in the middle, and 7 twice in one batch
    mixed = store.append_many([entries[6], entries[2], entries[7], entries[7], entries[3],
                               entries[8]])
    assert [(r["event_id"], r["seq"]) for r in mixed] == [
        (entries[i]["event_id"], seq) for i, seq in ((6, 6), (7, 7), (8, 8))]
    batches = [entries[i:i + 10] for i in range(0, 60, 5)]  # each event in two batches
    written = [r for found in eventlet.GreenPool(12).imap(store.append_many, batches + batches)
               for r in found]
    assert len({r["event_id"] for r in written}) == len(written)  # none twice
    records = _records(config, org)
    assert sorted(r["event_id"] for r in records) == sorted(e["event_id"] for e in events)
    assert [r["seq"] for r in records] == list(range(1, 61))
    verdict = call(service, "verify_chain", org)
    assert verdict["ok"] and verdict["checked"] == 60 and verdict["last_seq"] == 60


def test_a_tampered_record_is_found_at_the_first_break_by_rpc_and_cli(audit, tmp_path):
    config, svc = audit
    org, _ = make_org({"boss": "owner"})
    for i in range(6):
        dispatch(config, "teams", "team.updated", {"org_id": org, "team_id": f"team-{i}"})
    records = _wait_for(config, org, 6)
    assert call(svc, "verify_chain", org)["ok"]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    ok = runner.invoke(cli, ["--config", str(config_file), "audit-verify", org])
    assert ok.exit_code == 0 and "ok, records 1..6" in ok.output, ok.output

    db = database(config, "audit")
    db.records.update_one({"_id": records[3]["_id"]}, {"$set": {"actor_id": "mallory"}})
    db.records.update_one({"_id": records[4]["_id"]}, {"$set": {"actor_id": "mallory"}})
    verdict = call(svc, "verify_chain", org)
    assert not verdict["ok"] and verdict["checked"] == 3
    assert verdict["break"]["seq"] == 4 and verdict["break"]["reason"] == "altered"
    assert verdict["break"]["event_id"] == records[3]["event_id"]
    broken = runner.invoke(cli, ["--config", str(config_file), "audit-verify", org])
    assert broken.exit_code == 1 and "BROKEN at seq 4 (altered)" in broken.output, broken.output

    db.records.replace_one({"_id": records[3]["_id"]}, records[3])
    db.records.replace_one({"_id": records[4]["_id"]}, records[4])
    db.records.delete_one({"_id": records[2]["_id"]})
    assert call(svc, "verify_chain", org)["break"]["reason"] == "missing"
    db.records.insert_one(records[2])
    db.records.delete_one({"_id": records[5]["_id"]})  # the newest
    assert call(svc, "verify_chain", org)["break"] == {
        "seq": 6, "reason": "truncated", "detail": "records 6..6 are missing", "record_id": None,
        "event_id": None}


def test_the_retention_sweep_deletes_old_records_and_the_chain_still_verifies(
        container_factory, make_config):
    config = make_config(AUDIT_RETENTION_DAYS=30)
    container_factory(FakeEmployees, config).start()
    svc = container_factory(AuditService, config)
    svc.start()
    org, p = make_org({"boss": "owner"})
    store = AuditStore(database(config, "audit"))
    old = utcnow() - timedelta(days=40)
    for i in range(5):  # recorded 40 days ago
        event = make_envelope("task.deleted", {"org_id": org, "task_id": f"old-{i}"},
                              producer="tasks", org_id=org)
        store.append(domain.entry(event, old + timedelta(minutes=i)))
    for i in range(3):
        dispatch(config, "tasks", "task.deleted", {"org_id": org, "task_id": f"new-{i}"})
    _wait_for(config, org, 8)
    other, _ = make_org({"x": "owner"})
    dispatch(config, "tasks", "task.deleted", {"org_id": other, "task_id": "kept"})
    _wait_for(config, other, 1)

    assert call(svc, "sweep_expired") == 5
    left = _records(config, org)
    assert [r["seq"] for r in left] == [6, 7, 8]
    assert all(r["data"].find("new-") >= 0 for r in left)
    assert len(_records(config, other)) == 1
    verdict = call(svc, "verify_chain", org)
    assert verdict["ok"] and verdict["anchored"] and verdict["first_seq"] == 6
    assert call(svc, "sweep_expired") == 0  # nothing more is old enough

    dispatch(config, "tasks", "task.deleted", {"org_id": org, "task_id": "after"})
    records = _wait_for(config, org, 4)
    assert records[-1]["seq"] == 9 and records[-1]["prev_hash"] == left[-1]["hash"]
    assert call(svc, "verify_chain", org)["ok"]
    # deleting past the anchor is not retention: it shows
    database(config, "audit").records.delete_one({"_id": left[0]["_id"]})
    assert call(svc, "verify_chain", org)["break"]["reason"] == "missing"
    assert call(svc, "list_records", p["boss"]["user_id"], org, {})["items"][0]["seq"] == 9


def test_a_retention_of_zero_days_keeps_everything(container_factory, make_config):
    config = make_config(AUDIT_RETENTION_DAYS=0)
    container_factory(FakeEmployees, config).start()
    svc = container_factory(AuditService, config)
    svc.start()
    org = f"org-{uuid.uuid4().hex[:8]}"
    store = AuditStore(database(config, "audit"))
    event = make_envelope("task.deleted", {"org_id": org, "task_id": "ancient"}, producer="tasks",
                          org_id=org)
    store.append(domain.entry(event, utcnow() - timedelta(days=4000)))
    assert call(svc, "sweep_expired") == 0
    assert len(_records(config, org)) == 1


class AuditGateway(AuditRoutes):
    """The gateway's audit routes, alone, over the real audit service."""

    name = "auditgw"
    config = Config()
    telemetry = Telemetry()
    redis = Redis()
    rpc_employees = ServiceRpc("employees")
    rpc_audit = ServiceRpc("audit")


def test_the_csv_export_streams_every_page_and_the_list_is_never_cached(audit, container_factory):
    config, svc = audit
    container_factory(AuditGateway, config).start()
    org, p = make_org({"boss": "owner", "ann": "member"})
    total = EXPORT_PAGE + 50  # two pages of the export
    store = AuditStore(database(config, "audit"))
    for i in range(total):
        store.append(domain.entry(make_envelope("task.updated", {
            "org_id": org, "task_id": f"t-{i}", "changes": {"title": f"=cmd|' /C calc'!A{i}"}},
            producer="tasks", org_id=org, actor_id=p["boss"]["user_id"]), utcnow()))
    base = f"http://{config['WEB_SERVER_ADDRESS']}/api/v1/orgs/{org}"
    boss = auth_headers(config, p["boss"]["user_id"])

    export = requests.get(f"{base}/audit.csv", headers=boss, params={"limit": 1}, timeout=30)
    assert export.status_code == 200, export.text
    assert export.headers["Content-Type"].startswith("text/csv")
    assert export.headers["Cache-Control"] == "no-store"
    assert f'filename="audit-{org}.csv"' in export.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [int(r["seq"]) for r in rows] == list(range(total, 0, -1))  # all, newest first
    assert {r["object_id"] for r in rows} == {f"t-{i}" for i in range(total)}

    listed = requests.get(f"{base}/audit", headers=boss, params={"limit": 5}, timeout=10)
    assert listed.status_code == 200 and listed.headers["Cache-Control"] == "no-store"
    assert [r["seq"] for r in listed.json()["items"]] == list(range(total, total - 5, -1))
    ann = auth_headers(config, p["ann"]["user_id"])
    for path in ("audit", "audit.csv"):
        refused = requests.get(f"{base}/{path}", headers=ann, timeout=10)
        assert refused.status_code == 403, refused.text
    bad = requests.get(f"{base}/audit.csv", headers=boss, params={"to": "never"}, timeout=10)
    assert bad.status_code == 422 and bad.headers["Content-Type"] == "application/problem+json"
