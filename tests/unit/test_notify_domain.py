"""Notification rules without I/O: who hears about what, through which
channel, when; templates render sandboxed."""
import time
from datetime import datetime, timezone

import pytest
from cryptography.fernet import Fernet

from notify_svc import domain
from notify_svc.channels import SmtpSettings
from notify_svc.flows import default_templates, html_email
from shared.outbound import UnsafeUrl, allowed_networks, check_public_url
from shared.sealed import Unsealable, seal, unseal

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


def test_completion_goes_to_the_creator_unless_they_completed_it():
    data = dict(org_id="o", task_id="t", title="T", assignee_id="e", creator_user_id="c")
    assert [p.recipient.user_id for p in domain.plans_for(
        event("task.completed", completed_by_user_id="b", **data))] == ["c"]
    assert domain.plans_for(event("task.completed", completed_by_user_id="c", **data)) == []


def test_invitation_is_addressed_by_email_and_bulk_assignments_are_grouped():
    [plan] = domain.plans_for(event("employee.invited", org_id="o", email="x@y.z",
                                    sealed_link="sealed", org_name="O", role="member"))
    assert plan.recipient.user_id is None and plan.recipient.email == "x@y.z"
    assert plan.link is None and plan.sealed_link == "sealed" and "sealed_link" not in plan.context
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


def test_the_orgs_digest_default_applies_until_the_user_chooses():
    org = {"email": True, "in_app": True, "push": False, "digest": "weekly"}  # organizations' shape
    unset = domain.default_preferences()
    assert domain.digest_of(unset, org) == "weekly"
    assert domain.decide("task_assigned", unset, org, NOON_UTC).email == "digest"
    assert domain.decide("task_overdue", unset, org, NOON_UTC).email == "now"  # never digested
    chose_off = {**unset, "digest": "off"}
    assert domain.decide("task_assigned", chose_off, org, NOON_UTC).email == "now"
    assert domain.digest_of({**unset, "digest": "hourly"}, org) == "hourly"
    assert domain.digest_of(unset, {"email": True}) == domain.digest_of(unset, None) == "off"
    assert domain.DIGEST_SECONDS["weekly"] == 7 * 24 * 3600


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
    html = html_email("<b>", "Hello <script>x</script>", None, "en", "footer")
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_smtp_url_options():
    s = SmtpSettings("smtp://me%40x:p%2Fw@mail.example:587?starttls=true&timeout=3")
    assert (s.host, s.port, s.user, s.password, s.starttls, s.ssl, s.timeout) == (
        "mail.example", 587, "me@x", "p/w", True, False, 3.0)
    assert SmtpSettings("smtps://mail.example").port == 465


HOSTILE_TEMPLATES = [
    "{% for a in range(1000) %}x{% endfor %}",                      # range over the bound
    "{% for a in range(99) %}{% for b in range(99) %}{% for c in range(99) %}x"
    "{% endfor %}{% endfor %}{% endfor %}",                          # loops too deep
    "{% for a in range(100) %}{% for b in range(100) %}{{ title }}{{ title }}"
    "{% endfor %}{% endfor %}",                                      # output over the cap
    "{{ 'x' * 1000000000 }}", "{{ [1] * 100000000 }}",               # repetition
    "{{ 9 ** 99999999 }}", "{{ '%0999999999d' % 1 }}",               # power, %-padding
    "{{ title.center(1000000000) }}", "{{ '{:>999999999}'.format(1) }}",
    "{{ title|center(1000000000) }}", "{{ title|indent(999999999, true) }}",
    "{{ lipsum(100000) }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",               # recursion
    "{% for x in tasks recursive %}{{ loop(tasks) }}{% endfor %}",
    "{{" + "(" * 5000 + "1" + ")" * 5000 + "}}",                     # nesting
    "{% for a in tasks %}{% for b in tasks %}{% for c in tasks %}{% endfor %}{% endfor %}"
    "{% endfor %}",
]


@pytest.mark.parametrize("source", HOSTILE_TEMPLATES)
def test_hostile_templates_are_refused_quickly(source):
    started = time.thread_time()  # CPU spent, which other processes on the machine do not move
    with pytest.raises(domain.TemplateInvalid):
        domain.validate_template("task_assigned", {"subject": "ok", "text": source})
    assert time.thread_time() - started < 1.0


def test_the_render_budget_stops_a_slow_template_with_real_data():
    slow = "{% for a in tasks %}{% for b in tasks %}{% endfor %}{% endfor %}"
    domain.validate_template("task_assigned", {"subject": "ok", "text": slow})  # 50 tasks: fine
    tasks = [{"task_id": str(i), "title": "t"} for i in range(20_000)]      # 400 M iterations
    started = time.thread_time()
    with pytest.raises(domain.TemplateInvalid, match="to render"):
        domain.render_part("text", slow, {"tasks": tasks})
    assert time.thread_time() - started < domain.RENDER_BUDGET_SECONDS + 0.5


def test_a_plain_template_renders_however_long_the_machine_keeps_it_waiting():
    """The budget counts the render's own work: a process the machine's other
    load holds back (here: a value that waits, using no CPU) still renders, where
    a wall-clock budget failed the email for good."""
    class Preempted:
        def __str__(self):
            time.sleep(domain.RENDER_BUDGET_SECONDS * 2)
            return "Ada"

    assert domain.render_part("text", "Hello {{ name }}", {"name": Preempted()}) == "Hello Ada"


def test_ordinary_templates_still_render():
    out = domain.render({"subject": "{{ count }} {{ title|upper }}\nBCC: x", "text":
                         "{% for t in tasks[:2] %}{{ loop.index }}. {{ t.title.strip() }}\n"
                         "{% endfor %}{{ name or email }} {{ tasks|length }}"},
                        domain.sample_context("task_assigned"))
    assert out["subject"] == "1 WRITE THE REPORT BCC: x"   # one header line
    assert out["text"] == "1. Task 0\n2. Task 1\nSam 50"


def test_secret_links_are_kept_out_of_the_plan_context():
    for event_type, extra in (("user.registered", {}), ("user.password.reset", {}),
                              ("user.email.verification.requested", {})):
        [plan] = domain.plans_for(event(event_type, user_id="u", email="a@b.c", name="A",
                                        sealed_link="SEALED", reset_url="https://r?token=raw",
                                        **extra))
        assert plan.link is None and plan.sealed_link == "SEALED"
        assert "SEALED" not in str(plan.context) and "raw" not in str(plan.context)
        assert plan.kind in domain.SECRET_LINK_KINDS


def test_sealed_links_open_with_the_key_only_until_they_expire(monkeypatch):
    config = {"SEALING_KEYS": Fernet.generate_key().decode()}
    link = "https://app/reset-password?token=s3cret"
    sealed = seal(config, link, 60)
    assert "s3cret" not in sealed and unseal(config, sealed) == link
    with pytest.raises(Unsealable):
        unseal({"SEALING_KEYS": Fernet.generate_key().decode()}, sealed)   # another key
    rotated = {"SEALING_KEYS": f"{Fernet.generate_key().decode()},{config['SEALING_KEYS']}"}
    assert unseal(rotated, sealed) == link                                   # rotation
    expired = seal(config, link, -1)
    with pytest.raises(Unsealable):
        unseal(config, expired)
    with pytest.raises(Unsealable):
        unseal(config, sealed[:-4] + "AAAA")                                 # tampered


def test_a_local_sealing_key_is_made_once_and_shared(tmp_path):
    config = {"JWT_KEYS_DIR": str(tmp_path / "keys")}
    sealed = seal(config, "x", 60)
    assert (tmp_path / "keys" / "sealing.key").stat().st_mode & 0o777 == 0o600
    assert unseal(dict(config), sealed) == "x"


@pytest.mark.parametrize("url", [
    "http://93.184.215.14/", "https://127.0.0.1/", "https://localhost/", "https://10.1.2.3/",
    "https://169.254.169.254/", "https://[::1]/", "https://[::ffff:10.0.0.1]/",
    "https://224.0.0.251/", "https://0.0.0.0/", "https://240.0.0.1/", "https://100.64.1.1/",
    "https://a:b@93.184.215.14/", "https://93.184.215.14:99999/", "https:///x",
])
def test_outbound_urls_must_be_public_https(url):
    with pytest.raises(UnsafeUrl):
        check_public_url(url)


def test_outbound_allowed_networks_admit_an_operators_relay():
    check_public_url("https://93.184.215.14/push")
    check_public_url("https://[2606:4700::1111]/push")
    allowed = allowed_networks({"OUTBOUND_ALLOWED_NETWORKS": "10.0.0.0/8, 127.0.0.1/32"})
    check_public_url("https://10.9.8.7/push", allowed)
    with pytest.raises(UnsafeUrl):
        check_public_url("http://10.9.8.7/push", allowed)   # still https only
    with pytest.raises(UnsafeUrl):
        check_public_url("https://192.168.0.1/push", allowed)


def test_a_disabled_webhook_is_told_to_the_admin_who_registered_it():
    (plan,) = domain.plans_for(event("webhook.endpoint.disabled", org_id="o", webhook_id="w",
                                     url="https://hooks.example.com/x", reason="50 failed attempts",
                                     created_by_user_id="admin-1"), "https://app.example.com")
    assert (plan.kind, plan.recipient.user_id) == ("webhook_disabled", "admin-1")
    assert plan.link == "https://app.example.com/orgs/o/webhooks/w"
