"""Notification rules without I/O: who hears about what, through which
channel, when; templates render sandboxed."""
from datetime import datetime, timezone

import pytest

from notify_svc import domain
from notify_svc.channels import SmtpSettings
from notify_svc.dispatch import default_templates, html_from_text

NOON_UTC = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def event(event_type, **data):
    return {"event_id": "e1", "event_type": event_type, "org_id": data.get("org_id"), "data": data}


def test_comment_goes_to_assignee_and_watchers_but_not_the_author():
    plans = domain.plans_for(event("task.comment.added", org_id="o", task_id="t", title="T",
                                   author_user_id="a", assignee_user_id="b",
                                   watcher_user_ids=["a", "c", "b"], preview="p"), "https://x")
    assert [p.recipient.user_id for p in plans] == ["b", "c"]
    assert plans[0].link == "https://x/orgs/o/tasks/t"


def test_a_mentioned_member_hears_once_as_a_mention_and_the_author_not_at_all():
    plans = domain.plans_for(event("task.comment.added", org_id="o", task_id="t", title="T",
                                   author_user_id="a", assignee_user_id="b", watcher_user_ids=["c"],
                                   mentioned_user_ids=["b", "d", "a", "d"], preview="@b @d"))
    assert [(p.kind, p.recipient.user_id) for p in plans] == [
        ("task_mention", "b"), ("task_mention", "d"), ("task_comment", "c")]


def test_a_resent_verification_link_goes_to_the_address_it_verifies():
    [plan] = domain.plans_for(event("user.email.verification.requested", user_id="u",
                                    email="new@example.com", name="N", verification_token="t",
                                    verify_url="https://app/verify?t=t"))
    assert (plan.kind, plan.recipient.email, plan.link) == (
        "email_verification", "new@example.com", "https://app/verify?t=t")
    assert domain.is_critical("email_verification")


def test_completion_goes_to_the_creator_unless_they_completed_it():
    data = dict(org_id="o", task_id="t", title="T", assignee_id="e", creator_user_id="c")
    assert [p.recipient.user_id for p in domain.plans_for(
        event("task.completed", completed_by_user_id="b", **data))] == ["c"]
    assert domain.plans_for(event("task.completed", completed_by_user_id="c", **data)) == []


def test_invitation_is_addressed_by_email_and_bulk_assignments_are_grouped():
    [plan] = domain.plans_for(event("employee.invited", org_id="o", email="x@y.z",
                                    accept_url="https://a", org_name="O", role="member"))
    assert plan.recipient.user_id is None and plan.recipient.email == "x@y.z"
    assert plan.link == "https://a"
    [bulk] = domain.plans_for(event("task.assigned", org_id="o", task_id="t", title="T",
                                    assignee_user_id="u", job_id="j1"))
    assert bulk.group == "j1"
    assert domain.group_id("j1", "u") == domain.group_id("j1", "u") != domain.group_id("j2", "u")
    assert domain.plans_for(event("task.deleted", org_id="o")) == []


def test_user_preference_beats_org_default_beats_built_in():
    prefs = {"channels": {"task_assigned": {"email": True}}}
    org = {"email": False, "in_app": True, "push": False, "digest": "off"}  # organizations' shape
    assert domain.channel_on("task_assigned", "email", prefs, org) is True
    assert domain.channel_on("task_assigned", "push", prefs, org) is False
    assert domain.channel_on("task_assigned", "in_app", prefs, org) is True


def test_critical_messages_ignore_preferences_quiet_hours_and_digests():
    prefs = {"channels": {"password_reset": {"email": False, "in_app": False}},
             "digest": "daily", "quiet_hours": {"start": "00:00", "end": "23:59"},
             "timezone": "UTC"}
    decision = domain.decide("password_reset", prefs, {}, NOON_UTC)
    assert (decision.email, decision.in_app) == ("now", True)
    assert domain.decide("task_assigned", prefs, {}, NOON_UTC).email == "digest"
    assert domain.decide("task_overdue", {**prefs, "quiet_hours": None}, {}, NOON_UTC).email == "now"


def test_quiet_hours_are_in_the_users_time_zone_and_hold_email():
    prefs = {"quiet_hours": {"start": "22:00", "end": "07:00"}, "timezone": "Asia/Tokyo",
             "digest": "off", "channels": {}}
    # 12:00 UTC is 21:00 in Tokyo: not quiet; 14:00 UTC is 23:00: quiet until 07:00 (22:00 UTC)
    assert not domain.in_quiet_hours(prefs, NOON_UTC)
    late = NOON_UTC.replace(hour=14)
    decision = domain.decide("task_assigned", prefs, {}, late)
    assert decision.email == "hold" and decision.push is False
    assert decision.not_before == datetime(2026, 6, 1, 22, 0, tzinfo=timezone.utc)


def test_templates_render_and_the_sandbox_refuses_attribute_access():
    template = default_templates("en")["task_assigned"]
    out = domain.render(template, {**domain.sample_context("task_assigned"),
                                   "title": "Ship", "link": "https://l"})
    assert out["subject"] == "New task: Ship" and "https://l" in out["text"]
    with pytest.raises(domain.TemplateInvalid) as exc:
        domain.validate_template("task_assigned", {"subject": "{{ ''.__class__.__mro__ }}",
                                                   "text": "x"})
    assert exc.value.part == "subject"
    with pytest.raises(domain.TemplateInvalid) as exc:
        domain.validate_template("task_assigned", {"subject": "ok", "text": "a\n{% for %}"})
    assert exc.value.line == 2
    with pytest.raises(domain.TemplateInvalid):
        domain.validate_template("task_assigned", {"subject": "{{ nope }}", "text": "x"})


def test_every_kind_has_a_default_template_that_renders():
    templates = default_templates("en")
    for kind in domain.KINDS:
        domain.validate_template(kind, templates[kind])


def test_html_is_escaped():
    html = html_from_text("<b>", "Hello <script>x</script>", None, "en")
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_smtp_url_options():
    s = SmtpSettings("smtp://me%40x:p%2Fw@mail.example:587?starttls=true&timeout=3")
    assert (s.host, s.port, s.user, s.password, s.starttls, s.ssl, s.timeout) == (
        "mail.example", 587, "me@x", "p/w", True, False, 3.0)
    assert SmtpSettings("smtps://mail.example").port == 465
