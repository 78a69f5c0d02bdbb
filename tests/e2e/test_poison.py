"""A poison event in the running mesh: parked after its retries, the flows keep
working, and the operator CLI lists it, replays it (it fails again and is parked
again: never a loop) and purges it."""
import json
import uuid

from kombu import Connection, Exchange

from shared.events import make_envelope
from tests.e2e.test_flows import personal_org, register
from tests.e2e.test_mesh_health import run_cli
from tests.helpers import wait_until

HANDLERS = {"employees.on_task_assigned", "notifications.on_task_assigned"}


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
    event_id = publish_poison(running_mesh)
    found = wait_until(lambda: (lambda p: set(p) == HANDLERS and p)(parked(running_mesh, event_id)),
                       timeout=30, interval=0.5, what="the poison event in both dead-letter queues")
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
    assert replayed.returncode == 0 and "replayed 2 message(s)" in replayed.stdout, replayed.stdout
    # still poison: it runs through its retries again and is parked again, once per handler
    wait_until(lambda: parked(running_mesh, event_id) == {h: 5 for h in HANDLERS}, timeout=30,
               interval=0.5, what="the replayed poison event to be parked again")

    purged = run_cli(running_mesh, "dead-letters", "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert parked(running_mesh, event_id) == {}
