"""Managers, members and operators at work: a bulk job's progress bar, a
notification arriving live, a dead letter replayed from the operator pages."""
import re
import uuid
from datetime import datetime, timezone
from importlib import metadata

import requests
from kombu import Connection
from pymongo import MongoClient
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from shared.events import dead_letter_queue, make_envelope
from tests.browser.walk import PASSWORD, mailed_link, sign_in
from tests.e2e.mailbox import text_of
from tests.e2e.test_flows import personal_org, register
from tests.e2e.test_mesh_health import run_cli
from tests.helpers import wait_until


def _team(mesh, size):
    """An owner and ``size`` active members in the owner's organization."""
    owner = register(mesh, "manager")
    org_id = personal_org(owner)["org_id"]
    members = []
    for _ in range(size):
        member = register(mesh, "member")
        added = owner.post(f"/orgs/{org_id}/employees", json={"email": member.email, "role": "member"})
        assert added.status_code == 201, added.text
        members.append((member, added.json()["employee_id"]))
    return owner, org_id, members


def test_a_manager_creates_a_bulk_job_and_the_progress_bar_reaches_100(browsers, running_mesh):
    owner, org_id, members = _team(running_mesh, 4)
    ann = browsers("manager")
    sign_in(ann, owner.email)
    ann.open(f"/orgs/{org_id}/tasks/bulk")
    ann.click("#create-bulk")  # nobody chosen: the API's field error, nothing created
    ann.wait_text(".field-error[data-field=assignee_ids]", "")
    ann.fill(title="Read the handbook")
    ann.click("[data-check-all=assignee_ids]", navigates=False)
    ann.shot("bulk-form")
    ann.click("#create-bulk")
    ann.wait_text("#bulk-status", "done", timeout=30)
    assert ann.text("#bulk-percent") == "100%"
    assert ann.find("#bulk-progress .bar").get_attribute("style") == "width: 100%;"
    ann.shot("bulk-done")
    # one task per chosen person (owner included: everyone active was ticked)
    ann.open(f"/orgs/{org_id}/tasks?q=handbook")
    assert "q=handbook" in ann.driver.current_url  # filters live in the URL
    assert len(ann.all("#task-list .task-row")) == len(members) + 1
    ann.shot("tasks-filtered")

    def todo_bar():  # the chart is SVG drawn by the server
        ann.open(f"/orgs/{org_id}/stats")
        return ann.find("#chart-status .bar[data-label=todo]").get_attribute("data-value")

    wait_until(lambda: todo_bar() == str(len(members) + 1), timeout=20, interval=1,
               what="the stats chart to count the bulk tasks")
    ann.shot("stats")


def test_a_member_sees_a_notification_arrive_live_and_marks_it_read(browsers, running_mesh):
    owner, org_id, [(member, employee_id)] = _team(running_mesh, 1)
    mo = browsers("member")
    sign_in(mo, member.email)
    mo.open("/notifications")
    mo.click("#read-all")  # the welcome and joined notices: the badge starts at zero
    wait_until(lambda: not mo.all("#feed .item.unread"), timeout=10, what="everything read")
    wait_until(lambda: mo.find("body").get_attribute("data-live-state") == "open", timeout=20,
               interval=0.1, what="the live connection")
    assert not mo.find("#unread-badge").is_displayed()
    before = len(mo.all("#feed .item"))
    title = f"Fix the printer {uuid.uuid4().hex[:6]}"
    created = owner.post(f"/orgs/{org_id}/tasks", json={"title": title, "assignee_id": employee_id})
    assert created.status_code == 201, created.text

    mo.wait_text("#feed", title, timeout=30)  # no reload: over the websocket
    assert len(mo.all("#feed .item")) == before + 1
    mo.wait_text("#unread-badge", "1")
    mo.shot("arrived-live")
    mo.click("#feed .item.unread button", navigates=False)  # the script marks it, no reload
    wait_until(lambda: not mo.all("#feed .item.unread"), timeout=10, what="the item to be read")
    wait_until(lambda: not mo.find("#unread-badge").is_displayed(), timeout=10, what="the badge to clear")
    mo.shot("read")
    assert member.get("/notifications/unread-count").json()["unread"] == 0

    # delete: gone from the page (no reload) and from the API
    mo.open("/notifications")
    gone = mo.find("#feed .item").get_attribute("data-id")
    mo.click(f"#feed .item[data-id='{gone}'] button.delete-notification", navigates=False)
    wait_until(lambda: not mo.all(f"#feed .item[data-id='{gone}']"), timeout=10, what="the item deleted")
    assert gone not in {n["id"] for n in member.get("/notifications").json()["items"]}

    # web push: the button registers the service worker and subscribes with the server's
    # VAPID key. Headless Chromium has no push service (the subscribe call fails), so the
    # subscription the page would send is handed to the same path: page -> console -> API
    mo.click("#push-subscribe", navigates=False)
    state = wait_until(lambda: mo.find("#push").get_attribute("data-state"), timeout=20,
                       what="the push button's outcome")
    registered = mo.driver.execute_async_script(
        "const done = arguments[0]; navigator.serviceWorker.getRegistration('/').then(r => done(!!r));")
    assert registered  # the worker at /sw.js, scope the whole console
    send = ("const done = arguments[1]; window.wfSendSubscription(arguments[0]).then(done);")
    refused = mo.driver.execute_async_script(send, {  # the API's own validation, as the page shows it
        "endpoint": "http://127.0.0.1:9/push", "keys": {"p256dh": "x" * 87, "auth": "y" * 22}})
    assert refused["status"] == 422 and "endpoint" in refused["answer"]["errors"]
    accepted = mo.driver.execute_async_script(send, {
        "endpoint": f"https://127.0.0.1:9/push/{uuid.uuid4().hex}", "expirationTime": None,
        "keys": {"p256dh": "B" + "x" * 86, "auth": "y" * 22}})
    assert accepted["status"] == 201, accepted  # the gateway took the subscription
    mo.wait_text("#push-state", "On for this device")
    mo.shot(f"push-{state}")


def test_the_emailed_task_link_opens_the_task_and_its_settings_link_the_preferences(
        browsers, running_mesh, mailbox):
    owner, org_id, [(member, employee_id)] = _team(running_mesh, 1)
    title = f"Water the plants {uuid.uuid4().hex[:6]}"
    assert owner.post(f"/orgs/{org_id}/tasks", json={"title": title, "assignee_id": employee_id}
                      ).status_code == 201
    link = mailed_link(mailbox, member.email, rf"(http://\S+/orgs/{org_id}/tasks/\w+)")
    mo = browsers("member")
    sign_in(mo, member.email)
    mo.open(link)
    mo.wait_text("h1", title)
    mo.click("#status-done")  # todo -> done is not a move the API allows: said beside the buttons
    mo.wait_text(".problem, .field-error", "")
    assert mo.text("#task-status") == "todo"
    mo.click("#status-in_progress")
    mo.wait_text("#task-status", "in_progress")
    mo.fill(body="On it")
    mo.click("#add-comment")
    mo.wait_text(".comments", "On it")
    mo.fill(subtask_title="Buy soil")  # a subtask, counted on its parent
    mo.click("#create-subtask")
    mo.wait_text("#subtask-list", "Buy soil")
    assert mo.text("#subtask-progress") == "0 of 1 done"
    assert mo.text("#watch") == "Stop watching"  # the assignee watches on their own
    mo.click("#watch")
    mo.wait_text("#watch", "Watch")
    mo.shot("task")

    settings = mailed_link(mailbox, member.email, r"(http://\S+/settings/notifications\?kind=task_assigned)")
    mo.open(settings)
    assert mo.find("#focus").text.startswith("task assigned")
    mo.click("[name='task_assigned:email']", navigates=False)
    mo.fill(timezone="Mars/Olympus")  # refused by the API, beside the field; nothing stored
    mo.click("#save-preferences")
    mo.wait_text(".field-error[data-field=timezone]", "")
    assert member.get("/notifications/preferences").json()["channels"].get("task_assigned", {}).get(
        "email", True) is True
    assert not mo.find("[name='task_assigned:email']").is_selected()  # the form is kept as sent
    mo.fill(timezone="Europe/Paris")
    mo.click("#save-preferences")
    mo.wait_text("#prefs-saved", "Saved")
    mo.shot("preferences")
    prefs = member.get("/notifications/preferences").json()
    assert prefs["channels"]["task_assigned"]["email"] is False and prefs["timezone"] == "Europe/Paris"


def _park(mesh, handler: str, envelope: dict) -> str:
    """Put ``envelope`` in ``handler``'s dead-letter queue, as if its retries had run out
    while something it needed was down. Returns the queue's name."""
    url = mesh.env["RABBITMQ_MANAGEMENT_URL"] if "RABBITMQ_MANAGEMENT_URL" in mesh.env else \
        "http://127.0.0.1:15672"
    vhost = mesh.env["AMQP_URI"].rsplit("/", 1)[1]
    names = [q["name"] for q in requests.get(f"{url}/api/queues/{vhost}", auth=("guest", "guest"),
                                             timeout=10).json()]
    queue = next(n for n in names if n.endswith(f"--{handler}"))
    with Connection(mesh.env["AMQP_URI"]) as conn:
        dlq = dead_letter_queue(queue)(conn.default_channel)
        dlq.declare()
        conn.Producer().publish(envelope, exchange=dlq.exchange, routing_key=dlq.name,
                                serializer="json", delivery_mode=2, headers={
                                    "x-error": "Unavailable: MongoDB did not answer", "x-attempts": 5,
                                    "x-handler": handler, "x-original-queue": queue,
                                    "x-failed-at": "2026-12-01T09:00:00+00:00"})
    return f"{queue}.dlq"


def test_an_operator_replays_a_parked_dead_letter_and_the_queue_drains(browsers, running_mesh):
    owner, org_id, [(member, employee_id)] = _team(running_mesh, 1)
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    created = run_cli(running_mesh, "create-admin", "--email", email, "--name", "Ops", "--password", PASSWORD)
    assert created.returncode == 0 and "is an operator" in created.stdout, created.stderr
    title = f"Parked task {uuid.uuid4().hex[:6]}"
    envelope = make_envelope("task.assigned", {
        "org_id": org_id, "task_id": uuid.uuid4().hex, "title": title, "assignee_id": employee_id,
        "assignee_user_id": member.user_id, "due_at": None, "priority": "medium"},
        producer="tasks", org_id=org_id)
    dlq = _park(running_mesh, "notifications.on_task_assigned", envelope)

    op = browsers("operator")
    sign_in(op, email)

    def depth():  # the management API's figures lag by a few seconds: reload until they show it
        op.open("/ops/queues")
        return op.find(f"tr[data-queue='{dlq}'] .ready").text

    op.open("/ops/")
    op.wait_text("#health", "notifications")
    assert "DOWN" not in op.text("#health")
    for service in ("auth", "tasks", "notifications"):  # the outbox backlog, from each health RPC
        assert op.find(f"tr[data-service={service}] .outbox .pending").text.isdigit(), service
        row = f"tr[data-service={service}]"  # one process each here; the version installed
        assert op.find(f"{row} .replicas").text == "1", service
        assert op.find(f"{row} .version").text == metadata.version("workforce-mesh"), service
    links = {a.text: a.get_attribute("href") for a in op.all("#ops-links a")}
    assert links["Grafana"] == "http://127.0.0.1:3000/d/workforce"
    assert links["Swagger UI"].endswith("/api/v1/docs") and links["Metrics"] == "http://127.0.0.1:9090/"
    op.shot("health")
    # RabbitMQ's management figures are sampled (every 5 s) and lag more on a busy broker
    wait_until(lambda: depth() == "1", timeout=90, interval=1, what="the parked message in its queue")
    op.shot("queues-parked")
    op.open("/ops/dead-letters?service=notifications")
    row = op.find(f"tr.dead-letter[data-event-id='{envelope['event_id']}']")
    assert "MongoDB did not answer" in row.text
    op.shot("dead-letter")
    op.click(f"tr.dead-letter[data-event-id='{envelope['event_id']}'] button.replay-one")
    op.wait_text("#dl-result", "replayed 1")
    op.shot("replayed")
    wait_until(lambda: title in str(member.get("/notifications").json()["items"]), timeout=30,
               what="the replayed event's notification")
    wait_until(lambda: depth() == "0", timeout=90, interval=1, what="the dead-letter queue to drain")
    op.shot("queue-drained")
    op.open("/ops/dead-letters?service=notifications")
    assert not op.all(f"tr.dead-letter[data-event-id='{envelope['event_id']}']")

    # purge asks for the service's name first; without it nothing is dropped
    poison = make_envelope("task.assigned", {"org_id": org_id}, producer="tasks", org_id=org_id)
    _park(running_mesh, "notifications.on_task_assigned", poison)
    op.open("/ops/dead-letters?service=notifications")
    op.driver.execute_script("window.confirm = () => true;")
    op.click("#purge")
    op.wait_text(".field-error[data-field=confirm]", "Type notifications")
    assert op.all(f"tr.dead-letter[data-event-id='{poison['event_id']}']")
    op.fill(confirm="notifications")
    op.driver.execute_script("window.confirm = () => true;")
    op.click("#purge")
    op.wait_text("#dl-result", "purged")
    assert not op.all(f"tr.dead-letter[data-event-id='{poison['event_id']}']")
    op.shot("purged")

    # events flowing: counted by the console's own tap queue, consumers from the bindings
    assert owner.post(f"/orgs/{org_id}/tasks", json={"title": "Counted", "assignee_id": employee_id}
                      ).status_code == 201

    def assigned_count():
        op.open("/ops/events")
        return int(op.find("tr.flow[data-type='task.assigned'] .count").text)

    wait_until(lambda: assigned_count() >= 1, timeout=30, interval=1, what="task.assigned counted")
    row = op.find("tr.flow[data-type='task.assigned']")
    assert row.get_attribute("data-producer") == "tasks"
    assert "notifications.on_task_assigned" in row.find_element(By.CSS_SELECTOR, ".consumers").text
    now = op.find("#chart-events rect.minute[data-minutes-ago='0']")
    assert int(now.get_attribute("data-value")) >= 1
    assert len(op.all("#chart-events rect.minute")) == 60  # the last hour, a bar a minute
    op.shot("events")

    # bulk jobs in progress, every org (one left running, as a stalled job would be)
    jobs = MongoClient(running_mesh.env["MONGODB_URI"])[f"{running_mesh.env['MONGODB_DB_PREFIX']}_tasks"].jobs
    job_id = uuid.uuid4().hex
    jobs.insert_one({"_id": job_id, "org_id": org_id, "status": "running", "total": 10, "done": 4,
                     "failed": 1, "errors": [], "chunks_total": 2, "chunks_done": [0],
                     "created_at": datetime.now(timezone.utc), "finished_at": None})
    try:
        op.open("/ops/jobs")
        row = op.find(f"tr.job[data-job-id='{job_id}']")
        assert "4 created, 1 failed of 10" in row.text
        assert row.find_element(By.CSS_SELECTOR, ".bar").get_attribute("style") == "width: 50%;"
        op.shot("jobs")
    finally:
        jobs.delete_one({"_id": job_id})
    op.open("/ops/jobs")
    assert not op.all(f"tr.job[data-job-id='{job_id}']")


def _sign_in_as(browser, email):
    """The same browser as someone else: a fresh session cookie."""
    browser.driver.delete_all_cookies()
    sign_in(browser, email)


def test_teams_members_leader_and_permissions_and_what_a_member_is_not_shown(browsers, running_mesh):
    owner, org_id, [(lead, lead_id), (member, member_id)] = _team(running_mesh, 2)
    ann = browsers("owner")
    sign_in(ann, owner.email)
    ann.open(f"/orgs/{org_id}/teams")
    ann.click("#create-team")  # no name: the API's field error beside the field, nothing created
    ann.wait_text(".field-error[data-field=name]", "")
    assert owner.get(f"/orgs/{org_id}/teams").json()["items"] == []
    ann.fill(name="Platform", description="Build and deploy")
    ann.click("#create-team")
    ann.wait_text("h1", "Platform")
    team_id = ann.path.rstrip("/").rsplit("/", 1)[1]
    for employee_id in (lead_id, member_id):
        Select(ann.find("#f-employee_id")).select_by_value(employee_id)
        ann.click("#add-member")
        ann.wait_text("#members", "")
    assert len(ann.all("tr.member")) == 2
    ann.click(f"tr.member[data-employee-id='{lead_id}'] button.make-leader")
    ann.wait_text(f"tr.member[data-employee-id='{lead_id}'] .team-role", "leader")
    ann.click(f"[name='{member_id}:task.assign_team']", navigates=False)
    ann.click("#save-grants")
    assert ann.find(f"[name='{member_id}:task.assign_team']").is_selected()
    ann.shot("team")
    team_url = f"/orgs/{org_id}/teams/{team_id}"
    assert owner.get(team_url).json()["leader_id"] == lead_id
    assert owner.get(f"{team_url}/permissions").json()["permissions"] == {member_id: ["task.assign_team"]}

    # a member sees the team, and none of the actions the API would refuse them
    _sign_in_as(ann, member.email)
    ann.open(f"/orgs/{org_id}/teams")
    assert ann.all("tr.team-row[data-name='Platform']") and not ann.all("#new-team")
    ann.open(team_url)
    assert len(ann.all("tr.member")) == 2
    assert not ann.all("button.remove-member, button.make-leader, #add-member, #grants")
    ann.shot("team-as-member")
    # the leader manages the members, not the leader seat nor the grants
    _sign_in_as(ann, lead.email)
    ann.open(team_url)
    assert ann.all("button.remove-member") and not ann.all("button.make-leader, #grants")
    ann.click(f"tr.member[data-employee-id='{member_id}'] button.remove-member")
    wait_until(lambda: not ann.all(f"tr.member[data-employee-id='{member_id}']"), timeout=10,
               what="the member gone from the page")
    ann.shot("team-as-leader")
    assert [m["employee_id"] for m in owner.get(team_url).json()["members"]] == [lead_id]


def test_org_settings_a_read_only_plan_and_a_confirmed_ownership_transfer(browsers, running_mesh, mailbox):
    owner, org_id, [(admin, admin_id)] = _team(running_mesh, 1)
    ann = browsers("owner")
    sign_in(ann, owner.email)
    ann.open(f"/orgs/{org_id}/settings")
    assert ann.text("#plan-name") == "free" and "ops.cli set-plan" in ann.text("#plan")
    ann.fill(timezone="Mars/Olympus")  # refused by the API beside the field; nothing stored
    ann.click("#save-settings")
    ann.wait_text(".field-error[data-field=timezone]", "")
    assert owner.get(f"/orgs/{org_id}/settings").json()["timezone"] != "Mars/Olympus"
    ann.fill(timezone="Europe/Paris", name="Acme Robotics")
    ann.click("#save-settings")
    ann.wait_text("#settings-saved", "Saved")
    assert owner.get(f"/orgs/{org_id}/settings").json()["timezone"] == "Europe/Paris"
    ann.shot("settings")
    # people: the search narrows the list, the owner changes a role in place
    ann.open(f"/orgs/{org_id}/employees?q={admin.email}")
    row = f"tr.employee[data-email='{admin.email}']"
    assert len(ann.all("tr.employee")) == 1 and ann.all(row)
    Select(ann.find(f"{row} select[name=role]")).select_by_visible_text("admin")
    ann.click(f"{row} button.change-role")
    assert owner.get(f"/orgs/{org_id}/employees/{admin_id}").json()["role"] == "admin"
    ann.open(f"/orgs/{org_id}/settings")
    Select(ann.find("#f-user_id")).select_by_value(admin.user_id)
    ann.fill(confirm="not the name")  # without the organization's name typed, nothing moves
    ann.click("#transfer-ownership")
    ann.wait_text(".field-error[data-field=confirm]", "Type Acme Robotics")
    assert owner.get(f"/orgs/{org_id}").json()["owner_user_id"] == owner.user_id
    Select(ann.find("#f-user_id")).select_by_value(admin.user_id)
    ann.fill(confirm="Acme Robotics")
    ann.click("#transfer-ownership")
    ann.wait_text("#transferred", "transferred")
    assert owner.get(f"/orgs/{org_id}").json()["owner_user_id"] == admin.user_id

    def transfer_shown():  # the roles follow the transfer a moment later (an event)
        ann.open(f"/orgs/{org_id}/settings")
        return bool(ann.all("#transfer"))

    wait_until(lambda: not transfer_shown(), timeout=20, interval=0.5,
               what="no transfer section for the former owner (now an admin)")
    assert ann.all("#save-settings")  # an admin still edits the settings
    ann.shot("transferred")

    # someone invited before confirming their address sees the invitation and accepts it
    # by confirming (the API accepts every invitation to a verified address)
    guest = register(running_mesh, "guest", verified=False)
    wait_until(lambda: admin.post(f"/orgs/{org_id}/employees", json={
        "email": guest.email, "role": "member"}).status_code == 202, timeout=20, interval=0.5,
        what="the new owner's invitation")
    _sign_in_as(ann, guest.email)
    ann.open("/orgs")
    ann.wait_text(f".my-invitation[data-org-id='{org_id}']", "Acme Robotics")
    ann.shot("my-invitations")
    def verify_links():
        return [link for msg in mailbox.messages(to=guest.email)
                for link in re.findall(r"(http://\S+/verify-email\?token=[\w-]+)", text_of(msg))]

    welcome = len(wait_until(verify_links, timeout=20, what="the welcome mail"))
    ann.click("#accept-by-verifying")  # a new link (the welcome mail's is spent by it)
    ann.open(wait_until(lambda: verify_links()[welcome:][-1:] and verify_links()[-1], timeout=30,
                        what="the new verification mail"))
    ann.click("#confirm-email")
    wait_until(lambda: org_id in {o["org_id"] for o in guest.get("/orgs").json()["items"]}, timeout=20,
               what="the guest's membership")
    ann.open("/orgs")
    assert not ann.all(f".my-invitation[data-org-id='{org_id}']")
    ann.open(f"/orgs/{org_id}/employees")  # a member: no role changes, no invitations to send
    assert ann.all("tr.employee") and not ann.all(".role-form, #invite-section, #invitations")
    ann.shot("people-as-member")


def test_the_board_shows_tasks_by_status_and_moves_a_card(browsers, running_mesh):
    owner, org_id, _ = _team(running_mesh, 0)
    task_id = owner.post(f"/orgs/{org_id}/tasks", json={"title": "Card on the board"}).json()["task_id"]
    ann = browsers("manager")
    sign_in(ann, owner.email)
    ann.open(f"/orgs/{org_id}/tasks")
    ann.click("#board-link")
    card = f".task-card[data-task='{task_id}']"
    ann.wait_text(f".column[data-status=todo] {card}", "Card on the board")
    ann.click(f"{card} button.move[data-to=in_progress]")
    ann.wait_text(f".column[data-status=in_progress] {card}", "Card on the board")
    assert not ann.all(f".column[data-status=todo] {card}")
    assert owner.get(f"/orgs/{org_id}/tasks/{task_id}").json()["status"] == "in_progress"
    ann.shot("board")


def test_a_task_is_edited_assigned_and_carries_an_attachment_with_its_history(
        browsers, running_mesh, tmp_path):
    owner, org_id, [(member, employee_id)] = _team(running_mesh, 1)
    created = owner.post(f"/orgs/{org_id}/tasks", json={"title": "Draft the notes"})
    task_id = created.json()["task_id"]
    ann = browsers("manager")
    sign_in(ann, owner.email)
    ann.open(f"/orgs/{org_id}/tasks/{task_id}")
    ann.fill(title="", due_at="next tuesday")  # both refused beside their fields, nothing stored
    ann.click("#save-task")
    ann.wait_text(".field-error[data-field=title]", "")
    assert ann.all(".field-error[data-field=due_at]")
    assert owner.get(f"/orgs/{org_id}/tasks/{task_id}").json()["title"] == "Draft the notes"
    ann.fill(title="Publish the release notes", due_at="2031-01-31T17:00:00Z")
    Select(ann.find("#f-priority")).select_by_visible_text("urgent")
    ann.click("#save-task")
    ann.wait_text("h1", "Publish the release notes")
    assert ann.text("#task-priority") == "urgent"
    Select(ann.find("#f-assignee_id")).select_by_value(employee_id)
    ann.click("#assign")
    ann.wait_text("#task-assignee", "Member")
    Select(ann.find("#f-assignee_id")).select_by_value("")
    ann.click("#assign")
    ann.wait_text("#task-assignee", "nobody")
    Select(ann.find("#f-assignee_id")).select_by_value(employee_id)
    ann.click("#assign")
    ann.wait_text("#task-assignee", "Member")

    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"release notes, draft 1\n" * 2000)  # 46 kB: past werkzeug 2.3's 16 KiB trap
    ann.click("#upload")  # no file chosen: said beside the field
    ann.wait_text(".field-error[data-field=file]", "Choose a file")
    ann.find("#f-file").send_keys(str(upload))
    ann.click("#upload")
    ann.wait_text("#attachments", "notes.txt")
    href = ann.find("#attachments a.download").get_attribute("href")
    body = ann.driver.execute_async_script(
        "const done = arguments[1]; fetch(arguments[0]).then(r => r.text()).then(done);", href)
    assert body == upload.read_text()
    ann.shot("task-edited")
    history = ann.text("#history")
    for field in ("title", "priority", "due_at", "assignee_id"):
        assert ann.all(f"#history li[data-field={field}]"), (field, history)
    ann.click("#attachments button.delete-attachment")
    ann.wait_text("#attachments", "None")
    assert owner.get(f"/orgs/{org_id}/tasks/{task_id}/attachments").json()["items"] == []

    ann.open(f"/orgs/{org_id}/tasks")
    assert ann.all("#bulk-link")  # a manager may create for many at once

    # a member who may not assign others is not shown the assignee form, nor bulk creation
    _sign_in_as(ann, member.email)
    ann.open(f"/orgs/{org_id}/tasks/{task_id}")
    ann.wait_text("h1", "Publish the release notes")
    assert not ann.all("#task-assign")
    ann.open(f"/orgs/{org_id}/tasks")
    assert ann.all("#task-list .task-row") and not ann.all("#bulk-link")
