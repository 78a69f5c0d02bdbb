"""Two processes of every service (and two gateways), as `REPLICAS=2 make run`
starts them: each event is handled once across replicas, each timer's work is
done once per period, and SIGKILL of one replica of each service in the middle
of a bulk job loses nothing and repeats nothing."""
import json
import os
import uuid
from collections import Counter

import eventlet
import pytest
import websocket

from shared import services
from tests.conftest import _create_vhost, _delete_vhost
from tests.e2e.conftest import started_mesh
from tests.e2e.mailbox import text_of
from tests.e2e.test_flows import bulk_job_under_way, crew_of, employees, personal_org, register
from tests.helpers import wait_until

pytestmark = pytest.mark.faults

CREW = 8  # the free plan holds 10 employees: the owner and these
CHUNK = 2  # tasks per bulk chunk: a job is several events, so a kill lands mid-job


@pytest.fixture(scope="module")
def replica_mesh(mongo_uri, tmp_path_factory, mailbox):
    vhost = f"e2e-replicas-{uuid.uuid4().hex[:8]}"
    amqp_uri = _create_vhost(vhost)
    try:
        with started_mesh(
            mongo_uri, tmp_path_factory.mktemp("replica-logs"), gateways=2, replicas=2,
            AMQP_URI=amqp_uri, REDIS_URI=os.environ.get("TEST_REDIS_URI", "redis://127.0.0.1:6379/9"),
            MONGODB_DB_PREFIX=f"rep{uuid.uuid4().hex[:8]}", RPC_TIMEOUT="5", LOG_LEVEL="INFO",
            SMTP_URL=mailbox.url, JWT_KEYS_DIR=str(tmp_path_factory.mktemp("replica-keys")),
            TASK_FILES_DIR=str(tmp_path_factory.mktemp("replica-files")), BCRYPT_ROUNDS="4",
            RATE_LIMIT_AUTH="100000/60", RATE_LIMIT_BULK="1000/60", TASK_BULK_CHUNK=str(CHUNK),
            TASK_OVERDUE_INTERVAL="1", EVENT_LEASE_MS="5000",
        ) as running:
            yield running
    finally:
        _delete_vhost(vhost)


def log_entries(mesh, service):
    for path in mesh.mesh.log_dir.glob(f"{service}*.log"):
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                yield path.name, json.loads(line)


def test_a_registration_is_handled_once_across_replicas(replica_mesh, mailbox):
    user = register(replica_mesh, "twin")
    org = personal_org(user)
    staff = wait_until(lambda: employees(user, org["org_id"]), timeout=20, what="the owner")
    assert [(e["user_id"], e["role"]) for e in staff] == [(user.user_id, "owner")]
    mails = wait_until(lambda: len(mailbox.messages(user.email)) >= 2 and mailbox.messages(user.email),
                       timeout=20, what="the welcome and verification emails")
    eventlet.sleep(1)  # would a second replica's copy of an event arrive now?
    assert len(user.get("/orgs").json()["items"]) == 1
    verification = [m for m in mailbox.messages(user.email) if "verify-email" in text_of(m)]
    assert len(verification) == 1, [m["Subject"] for m in mails]
    kinds = Counter(item["kind"] for item in user.get("/notifications").json()["items"])
    assert kinds and max(kinds.values()) == 1, kinds


def test_every_timer_does_its_work_once_per_period(replica_mesh):
    wait_until(lambda: sum(1 for _, e in log_entries(replica_mesh, "tasks")
                           if e.get("timer") == "mark_overdue") >= 5,
               timeout=30, interval=0.5, what="five overdue sweeps")
    for service in services.SERVICES:
        claims = Counter((e["timer"], e["period"]) for _, e in log_entries(replica_mesh, service)
                         if "timer" in e)
        assert claims, f"{service}: no timer ran"
        assert max(claims.values()) == 1, f"{service}: a period's work ran twice: {claims}"
    runs = [e for _, e in log_entries(replica_mesh, "tasks") if e.get("entrypoint") == "mark_overdue"]
    periods = [e["period"] for _, e in log_entries(replica_mesh, "tasks")
               if e.get("timer") == "mark_overdue"]
    assert len(runs) == len(periods)  # a skipped tick starts no worker


@pytest.mark.timeout(300)
def test_one_replica_of_each_service_killed_mid_bulk_job_loses_and_repeats_nothing(replica_mesh):
    owner = register(replica_mesh, "lead")
    org_id = personal_org(owner)["org_id"]
    wait_until(lambda: employees(owner, org_id), timeout=20, what="the owner")
    members = crew_of(replica_mesh, owner, org_id, CREW)
    title = f"Two of everything {uuid.uuid4().hex[:6]}"
    job_url = bulk_job_under_way(owner, org_id, members, title)
    for victim in ("tasks", "notifications", "employees"):
        replica_mesh.mesh.kill_replica(victim, 0)  # its twin carries on meanwhile

    job = wait_until(lambda: (lambda j: j["status"] == "done" and j)(owner.get(job_url).json()),
                     timeout=90, interval=0.2, what="the bulk job to finish")
    assert (job["total"], job["done"], job["failed"]) == (CREW, CREW, 0)
    tasks = owner.get(f"/orgs/{org_id}/tasks", params={"q": title, "limit": 100}).json()["items"]
    assert sorted(t["assignee_id"] for t in tasks) == sorted(m.employee_id for m in members)

    def notified_once(member):
        feed = member.get("/notifications", params={"limit": 100}).json()["items"]
        return sum(title in str(item) for item in feed)

    wait_until(lambda: all(notified_once(m) >= 1 for m in members), timeout=60, interval=0.5,
               what="an in-app notification for every assignee")
    wait_until(lambda: all(e["task_counts"]["open"] == 1 for e in employees(owner, org_id)
                           if e["user_id"] != owner.user_id),
               timeout=60, interval=0.5, what="every open task count at 1")
    eventlet.sleep(1)  # a late duplicate would land now
    assert [notified_once(m) for m in members] == [1] * CREW
    replica_mesh.wait_healthy()
    assert replica_mesh.mesh.dead() == [], replica_mesh.mesh.last_words()


def test_a_notification_reaches_the_users_sockets_on_both_gateways(replica_mesh):
    user = register(replica_mesh, "tabs")
    org_id = personal_org(user)["org_id"]
    me = wait_until(lambda: employees(user, org_id), timeout=20, what="the owner")[0]
    ws_url = replica_mesh.base_url.replace("http://", "ws://") + "/api/v1/ws"
    sockets = []

    def on_both_gateways():  # SO_REUSEPORT picks the process: open tabs until both hold one
        ws = websocket.create_connection(ws_url, timeout=10, subprotocols=["bearer", user.token])
        assert json.loads(ws.recv())["type"] == "hello"
        sockets.append(ws)
        holders = {name for name, e in log_entries(replica_mesh, "gateway")
                   if e.get("msg") == "websocket opened" and e.get("user_id") == user.user_id}
        return len(holders) == 2

    wait_until(on_both_gateways, timeout=30, interval=0, what="a socket on each gateway")
    try:
        title = f"Seen in every tab {uuid.uuid4().hex[:6]}"
        response = user.post(f"/orgs/{org_id}/tasks", json={"title": title, "assignee_id": me["employee_id"]})
        assert response.status_code == 201, response.text
        for ws in sockets:
            while True:
                message = json.loads(ws.recv())
                if message.get("type") == "notification" and title in json.dumps(message):
                    break
    finally:
        for ws in sockets:
            ws.close()
