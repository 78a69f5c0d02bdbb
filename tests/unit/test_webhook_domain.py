"""Webhook rules: signatures a receiver can check, payloads without secrets,
which events may leave the mesh, and the retry schedule."""
from datetime import datetime, timedelta, timezone

from webhook_svc import domain
from webhook_svc.service import DELIVERABLE


def test_a_signature_checks_out_only_with_the_secret_the_body_and_a_fresh_timestamp():
    body = b'{"event_type":"task.created"}'
    header = domain.sign("whsec_a", 1_800_000_000, body)
    assert header.startswith("t=1800000000,v1=")
    assert domain.verify("whsec_a", header, body, now=1_800_000_010)
    assert not domain.verify("whsec_b", header, body, now=1_800_000_010)
    assert not domain.verify("whsec_a", header, body + b" ", now=1_800_000_010)
    assert not domain.verify("whsec_a", header, body, now=1_800_000_000 + 301)  # a replay
    assert not domain.verify("whsec_a", "v1=abc", body, now=1_800_000_000)


def test_payloads_carry_the_envelope_and_no_secret_at_any_depth():
    envelope = {"event_id": "e", "event_type": "x.y", "org_id": "o", "internal": 1,
                "data": {"task_id": "t", "token": "s", "nested": [{"reset_code": "1", "ok": 2}],
                         "sealed_link": "gAAA", "api_secret": "k"}}
    sent = domain.payload(envelope)
    assert "internal" not in sent and sent["event_id"] == "e"
    assert sent["data"] == {"task_id": "t", "nested": [{"ok": 2}]}


def test_only_org_events_without_secrets_and_not_our_own_can_be_subscribed():
    assert "task.created" in DELIVERABLE and "employee.added" in DELIVERABLE
    for private in ("user.registered", "user.password_reset.requested", "employee.invited",
                    "webhook.endpoint.disabled"):
        assert private not in DELIVERABLE, private
    endpoint = {"enabled": True, "event_types": ["task.created"]}
    assert domain.wants(endpoint, "task.created") and not domain.wants(endpoint, "task.deleted")
    assert domain.wants({"enabled": True, "event_types": ["*"]}, "task.deleted")
    assert not domain.wants({"enabled": False, "event_types": ["*"]}, "task.deleted")


def test_retries_follow_the_schedule_then_give_up():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    schedule = domain.parse_schedule("60, 300,1800")
    assert [domain.next_attempt(n, schedule, now) for n in (1, 2, 3, 4)] == [
        now + timedelta(seconds=60), now + timedelta(seconds=300), now + timedelta(seconds=1800), None]
    assert [domain.succeeded(s) for s in (200, 204, 299, 302, 500, None)] == \
        [True, True, True, False, False, False]
