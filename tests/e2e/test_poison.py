"""A poison event in the running mesh: parked after its retries, the flows keep
working, and the operator CLI lists it, replays it (it fails again and is parked
again: never a loop) and purges it."""
import json
import uuid

import requests
from kombu import Connection, Exchange

from shared.events import make_envelope
from tests.e2e.test_flows import personal_org, register
from tests.e2e.test_mesh_health import run_cli
from tests.helpers import wait_until


def handlers_of(mesh, event_type) -> set[str]:
    """Every handler of ``event_type`` in the running mesh (``service.method``), read off
    its queues (``evt-{producer}-{event}--{service}.{method}``): audit, analytics, search,
    webhooks and the rest, whoever consumes it."""
    url = mesh.env.get("RABBITMQ_MANAGEMENT_URL") or "http://127.0.0.1:15672"
    vhost = mesh.env["AMQP_URI"].rsplit("/", 1)[1]
    names = [q["name"] for q in requests.get(f"{url}/api/queues/{vhost}", auth=("guest", "guest"),
                                             timeout=10).json()]
    return {name.rpartition("--")[2] for name in names
            if name.startswith(f"evt-tasks-{event_type}--") and "." in name.rpartition("--")[2]
            and not name.endswith((".dlq",)) and ".retry." not in name}


def publish_poison(mesh) -> str:
    """What a buggy producer might send: a task.assigned whose data is not an object."""
    envelope = make_envelope("task.assigned", "not an object", producer="tasks", org_id="nowhere")
    with Connection(mesh.env["AMQP_URI"]) as conn:
        exchange = Exchange("tasks.events", type="topic", durable=True)
        conn.Producer().publish(envelope, exchange=exchange, routing_key="task.assigned",
                                serializer="json", delivery_mode=2, declare=[exchange])
    return envelope["event_id"]


def parked(mesh, event_id) -> dict:
    """{handler: attempts} of the dead letters of this event."""
    listed = run_cli(mesh, "dead-letters", "list", "--json", "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    return {item["handler"]: item["attempts"] for item in json.loads(listed.stdout)
            if item["event_id"] == event_id}


def test_a_poison_event_is_parked_listed_replayed_and_purged(running_mesh):
    # audit keeps any envelope as it came, and webhooks pass it on as it is (no endpoint
    # here): they take it; every handler that reads its data parks it
    takers = {"audit.on_task_assigned", "webhooks.on_task_assigned"}
    handlers = handlers_of(running_mesh, "task.assigned") - takers
    assert {"employees.on_task_assigned", "notifications.on_task_assigned",
            "analytics.on_task_assigned", "search.on_task_assigned"} <= handlers, handlers
    event_id = publish_poison(running_mesh)
    found = wait_until(lambda: (lambda p: set(p) == handlers and p)(parked(running_mesh, event_id)),
                       timeout=30, interval=0.5, what="the poison event in every handler's dead letters")
    assert set(found.values()) == {5}  # EVENT_MAX_ATTEMPTS, then parked

    # the mesh keeps working: a task assigned now is counted and notified
    owner, member = register(running_mesh, "poisoned"), register(running_mesh, "member")
    org_id = personal_org(owner)["org_id"]
    added = owner.post(f"/orgs/{org_id}/employees", json={"email": member.email, "role": "member"})
    assert added.status_code == 201, added.text
    title = f"After the poison {uuid.uuid4().hex[:6]}"
    assert owner.post(f"/orgs/{org_id}/tasks", json={
        "title": title, "assignee_id": added.json()["employee_id"]}).status_code == 201
    wait_until(lambda: title in str(member.get("/notifications").json()["items"]), timeout=20,
               what="the notification of a task assigned after the poison event")
    wait_until(lambda: owner.get(f"/orgs/{org_id}/employees/{added.json()['employee_id']}")
               .json()["task_counts"]["open"] == 1, timeout=20, what="the task count")

    replayed = run_cli(running_mesh, "dead-letters", "replay", "--event-id", event_id)
    assert replayed.returncode == 0 and f"replayed {len(handlers)} message(s)" in replayed.stdout, \
        replayed.stdout
    # still poison: it runs through its retries again and is parked again, once per handler
    wait_until(lambda: parked(running_mesh, event_id) == {h: 5 for h in handlers}, timeout=30,
               interval=0.5, what="the replayed poison event to be parked again")

    purged = run_cli(running_mesh, "dead-letters", "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert parked(running_mesh, event_id) == {}
