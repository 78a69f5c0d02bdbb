"""The notifications service against real RabbitMQ, Redis, SecantusDB and a
real SMTP server (aiosmtpd): events in, emails and in-app items out."""
from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timezone

import pymongo
import pytest
import redis
from nameko.events import event_handler
from nameko.testing.services import entrypoint_hook
from nameko.web.server import WebServer  # noqa: F401  (nameko's web extensions load)

from notify_svc.service import NotificationService
from shared import service as base
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.events import Events
from shared.mongo import database_name
from shared.rpc import rpc
from shared.sealed import seal
from tests.helpers import events_handled, wait_until
from tests.smtp_sink import body_html, body_text, smtp_sink  # noqa: F401  (fixture)


def make_producer(name: str):
    class Producer:
        events = Events()
        store = base.Mongo()

        @rpc
        def emit(self, event_type, data, org_id=None, event_id=None):
            self.events.publish(event_type, data, org_id=org_id, event_id=event_id)

        @rpc
        def emit_many(self, event_type, datas, org_id=None):
            for data in datas:
                self.events.publish(event_type, data, org_id=org_id)

    Producer.name = name
    Producer.__name__ = f"Fake{name.title()}"
    return Producer


@pytest.fixture
def mesh(container_factory, make_config, smtp_sink):  # noqa: F811
    """Start the notifications service (+ fake producers on demand)."""

    class Mesh:
        def __init__(self):
            self.config = None
            self.producers = {}
            self.service = None

        def start(self, **overrides):
            self.config = make_config(SMTP_URL=smtp_sink.url, NOTIFY_RETRY_BASE_SECONDS=0.3,
                                      NOTIFY_BULK_WINDOW_SECONDS=1, DIGEST_HOURLY_SECONDS=2,
                                      PUBLIC_URL="https://app.test", **overrides)
            self.service = container_factory(NotificationService, self.config)
            self.service.start()
            return self

        def emit(self, producer, event_type, data, org_id=None, event_id=None):
            if producer not in self.producers:
                container = container_factory(make_producer(producer), self.config)
                container.start()
                self.producers[producer] = container
            with entrypoint_hook(self.producers[producer], "emit") as emit:
                emit(event_type, data, org_id, event_id)

        def emit_many(self, producer, event_type, datas, org_id=None):
            self.emit(producer, "noop.warmup", {})  # the producer's container, started
            with entrypoint_hook(self.producers[producer], "emit_many") as emit:
                emit(event_type, datas, org_id)

        def call(self, method, *args):
            with entrypoint_hook(self.service, method) as hook:
                return hook(*args)

        def store(self):
            return self.service.dependencies  # noqa

        def db(self):
            from shared.mongo import Mongo
            return next(d for d in self.service.dependencies if isinstance(d, Mongo)).store.db

    return Mesh()


class ReadAllListener:
    name = "read_all_listener"
    seen: list = []

    @event_handler("notifications", "notification.read.all")
    def on_read_all(self, event):
        ReadAllListener.seen.append(event)


class SentListener:
    name = "sent_listener"
    seen: list = []

    @event_handler("notifications", "notification.sent")
    def on_sent(self, event):
        SentListener.seen.append(event)


def uid():
    return uuid.uuid4().hex[:10]


def sealed(mesh, link):
    return seal(mesh.config, link, 600)


def register(mesh, user_id, email, name="Ann"):
    mesh.emit("auth", "user.registered", {
        "user_id": user_id, "email": email, "name": name,
        "sealed_link": sealed(mesh, f"https://app.test/verify?t={user_id}")})


def feed(mesh, user_id, **query):
    return mesh.call("list_notifications", user_id, query)["items"]


def test_each_event_gives_the_right_email_and_in_app_item(mesh, smtp_sink):  # noqa: F811
    mesh.start()
    ann, bob = uid(), uid()
    ann_mail, bob_mail = f"ann-{ann}@example.com", f"bob-{bob}@example.com"
    org = uid()
    register(mesh, ann, ann_mail)
    [welcome] = smtp_sink.wait_for(ann_mail)
    assert "Welcome" in welcome["Subject"]
    assert f"https://app.test/verify?t={ann}" in body_text(welcome)
    assert f"https://app.test/verify?t={ann}" in body_html(welcome)
    assert "/settings/notifications" not in body_text(welcome)  # a security message
    mesh.emit("auth", "user.registered", {"user_id": bob, "email": bob_mail, "name": "Bob",
                                          "sealed_link": sealed(mesh, "https://v")})
    smtp_sink.wait_for(bob_mail)

    cases = [
        ("auth", "user.password.reset", {"user_id": ann, "email": ann_mail, "name": "Ann",
                                         "sealed_link": sealed(mesh, "https://app.test/reset/r")},
         ann_mail, "Reset your", "https://app.test/reset/r"),
        ("auth", "user.password.changed", {"user_id": ann, "email": ann_mail, "name": "Ann"},
         ann_mail, "password was changed", None),
        ("auth", "user.email.verified", {"user_id": ann, "email": ann_mail},
         ann_mail, "confirmed", None),
        ("organizations", "organization.created",
         {"org_id": org, "name": "Acme", "owner_user_id": ann, "owner_email": ann_mail,
          "owner_name": "Ann", "personal": False}, ann_mail, "Acme is ready",
         f"https://app.test/orgs/{org}"),
        ("employees", "employee.invited",
         {"org_id": org, "invitation_id": "i1", "email": f"new-{ann}@example.com", "role": "member",
          "sealed_link": sealed(mesh, "https://app.test/accept/x"), "invited_by_user_id": ann,
          "org_name": "Acme"}, f"new-{ann}@example.com", "invited to join Acme",
         "https://app.test/accept/x"),
        ("employees", "employee.added",
         {"org_id": org, "employee_id": "e1", "user_id": bob, "email": bob_mail, "name": "Bob",
          "role": "member", "job_title": "", "org_name": "Acme"}, bob_mail, "You joined Acme", None),
        ("teams", "team.member.added",
         {"org_id": org, "team_id": "t1", "team_name": "Ops", "employee_id": "e1", "user_id": bob,
          "role": "member"}, bob_mail, "team Ops", None),
        ("tasks", "task.assigned",
         {"org_id": org, "task_id": "k1", "title": "Fix it", "assignee_id": "e1",
          "assignee_user_id": bob, "assigned_by_user_id": ann, "due_at": None,
          "priority": "high", "job_id": None}, bob_mail, "New task: Fix it",
         f"https://app.test/orgs/{org}/tasks/k1"),
        ("tasks", "task.reassigned",
         {"org_id": org, "task_id": "k2", "title": "Move", "old_assignee_id": "e2",
          "new_assignee_id": "e1", "new_assignee_user_id": bob, "reason": ""},
         bob_mail, "reassigned to you: Move", None),
        ("tasks", "task.completed",
         {"org_id": org, "task_id": "k1", "title": "Fix it", "assignee_id": "e1",
          "creator_user_id": ann, "completed_by_user_id": bob}, ann_mail, "completed: Fix it", None),
        ("tasks", "task.overdue",
         {"org_id": org, "task_id": "k3", "title": "Late", "assignee_id": "e1",
          "assignee_user_id": bob, "due_at": "2026-01-01T00:00:00Z"}, bob_mail, "Overdue: Late", None),
        ("tasks", "task.comment.added",
         {"org_id": org, "task_id": "k1", "title": "Fix it", "comment_id": "c1",
          "author_user_id": ann, "assignee_user_id": bob, "watcher_user_ids": [ann, bob],
          "preview": "Nice work"}, bob_mail, "New comment on Fix it", None),
        ("employees", "employee.removed",
         {"org_id": org, "employee_id": "e1", "user_id": bob, "email": bob_mail, "name": "Bob",
          "org_name": "Acme", "removed_by_user_id": ann}, bob_mail, "You left Acme", None),
    ]
    for producer, event_type, data, to, subject, link in cases:
        before = len(smtp_sink.to(to))
        mesh.emit(producer, event_type, data, org_id=data.get("org_id"))
        got = smtp_sink.wait_for(to, before + 1)
        msg = got[-1]
        assert subject in msg["Subject"], (event_type, msg["Subject"])
        if link:
            assert link in body_text(msg), event_type
        # every email but a security message links the settings page (to unsubscribe)
        security = event_type in {"user.password.reset", "user.password.changed", "employee.invited"}
        settings = "https://app.test/settings/notifications"
        assert (settings in body_text(msg)) is not security, event_type
        assert (settings in body_html(msg)) is not security, event_type
    # in-app: newest first, every person-addressed event above is there
    kinds_ann = [n["kind"] for n in feed(mesh, ann, limit=100)]
    assert kinds_ann[0] == "task_completed"
    assert {"welcome", "password_reset", "org_created"} <= set(kinds_ann)
    kinds_bob = [n["kind"] for n in feed(mesh, bob, limit=100)]
    assert kinds_bob[:3] == ["employee_removed", "task_comment", "task_overdue"]
    # the comment author (a watcher) does not hear about their own comment
    assert "task_comment" not in kinds_ann
    # secret links went by email only: not in the feed, the stream or the deliveries
    reset_item = next(n for n in feed(mesh, ann, limit=100) if n["kind"] == "password_reset")
    assert reset_item["link"] is None
    assert reset_item["body"] == "A password reset link was sent to your email."
    stream = redis.Redis.from_url(mesh.config["REDIS_URI"], decode_responses=True).xrange(
        f"notifications:stream:{ann}")
    stored = json.dumps([feed(mesh, ann, limit=100), list(mesh.db().deliveries.find()),
                         [fields for _, fields in stream]], default=str)
    for secret in ("app.test/reset/r", f"verify?t={ann}", "app.test/accept/x"):
        assert secret not in stored, secret


def test_feed_pages_read_state_and_ownership(mesh, container_factory):
    mesh.start()
    container_factory(ReadAllListener, mesh.config).start()
    ann, eve = uid(), uid()
    register(mesh, ann, f"{ann}@example.com")
    for i in range(5):
        mesh.emit("tasks", "task.overdue", {"org_id": "o", "task_id": f"k{i}", "title": f"T{i}",
                                            "assignee_id": "e", "assignee_user_id": ann,
                                            "due_at": "2026-01-01"})
        wait_until(lambda n=i + 2: len(feed(mesh, ann, limit=100)) == n, what=f"{i + 2} items")
    page1 = mesh.call("list_notifications", ann, {"limit": 4})
    page2 = mesh.call("list_notifications", ann, {"limit": 4, "cursor": page1["next_cursor"]})
    assert len(page1["items"]) == 4 and len(page2["items"]) == 2 and page2["next_cursor"] is None
    ids = [n["id"] for n in page1["items"] + page2["items"]]
    assert len(set(ids)) == 6
    assert page1["items"][0]["title"] == "Overdue: T4"
    assert mesh.call("unread_count", ann) == 6
    first = ids[0]
    # another user can neither read, mark nor delete it
    for method in ("mark_read", "delete_notification"):
        with pytest.raises(NotFound):
            mesh.call(method, eve, first)
    assert feed(mesh, eve) == []
    mesh.call("mark_read", ann, first)
    assert mesh.call("unread_count", ann) == 5
    assert [n["id"] for n in feed(mesh, ann, unread=True)][0] == ids[1]
    mesh.call("delete_notification", ann, ids[1])
    assert mesh.call("unread_count", ann) == 4
    assert mesh.call("mark_all_read", ann) == 4
    [read_all] = wait_until(lambda: [e for e in ReadAllListener.seen if e["data"]["user_id"] == ann])
    assert read_all["data"] == {"user_id": ann, "count": 4} and read_all["actor_id"] == ann
    assert mesh.call("unread_count", ann) == 0
    with pytest.raises(ValidationFailed):
        mesh.call("list_notifications", ann, {"cursor": "%%%"})


def test_preferences_off_keeps_in_app_and_critical_ignores_them(mesh, smtp_sink):  # noqa: F811
    mesh.start()
    ann = uid()
    mail = f"{ann}@example.com"
    register(mesh, ann, mail)
    smtp_sink.wait_for(mail)
    mesh.call("set_preferences", ann, {"channels": {
        "task_overdue": {"email": False}, "password_reset": {"email": False, "in_app": False}}})
    mesh.emit("tasks", "task.overdue", {"org_id": "o", "task_id": "k", "title": "Quiet",
                                        "assignee_id": "e", "assignee_user_id": ann, "due_at": "x"})
    mesh.emit("auth", "user.password.reset", {"user_id": ann, "email": mail, "name": "Ann",
                                              "sealed_link": sealed(mesh, "https://r")})
    got = smtp_sink.wait_for(mail, 2)
    wait_until(lambda: len(feed(mesh, ann)) == 3, what="3 in-app items")
    assert [m["Subject"] for m in got][1] == "Reset your Workforce password"
    # in-app kept for the muted email; the critical reset ignored both "off"s
    assert {n["kind"] for n in feed(mesh, ann)} == {"password_reset", "task_overdue", "welcome"}
    assert not any("Quiet" in str(m["Subject"]) for m in smtp_sink.to(mail))
    with pytest.raises(ValidationFailed):
        mesh.call("set_preferences", ann, {"channels": {"no_such_kind": {"email": True}}})
    with pytest.raises(ValidationFailed):
        mesh.call("set_preferences", ann, {"colour": "blue"})
    with pytest.raises(ValidationFailed):
        mesh.call("set_preferences", ann, {"channels": {"task_overdue": {"fax": True}}})
    assert mesh.call("get_preferences", ann)["channels"]["task_overdue"] == {"email": False}


def test_same_event_twice_sends_one_email(mesh, smtp_sink):  # noqa: F811
    mesh.start()
    ann = uid()
    mail = f"{ann}@example.com"
    event_id = uuid.uuid4().hex
    data = {"user_id": ann, "email": mail, "name": "Ann", "sealed_link": sealed(mesh, "https://r")}
    mesh.emit("auth", "user.password.reset", data, event_id=event_id)
    smtp_sink.wait_for(mail)
    mesh.emit("auth", "user.password.reset", data, event_id=event_id)
    # a later, different event proves the second copy has been processed by now
    mesh.emit("auth", "user.password.changed", {"user_id": ann, "email": mail, "name": "Ann"})
    got = smtp_sink.wait_for(mail, 2)
    assert [m["Subject"] for m in got].count("Reset your Workforce password") == 1
    # and the handler's own duplicate (a crash after sending) is harmless too
    handled = mesh.db().handled_events
    handled.delete_many({})
    mesh.emit("auth", "user.password.reset", data, event_id=event_id)
    mesh.emit("auth", "user.password.changed", {"user_id": ann, "email": mail, "name": "Ann"})
    got = smtp_sink.wait_for(mail, 3)
    assert [m["Subject"] for m in got].count("Reset your Workforce password") == 1


def test_smtp_down_is_retried_then_sent(mesh, smtp_sink, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING, logger="notify_svc.flows")
    mesh.start()
    smtp_sink.stop()
    ann = uid()
    mail = f"{ann}@example.com"
    mesh.emit("auth", "user.password.changed", {"user_id": ann, "email": mail, "name": "Ann"})
    deliveries = mesh.db().deliveries
    wait_until(lambda: deliveries.find_one({"to": mail, "attempt_count": {"$gte": 2}}),
               what="two failed attempts")
    smtp_sink.start()
    [msg] = smtp_sink.wait_for(mail, timeout=15)
    assert "password was changed" in msg["Subject"]
    # the delivery is marked sent just after the SMTP conversation ends
    doc = wait_until(lambda: deliveries.find_one({"to": mail, "status": "sent"}), what="delivery marked sent")
    assert [a["status"] for a in doc["attempts"]][-1] == "sent"
    assert {a["status"] for a in doc["attempts"][:-1]} == {"transient"}
    assert mesh.call("failures") == []
    assert any("failed (attempt 1)" in r.getMessage() for r in caplog.records)  # said, once sent too


def test_permanent_failure_is_recorded_and_listed(mesh, smtp_sink):  # noqa: F811
    mesh.start(NOTIFY_MAX_ATTEMPTS=2)
    smtp_sink.stop()
    ann = uid()
    mesh.emit("auth", "user.password.changed", {"user_id": ann, "email": f"{ann}@example.com",
                                                "name": "Ann"})
    failures = wait_until(lambda: mesh.call("failures"), timeout=15, what="a failure")
    assert failures[0]["to"] == f"{ann}@example.com"
    assert failures[0]["attempt_count"] == 2
    smtp_sink.start()


def test_digest_collects_five_into_one_email(mesh, smtp_sink):  # noqa: F811
    mesh.start()
    ann = uid()
    mail = f"{ann}@example.com"
    register(mesh, ann, mail)
    smtp_sink.wait_for(mail)
    mesh.call("set_preferences", ann, {"digest": "hourly"})
    for i in range(5):
        mesh.emit("tasks", "task.reassigned", {"org_id": "o", "task_id": f"k{i}",
                                               "title": f"Job {i}", "old_assignee_id": "a",
                                               "new_assignee_id": "b",
                                               "new_assignee_user_id": ann, "reason": ""})
    got = smtp_sink.wait_for(mail, 2, timeout=15)
    assert len(feed(mesh, ann)) == 6
    digest = got[1]
    assert "5 updates" in digest["Subject"]
    text = body_text(digest)
    assert all(f"Job {i}" in text for i in range(5))
    wait_until(lambda: mesh.db().deliveries.count_documents({"user_id": ann,
                                                             "status": "sent"}) == 6,
               what="all marked sent")
    assert len(smtp_sink.to(mail)) == 2


def test_bulk_job_sends_one_message_per_person(mesh, smtp_sink):  # noqa: F811
    mesh.start()
    ann = uid()
    mail = f"{ann}@example.com"
    register(mesh, ann, mail)
    smtp_sink.wait_for(mail)
    for i in range(4):
        mesh.emit("tasks", "task.assigned", {"org_id": "o", "task_id": f"k{i}", "title": f"B{i}",
                                             "assignee_id": "e", "assignee_user_id": ann,
                                             "assigned_by_user_id": "x", "due_at": None,
                                             "priority": "normal", "job_id": "job1"})
    got = smtp_sink.wait_for(mail, 2)
    assert got[1]["Subject"] == "4 tasks assigned to you"
    items = feed(mesh, ann)
    assert len(items) == 2 and len(items[0]["data"]["tasks"]) == 4


def test_a_bulk_chunk_notifies_each_assignee_once_and_a_redelivery_changes_nothing(
        mesh, smtp_sink):  # noqa: F811
    mesh.start()
    people = [uid() for _ in range(3)]
    for user in people:
        register(mesh, user, f"{user}@example.com")
    for user in people:
        smtp_sink.wait_for(f"{user}@example.com")
    quiet = people[2]  # no email for assignments: in-app only
    mesh.call("set_preferences", quiet, {"channels": {"task_assigned": {"email": False}}})
    job = uid()
    chunk = {"org_id": "o", "job_id": job, "chunk": 0, "title": "Fill in the survey",
             "assigned_by_user_id": "boss", "due_at": None, "priority": "low",
             "tasks": [{"task_id": f"{job}-e{i}", "assignee_id": f"e{i}",
                        "assignee_user_id": user} for i, user in enumerate(people)]}
    mesh.emit("tasks", "task.bulk.assigned", chunk, org_id="o")
    for user in people[:2]:
        [mail] = smtp_sink.wait_for(f"{user}@example.com", 2)[1:]
        assert mail["Subject"] == "New task: Fill in the survey"
        assert f"https://app.test/orgs/o/tasks/{job}-e{people.index(user)}" in body_text(mail)
    for i, user in enumerate(people):
        [item] = wait_until(lambda user=user: [n for n in feed(mesh, user)
                                               if n["kind"] == "task_assigned"])
        assert item["title"] == "New task: Fill in the survey"
        assert item["data"]["tasks"] == [{"task_id": f"{job}-e{i}", "title": "Fill in the survey"}]
    db = mesh.db()
    wait_until(lambda: db.deliveries.count_documents({"group": job, "status": "sent"}) == 2)
    # the same chunk again under a new event id (a producer re-run): nothing new
    mesh.emit("tasks", "task.bulk.assigned", chunk, org_id="o")
    wait_until(lambda: db.handled_events.count_documents(
        {"_id": {"$regex": "^notifications.on_task_bulk_assigned:"}, "state": "done"}) == 2)
    assert db.notifications.count_documents({"kind": "task_assigned", "user_id": {"$in": people}}) == 3
    assert db.deliveries.count_documents({"group": job}) == 2
    assert len(smtp_sink.to(f"{quiet}@example.com")) == 1  # the welcome only
    assert all(len(smtp_sink.to(f"{u}@example.com")) == 2 for u in people[:2])


def test_a_person_in_two_chunks_of_a_job_gets_one_item_with_both_tasks_once(
        mesh, smtp_sink):  # noqa: F811
    """The second chunk (and its redelivery, under a new event id) adds its task to the
    person's item of the job (one write for the chunk), once; one email for both."""
    mesh.start()
    ann = uid()
    register(mesh, ann, f"{ann}@example.com")
    smtp_sink.wait_for(f"{ann}@example.com")
    job = uid()

    def chunk(n: int) -> dict:
        return {"org_id": "o", "job_id": job, "chunk": n, "title": "Fill in the survey",
                "assigned_by_user_id": "boss", "due_at": None, "priority": "low",
                "tasks": [{"task_id": f"{job}-t{n}", "assignee_id": "e",
                           "assignee_user_id": ann}]}

    for n in (0, 1, 1):
        mesh.emit("tasks", "task.bulk.assigned", chunk(n), org_id="o")
    db = mesh.db()
    wait_until(lambda: db.handled_events.count_documents(
        {"_id": {"$regex": "^notifications.on_task_bulk_assigned:"}, "state": "done"}) >= 3)
    [item] = [n for n in feed(mesh, ann) if n["kind"] == "task_assigned"]
    assert sorted(t["task_id"] for t in item["data"]["tasks"]) == [f"{job}-t0", f"{job}-t1"]
    [mail] = smtp_sink.wait_for(f"{ann}@example.com", 2)[1:]
    assert mail["Subject"] == "2 tasks assigned to you"
    assert db.deliveries.count_documents({"group": job}) == 1


def test_templates_are_validated_sandboxed_and_used(mesh, smtp_sink, monkeypatch):  # noqa: F811
    import shared.tenancy
    monkeypatch.setattr(shared.tenancy, "cached_membership", lambda r, o, u: {
        "status": "active", "role": "admin" if u == "admin" else "member"})
    mesh.start()
    org = uid()
    with pytest.raises(ValidationFailed) as bad:
        mesh.call("put_template", "admin", org, "task_overdue",
                  {"subject": "Hi", "text": "line one\n{% if %}"})
    assert "line 2" in str(bad.value.errors)
    with pytest.raises(ValidationFailed):
        mesh.call("put_template", "admin", org, "task_overdue",
                  {"subject": "{{ ''.__class__.__mro__ }}", "text": "x"})
    with pytest.raises(ValidationFailed):
        mesh.call("put_template", "admin", org, "task_overdue", {"subject": {"$gt": ""},
                                                                  "text": "x"})
    from shared.errors import Forbidden
    with pytest.raises(Forbidden):
        mesh.call("put_template", "member", org, "task_overdue", {"subject": "a", "text": "b"})
    with pytest.raises(NotFound):
        mesh.call("get_template", "admin", org, "nope")
    assert mesh.call("get_template", "admin", org, "task_overdue")["overridden"] is False
    mesh.call("put_template", "admin", org, "task_overdue",
              {"subject": "LATE {{ title|upper }}", "text": "See {{ link }}"})
    assert mesh.db().templates.count_documents({}) == 1
    ann = uid()
    register(mesh, ann, f"{ann}@example.com")
    mesh.emit("tasks", "task.overdue", {"org_id": org, "task_id": "k", "title": "report",
                                        "assignee_id": "e", "assignee_user_id": ann,
                                        "due_at": "x"}, org_id=org)
    got = smtp_sink.wait_for(f"{ann}@example.com", 2)
    assert got[1]["Subject"] == "LATE REPORT"
    footer = "Sent by Workforce (no-reply@workforce.local)"
    assert footer in body_text(got[1]) and footer in body_html(got[1])
    # an admin's own HTML cannot hide the footer nor change who the mail is from
    mesh.call("put_template", "admin", org, "task_overdue", {
        "subject": "Urgent from your bank", "text": "Pay now {{ link }}",
        "html": '<style>p { display: none }</style><div style="display:none"><p>Pay '
                '<a href="{{ link }}" onclick="x()">now</a><script>steal()</script><!--'})
    mesh.emit("tasks", "task.overdue", {"org_id": org, "task_id": "k2", "title": "again",
                                        "assignee_id": "e", "assignee_user_id": ann,
                                        "due_at": "x"}, org_id=org)
    got = smtp_sink.wait_for(f"{ann}@example.com", 3)
    html = body_html(got[2])
    assert got[2]["From"] == "Workforce <no-reply@workforce.local>"
    assert body_text(got[2]).rstrip().endswith("never asks for your password or a sign-in "
                                               "code by email.")
    assert footer in html and "<style" not in html.split("</head>")[1]
    assert "display:none" not in html and "<script" not in html and "onclick" not in html
    assert html.index("Pay") < html.index(footer)


PUBLIC_ENDPOINT = "https://93.184.215.14/push/"  # a public address literal: no DNS needed
PUSH_KEYS = {"p256dh": "B" * 87, "auth": "A" * 22}


def test_push_subscriptions_are_validated(mesh):
    mesh.start()
    ann = uid()
    good = {"endpoint": f"{PUBLIC_ENDPOINT}{ann}", "keys": PUSH_KEYS}
    assert mesh.call("add_push_subscription", ann, good) == {"endpoint": good["endpoint"]}
    assert mesh.call("add_push_subscription", ann, good) == {"endpoint": good["endpoint"]}
    for bad in ({"endpoint": "not a url", "keys": PUSH_KEYS}, {"endpoint": good["endpoint"]},
                {**good, "keys": {"p256dh": {"$gt": ""}, "auth": "x" * 10}}):
        with pytest.raises(ValidationFailed):
            mesh.call("add_push_subscription", ann, bad)
    assert mesh.db().push_subscriptions.count_documents({}) == 1
    mesh.call("remove_push_subscription", ann, good["endpoint"])
    with pytest.raises(NotFound):
        mesh.call("remove_push_subscription", ann, good["endpoint"])


@pytest.mark.parametrize("endpoint", [
    "http://93.184.215.14/push",                 # not https
    "https://127.0.0.1:6379/",                   # loopback: Redis
    "https://localhost/push",                    # a name for loopback
    "https://169.254.169.254/latest/meta-data",  # link-local: cloud metadata
    "https://10.0.0.8/push", "https://192.168.1.1/", "https://172.16.0.1/",  # private
    "https://100.64.0.1/",                       # shared address space
    "https://224.0.0.1/", "https://[ff02::1]/",  # multicast
    "https://0.0.0.0/", "https://[::]/",         # unspecified
    "https://240.0.0.1/",                        # reserved
    "https://[::1]/", "https://[::ffff:127.0.0.1]/", "https://[fe80::1]/",
    "https://user:pw@93.184.215.14/push",        # userinfo
    "https://no-such-host.invalid/push",         # does not resolve
])
def test_push_endpoints_inside_our_network_are_refused(mesh, endpoint):
    mesh.start()
    ann = uid()
    with pytest.raises(ValidationFailed):
        mesh.call("add_push_subscription", ann, {"endpoint": endpoint, "keys": PUSH_KEYS})
    assert mesh.db().push_subscriptions.count_documents({}) == 0


def test_push_subscriptions_are_capped_and_cannot_be_taken_over(mesh):
    mesh.start(PUSH_MAX_SUBSCRIPTIONS=2)
    ann, eve = uid(), uid()
    subs = [{"endpoint": f"{PUBLIC_ENDPOINT}{ann}/{i}", "keys": PUSH_KEYS} for i in range(3)]
    mesh.call("add_push_subscription", ann, subs[0])
    mesh.call("add_push_subscription", ann, subs[1])
    with pytest.raises(ValidationFailed):   # a third one: over the cap
        mesh.call("add_push_subscription", ann, subs[2])
    mesh.call("add_push_subscription", ann, subs[1])  # refreshing one is not a new one
    # eve cannot move ann's endpoint to her account (nor change its keys)
    with pytest.raises(Conflict):
        mesh.call("add_push_subscription", eve, {**subs[0], "keys": {
            "p256dh": "C" * 87, "auth": "D" * 22}})
    stored = mesh.db().push_subscriptions.find_one({"_id": subs[0]["endpoint"]})
    assert stored["user_id"] == ann and stored["keys"] == PUSH_KEYS
    with pytest.raises(NotFound):
        mesh.call("remove_push_subscription", eve, subs[0]["endpoint"])
    assert mesh.db().push_subscriptions.count_documents({"user_id": ann}) == 2


def test_org_defaults_of_the_real_organizations_service_apply_unless_the_user_chose(
        mesh, smtp_sink, container_factory, unique):  # noqa: F811
    from tests.integration.orgs_fakes import Mesh as OrgsMesh  # organizations + employees, real

    mesh.start()
    handlers = ("on_task_overdue", "on_task_reassigned", "on_org_created")
    marks = {h: events_handled("notifications", h) for h in handlers}
    orgs = OrgsMesh(container_factory, mesh.config)
    ann = orgs.register(unique, name="Ann Quiet", publish=False)
    orgs.emit("auth", "user.updated", {**ann})  # into notifications' recipient directory
    wait_until(lambda: mesh.db().recipients.find_one({"_id": ann["user_id"]}), what="the directory")
    org = orgs.call("organizations", "create_org", ann["user_id"], {
        "name": "Quiet", "settings": {"notification_defaults": {"email": False}}})
    org_id, user = org["org_id"], ann["user_id"]
    mesh.call("set_preferences", user, {"channels": {"task_reassigned": {"email": True}}})
    task = {"org_id": org_id, "task_id": "k", "title": "Org", "assignee_id": "e"}
    orgs.emit("tasks", "task.overdue", {**task, "assignee_user_id": user, "due_at": "x"})
    orgs.emit("tasks", "task.reassigned", {**task, "old_assignee_id": "a", "new_assignee_id": "e",
                                           "new_assignee_user_id": user, "reason": ""})
    wait_until(lambda: {"org_created", "task_overdue", "task_reassigned"} <=
               {n["kind"] for n in feed(mesh, user)}, what="the in-app items (in-app stays on)")
    wait_until(lambda: all(events_handled("notifications", h) > marks[h] for h in handlers),
               what="the three handlers to finish")
    [got] = smtp_sink.wait_for(ann["email"])
    assert got["Subject"] == "Task reassigned to you: Org"  # the user's own choice
    assert len(smtp_sink.to(ann["email"])) == 1  # the org turned email off: no overdue, no setup mail

    owner = orgs.call("employees", "get_membership", org_id, user)
    orgs.call("organizations", "update_settings", owner["user_id"], org_id,
              {"notification_defaults": {"email": True}})
    wait_until(lambda: mesh.db().handled_events.find_one(
        {"_id": {"$regex": "^notifications.on_org_settings:"}, "state": "done"}),
        what="organization.settings.updated to reach notifications")
    orgs.emit("tasks", "task.overdue", {**task, "task_id": "k2", "assignee_user_id": user,
                                        "due_at": "x"})
    assert smtp_sink.wait_for(ann["email"], 2)[1]["Subject"] == "Overdue: Org"

    # the org's digest default gathers the user's non-urgent email, until the user chooses
    orgs.call("organizations", "update_settings", owner["user_id"], org_id,
              {"notification_defaults": {"email": True, "digest": "weekly"}})
    wait_until(lambda: mesh.db().handled_events.count_documents(
        {"_id": {"$regex": "^notifications.on_org_settings:"}, "state": "done"}) == 2,
        what="the digest default to reach notifications")
    orgs.emit("tasks", "task.reassigned", {**task, "task_id": "k3", "old_assignee_id": "a",
                                           "new_assignee_id": "e", "new_assignee_user_id": user,
                                           "reason": ""})
    held = wait_until(lambda: mesh.db().deliveries.find_one(
        {"user_id": user, "status": "digest"}), what="the reassignment held for the weekly digest")
    assert (held["due_at"] - held["created_at"]).total_seconds() > 6 * 86400  # a week's window
    mesh.call("set_preferences", user, {"channels": {"task_reassigned": {"email": True}},
                                        "digest": "off"})
    orgs.emit("tasks", "task.reassigned", {**task, "task_id": "k4", "old_assignee_id": "a",
                                           "new_assignee_id": "e", "new_assignee_user_id": user,
                                           "reason": ""})
    assert smtp_sink.wait_for(ann["email"], 3)[2]["Subject"] == "Task reassigned to you: Org"


def test_a_resent_verification_link_is_emailed_like_the_first(mesh, smtp_sink):  # noqa: F811
    mesh.start()
    ann = uid()
    old, new = f"ann-{ann}@example.com", f"ann-new-{ann}@example.com"
    register(mesh, ann, old)
    smtp_sink.wait_for(old)
    for address, url in ((old, f"https://app.test/verify?t=again-{ann}"),
                         (new, f"https://app.test/verify?t=new-{ann}")):  # resend; changed email
        mesh.emit("auth", "user.email.verification.requested", {
            "user_id": ann, "email": address, "name": "Ann", "sealed_link": sealed(mesh, url)})
        mail = smtp_sink.wait_for(address, 2 if address == old else 1)[-1]
        assert mail["Subject"] == "Confirm your email address"
        assert url in body_text(mail) and url in body_html(mail)
    items = [n for n in feed(mesh, ann) if n["kind"] == "verify_email"]
    assert len(items) == 2 and all(n["link"] is None for n in items)  # the link: by email only


def test_mentioned_members_hear_once_and_the_author_not_at_all(mesh, smtp_sink):  # noqa: F811
    mesh.start()
    author, bob, cat = uid(), uid(), uid()
    for user in (author, bob, cat):
        register(mesh, user, f"{user}@example.com")
        smtp_sink.wait_for(f"{user}@example.com")
    mesh.call("set_preferences", cat, {"channels": {"task_mention": {"email": False}}})
    org = uid()
    comment = {"org_id": org, "task_id": "k1", "title": "Launch", "comment_id": "c1",
               "author_user_id": author, "assignee_user_id": bob, "watcher_user_ids": [bob],
               "preview": "@bob @cat please look", "mentions": ["e-bob", "e-cat", "e-author"],
               "mentioned_user_ids": [bob, cat, author]}
    for _ in range(2):  # the same event delivered twice
        mesh.emit("tasks", "task.comment.added", comment, org_id=org, event_id=f"evt-{org}")
    [mail] = smtp_sink.wait_for(f"{bob}@example.com", 2)[1:]
    assert mail["Subject"] == "You were mentioned on Launch"
    wait_until(lambda: [n["kind"] for n in feed(mesh, cat)] == ["task_mention", "welcome"],
               what="cat's in-app mention")
    assert [n["kind"] for n in feed(mesh, bob)] == ["task_mention", "welcome"]  # once, not twice
    assert len(smtp_sink.to(f"{cat}@example.com")) == 1  # cat turned mention emails off
    assert [n["kind"] for n in feed(mesh, author)] == ["welcome"]


def test_links_stored_in_clear_before_sealing_are_removed_at_start(make_config, mongo_uri,
                                                                   container_factory):
    config = make_config()
    client = pymongo.MongoClient(mongo_uri)
    db = client[database_name(config, "notifications")]
    now = datetime.now(timezone.utc)
    db.notifications.insert_many([
        {"_id": "n1", "user_id": "u", "kind": "password_reset", "link": "https://r?token=old1",
         "data": {"reset_url": "https://r?token=old1", "reset_token": "old1", "email": "a@b.c"},
         "created_at": now},
        {"_id": "n2", "user_id": "u", "kind": "task_overdue", "link": "https://app/t/1",
         "data": {"title": "T"}, "created_at": now}])
    db.deliveries.insert_many([
        {"_id": "n1:email", "kind": "password_reset", "status": "sent",
         "context": {"link": "https://r?token=old1", "reset_token": "old1", "name": "A"}},
        {"_id": "n3:email", "kind": "welcome", "status": "queued",
         "context": {"link": "https://v?token=old3"}}])
    container_factory(NotificationService, config).start()
    stored = json.dumps([list(db.notifications.find()), list(db.deliveries.find())],
                        default=str)
    assert "old1" not in stored
    assert db.notifications.find_one({"_id": "n1"})["data"] == {"email": "a@b.c"}
    assert db.notifications.find_one({"_id": "n2"})["link"] == "https://app/t/1"
    assert db.deliveries.find_one({"_id": "n1:email"})["context"] == {"name": "A"}
    assert "old3" in stored   # not sent yet: it keeps the link its email needs
    client.close()


def test_many_assignments_at_once_send_each_email_once_and_publish_each_sent_event(
        mesh, smtp_sink, container_factory, caplog):  # noqa: F811
    """A fan-out of task.assigned, handled in batches: every email is sent once,
    and every delivery's notification.sent is published once (directly, with no
    outbox entry); an email sent is not logged as a failure."""
    caplog.set_level(logging.WARNING, logger="notify_svc.flows")
    mesh.start()
    container_factory(SentListener, mesh.config).start()
    people = [uid() for _ in range(120)]
    mesh.db().recipients.insert_many([{"_id": u, "email": f"{u}@example.com", "name": u}
                                      for u in people])
    mesh.emit_many("tasks", "task.assigned", [
        {"org_id": "o", "task_id": f"fan-{u}", "title": f"Fan {u}", "assignee_id": "e",
         "assignee_user_id": u, "assigned_by_user_id": "boss", "due_at": None,
         "priority": "normal", "job_id": None} for u in people], org_id="o")
    db = mesh.db()
    wait_until(lambda: db.deliveries.count_documents(
        {"user_id": {"$in": people}, "status": "sent"}) == len(people), timeout=60,
        what="every delivery sent")
    sent = wait_until(lambda: (lambda got: got if len(got) >= len(people) else None)(
        [e for e in SentListener.seen if e["data"]["user_id"] in set(people)]),
        timeout=30, what="a notification.sent per delivery")
    assert sorted(e["data"]["user_id"] for e in sent) == sorted(people)  # each once
    assert all(e["data"]["channel"] == "email" and e["data"]["kind"] == "task_assigned"
               for e in sent)
    mails = smtp_sink.messages()  # parsed once (120 times 120 took 40 s)
    for user in people:
        [mail] = [m for m in mails if f"{user}@example.com" in str(m["To"])]
        assert mail["Subject"] == f"New task: Fan {user}"  # rendered once for item and email
        assert f"https://app.test/orgs/o/tasks/fan-{user}" in body_text(mail)
        assert "Choose which emails you get: https://app.test/" in body_text(mail)
    # published at once, before the delivery is recorded: not through the outbox
    assert db.outbox.count_documents({"envelope.event_type": "notification.sent"}) == 0
    assert not [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
