"""Faults: the mesh on its own RabbitMQ and Redis, which these tests stop and
restart, and services killed with SIGKILL in the middle of a bulk job. Each
test leaves the mesh healthy."""
import time
import uuid

import pymongo
import pytest
import requests

from ops.cli import rpc_call
from tests.e2e.conftest import started_mesh
from tests.e2e.servers import PrivateRabbit, PrivateRedis
from tests.e2e.test_flows import bulk_job_under_way, crew_of, employees, personal_org, register
from tests.helpers import wait_until

pytestmark = pytest.mark.faults

CREW = 40  # members of the org the bulk jobs assign to
CHUNK = 8  # tasks per bulk chunk: a job is several events, so a kill lands mid-job


@pytest.fixture(scope="module")
def fault_mesh(mongo_uri, tmp_path_factory):
    rabbit, redis_server = PrivateRabbit(), PrivateRedis()
    rabbit.start()
    redis_server.start()
    try:
        with started_mesh(mongo_uri, tmp_path_factory.mktemp("fault-logs"), gateways=1,
                          AMQP_URI=rabbit.uri, REDIS_URI=redis_server.uri, RPC_TIMEOUT="3",
                          MONGODB_DB_PREFIX=f"fault{uuid.uuid4().hex[:8]}",
                          JWT_KEYS_DIR=str(tmp_path_factory.mktemp("fault-keys")),
                          TASK_FILES_DIR=str(tmp_path_factory.mktemp("fault-files")),
                          BCRYPT_ROUNDS="4", RATE_LIMIT_AUTH="100000/60",
                          RATE_LIMIT_BULK="1000/60", TASK_BULK_CHUNK=str(CHUNK),
                          EVENT_LEASE_MS="5000",  # a killed worker's claim lapses soon
                          # the private servers have no management API, and a Redis
                          # restart forgets ACL users: every service uses the admin URIs
                          SERVICE_USERS="0") as running:
            running.rabbit, running.redis_server = rabbit, redis_server
            yield running
    finally:
        rabbit.cleanup()
        redis_server.cleanup()


def rpc(mesh, service, method, *args):
    """What an operator does from `nameko shell`."""
    return rpc_call({"AMQP_URI": mesh.env["AMQP_URI"]}, service, method, *args, timeout=10)


@pytest.fixture(scope="module")
def crew(fault_mesh):
    """An enterprise org: its owner and CREW members, plus what each member should hold."""
    owner = register(fault_mesh, "boss")
    org_id = personal_org(owner)["org_id"]
    rpc(fault_mesh, "organizations", "set_plan", org_id, "enterprise")
    members = crew_of(fault_mesh, owner, org_id, CREW)
    return {"org_id": org_id, "owner": owner, "members": members, "titles": []}


def stuck_job_report(mesh, job) -> str:
    tasks_db = pymongo.MongoClient(mesh.env["MONGODB_URI"])[f"{mesh.env['MONGODB_DB_PREFIX']}_tasks"]
    claims = list(tasks_db.handled_events.find({"_id": {"$regex": "^tasks.on_bulk_chunk:"}}))
    pending = list(tasks_db.outbox.find({"state": "pending"}, {"envelope.data.assignee_ids": 0}))
    return (f"job: {job}\nchunk claims: {claims}\noutbox pending: {pending}\n"
            f"dead letters: {rpc(mesh, 'tasks', 'dead_letters')}\nqueues:\n{mesh.rabbit.queues()}")


def titled(items, title):
    return sum(title in str(item) for item in items)


def everyone(members, check, what, timeout=60):
    pending = set(members)

    def done():
        pending.difference_update({m for m in list(pending) if check(m)})
        return not pending

    wait_until(done, timeout=timeout, interval=0.3, what=what)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("victim", ["tasks", "notifications", "employees"])
def test_a_service_killed_mid_bulk_job_loses_and_repeats_nothing(fault_mesh, crew, victim):
    org_id, owner, members = crew["org_id"], crew["owner"], crew["members"]
    title = f"Survive a crash of {victim} {uuid.uuid4().hex[:6]}"
    job_url = bulk_job_under_way(owner, org_id, members, title)
    fault_mesh.mesh.stop_service(victim, kill=True)  # SIGKILL: no clean shut-down, no acks
    fault_mesh.mesh.start_service(victim)
    fault_mesh.wait_healthy()
    crew["titles"].append(title)

    try:
        job = wait_until(lambda: (lambda j: j["status"] == "done" and j)(owner.get(job_url).json()),
                         timeout=90, interval=0.2, what="the bulk job to finish")
    except AssertionError as exc:  # say where each chunk is, so a failure explains itself
        raise AssertionError(f"{exc}\n{stuck_job_report(fault_mesh, owner.get(job_url).json())}") from exc
    assert (job["total"], job["done"], job["failed"]) == (CREW, CREW, 0)
    every_task = owner.get(f"/orgs/{org_id}/tasks", params={"q": title, "limit": 100}).json()["items"]
    assert sorted(t["assignee_id"] for t in every_task) == sorted(m.employee_id for m in members)
    for member in members:
        assert titled(member.get("/me/tasks", params={"limit": 100}).json()["items"], title) == 1

    everyone(members, lambda m: titled(m.get("/notifications").json()["items"], title) >= 1,
             "an in-app notification for every assignee")

    def counts_exact():
        staff = {e["employee_id"]: e for e in employees(owner, org_id)}
        return all(staff[m.employee_id]["task_counts"]["open"] == len(crew["titles"])
                   for m in members)

    wait_until(counts_exact, timeout=60, interval=0.5, what="every employee's open task count")
    # exactly once, for this job and the earlier ones (a late duplicate would show here)
    for member in members:
        feed = member.get("/notifications", params={"limit": 100}).json()["items"]
        assert [titled(feed, t) for t in crew["titles"]] == [1] * len(crew["titles"])


@pytest.mark.timeout(300)
def test_events_waiting_in_queues_survive_a_broker_restart(fault_mesh, crew):
    """Published while their consumer was down, then RabbitMQ restarts: all handled."""
    org_id, owner, member = crew["org_id"], crew["owner"], crew["members"][0]
    fault_mesh.mesh.stop_service("notifications")
    try:
        titles = [f"Queued over a restart {n} {uuid.uuid4().hex[:6]}" for n in range(5)]
        for title in titles:
            response = owner.post(f"/orgs/{org_id}/tasks",
                                  json={"title": title, "assignee_id": member.employee_id})
            assert response.status_code == 201, response.text
        fault_mesh.rabbit.stop()
        fault_mesh.rabbit.start()
    finally:
        fault_mesh.mesh.start_service("notifications")
    fault_mesh.wait_healthy(timeout=90)

    def all_handled():
        feed = member.get("/notifications", params={"limit": 100}).json()["items"]
        return [titled(feed, t) for t in titles] == [1] * len(titles)

    wait_until(all_handled, timeout=60, interval=0.5, what="a notification for every queued event")


def test_rabbitmq_outage_answers_503_quickly_then_the_mesh_reconnects(fault_mesh):
    fault_mesh.rabbit.stop()
    try:
        for _ in range(3):
            started = time.monotonic()
            response = fault_mesh.get("/health")
            assert response.status_code == 503
            assert time.monotonic() - started < 10  # an answer, not a hang
            assert response.headers["Content-Type"].startswith("application/")
    finally:
        fault_mesh.rabbit.start()
    fault_mesh.wait_healthy(timeout=90)


def test_redis_outage_is_reported_and_recovered(fault_mesh, crew):
    owner = crew["owner"]
    fault_mesh.redis_server.stop()
    try:
        body = wait_until(lambda: _health(fault_mesh), timeout=10, what="a health answer")
        assert body["status"] == "degraded"
        assert set(body["services"].values()) == {"down"}  # why is for operators, not the public:
        for name in body["services"]:                         # the health RPC names Redis
            if name != "gateway":
                assert rpc(fault_mesh, name, "health")["checks"]["redis"]["ok"] is False, name
        # token revocation cannot be checked: fail closed, quickly, as problem+json
        started = time.monotonic()
        refused = owner.get("/orgs")
        assert refused.status_code == 503 and time.monotonic() - started < 10
        assert refused.headers["Content-Type"] == "application/problem+json"
    finally:
        fault_mesh.redis_server.start()
    fault_mesh.wait_healthy(timeout=30)
    assert owner.get("/orgs").status_code == 200


@pytest.mark.timeout(180)
def test_no_stale_cache_after_a_redis_restart(fault_mesh, crew):
    """Changes made while Redis was down (by an operator's RPC: HTTP answers 503
    then, token checks fail closed) invalidate the caches Redis comes back with."""
    org_id, owner = crew["org_id"], crew["owner"]
    leaver = register(fault_mesh, "leaver")
    added = owner.post(f"/orgs/{org_id}/employees", json={"email": leaver.email, "role": "member"})
    assert added.status_code == 201, added.text
    query = {"q": f"during-outage-{uuid.uuid4().hex[:6]}"}
    assert owner.get(f"/orgs/{org_id}/tasks", params=query).json()["items"] == []  # cached
    assert leaver.get(f"/orgs/{org_id}/tasks", params=query).status_code == 200  # membership cached
    staff_before = len(employees(owner, org_id))

    fault_mesh.redis_server.stop()  # a snapshot of every cached entry is saved
    try:
        actor = rpc(fault_mesh, "employees", "get_membership", org_id, owner.user_id)
        rpc(fault_mesh, "tasks", "create_task", owner.user_id, org_id, {"title": query["q"]})
        rpc(fault_mesh, "employees", "remove_employee", actor["user_id"], org_id, added.json()["employee_id"])
    finally:
        fault_mesh.redis_server.start()  # ... and comes back with the restart
    fault_mesh.wait_healthy(timeout=30)

    assert [t["title"] for t in owner.get(f"/orgs/{org_id}/tasks", params=query).json()["items"]] \
        == [query["q"]]
    assert leaver.get(f"/orgs/{org_id}/tasks", params=query).status_code == 404
    assert len(employees(owner, org_id)) == staff_before - 1


def _health(running):
    try:
        response = running.get("/health")
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 503 else None
