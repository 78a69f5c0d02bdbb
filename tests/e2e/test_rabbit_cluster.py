"""The mesh on a 3-node RabbitMQ cluster (tests/e2e/servers.py PrivateRabbitCluster),
given every node in AMQP_URI (kombu's failover list) and quorum queues for events,
retries, dead letters and the rpc-<service> queues. The node every service is
connected to (the first of the list) is stopped during a bulk job and a
registration flow: nothing is lost, nothing is done twice."""
import os
import time
import uuid

import eventlet
import pytest

from tests.e2e.conftest import started_mesh
from tests.e2e.mailbox import text_of
from tests.e2e.servers import PrivateRabbitCluster
from tests.e2e.test_flows import bulk_job_under_way, crew_of, employees, personal_org, register
from tests.helpers import wait_until

pytestmark = pytest.mark.faults

CREW = 8  # the free plan holds 10 employees: the owner and these
CHUNK = 2  # tasks per bulk chunk: a job is several events, so the stop lands mid-job


@pytest.fixture(scope="module")
def cluster_mesh(mongo_uri, tmp_path_factory, mailbox):
    cluster = PrivateRabbitCluster()
    try:
        cluster.start()
        with started_mesh(mongo_uri, tmp_path_factory.mktemp("cluster-logs"), gateways=1,
                          AMQP_URI=cluster.uri, EVENT_QUEUE_TYPE="quorum",
                          REDIS_URI=os.environ.get("TEST_REDIS_URI", "redis://127.0.0.1:6379/9"),
                          RPC_TIMEOUT="3",
                          MONGODB_DB_PREFIX=f"clu{uuid.uuid4().hex[:8]}", SMTP_URL=mailbox.url,
                          JWT_KEYS_DIR=str(tmp_path_factory.mktemp("cluster-keys")),
                          TASK_FILES_DIR=str(tmp_path_factory.mktemp("cluster-files")),
                          BCRYPT_ROUNDS="4", RATE_LIMIT_AUTH="100000/60",
                          RATE_LIMIT_BULK="1000/60", TASK_BULK_CHUNK=str(CHUNK),
                          EVENT_LEASE_MS="5000",
                          # the private nodes have no management API to create users with
                          SERVICE_USERS="0") as running:
            running.cluster = cluster
            yield running
    finally:
        cluster.cleanup()


def titled(items, title):
    return sum(title in str(item) for item in items)


def queue_types(cluster, node):
    lines = cluster.ctl(node, "-q", "list_queues", "name", "type").splitlines()
    return dict(line.split("\t") for line in lines if "\t" in line and not line.startswith("name"))


@pytest.mark.timeout(420)
def test_stopping_the_connected_node_mid_bulk_job_and_registration_loses_and_repeats_nothing(
        cluster_mesh, mailbox):
    cluster = cluster_mesh.cluster
    first, survivor = cluster.nodes[0], cluster.nodes[1]
    kinds = queue_types(cluster, survivor)
    durable = {name: kind for name, kind in kinds.items() if not name.startswith("rpc.reply-")}
    assert "rpc-tasks" in durable and set(durable.values()) == {"quorum"}, kinds

    owner = register(cluster_mesh, "lead")
    org_id = personal_org(owner)["org_id"]
    wait_until(lambda: employees(owner, org_id), timeout=30, what="the owner")
    members = crew_of(cluster_mesh, owner, org_id, CREW, pool=4)

    title = f"Through a node loss {uuid.uuid4().hex[:6]}"
    job_url = bulk_job_under_way(owner, org_id, members, title)
    newcomer = register(cluster_mesh, "newcomer", verified=False)  # its flow runs on events now

    stopping = time.monotonic()
    first.stop()  # every service's connection is on this node
    stopped = time.monotonic()
    cluster_mesh.wait_healthy(timeout=120)
    answered = time.monotonic()
    print(f"\ncluster failover: node stop took {stopped - stopping:.1f} s; the mesh answered "
          f"/health again {answered - stopped:.1f} s after the node was down "
          f"({answered - stopping:.1f} s after the stop began)")

    job = wait_until(lambda: (lambda j: j["status"] == "done" and j)(owner.get(job_url).json()),
                     timeout=120, interval=0.25, what="the bulk job to finish")
    assert (job["total"], job["done"], job["failed"]) == (CREW, CREW, 0)

    # the registration: its org, its owner seat, its verification email, once each
    org = personal_org(newcomer)
    wait_until(lambda: employees(newcomer, org["org_id"]), timeout=60, what="the newcomer's seat")
    wait_until(lambda: len(mailbox.messages(newcomer.email)) >= 2, timeout=60,
               what="the newcomer's welcome and verification emails")

    def notified(member):
        return titled(member.get("/notifications", params={"limit": 100}).json()["items"], title)

    wait_until(lambda: all(notified(m) >= 1 for m in members), timeout=90, interval=0.5,
               what="an in-app notification for every assignee")
    wait_until(lambda: all(e["task_counts"]["open"] == 1 for e in employees(owner, org_id)
                           if e["user_id"] != owner.user_id),
               timeout=90, interval=0.5, what="every open task count at 1")
    eventlet.sleep(2)  # would a redelivered copy of an event land now?

    tasks = owner.get(f"/orgs/{org_id}/tasks", params={"q": title, "limit": 100}).json()["items"]
    per_member = [sum(t["assignee_id"] == m.employee_id for t in tasks) for m in members]
    notes = [notified(m) for m in members]
    orgs = newcomer.get("/orgs").json()["items"]
    seats = employees(newcomer, org["org_id"])
    verification = [m for m in mailbox.messages(newcomer.email) if "verify-email" in text_of(m)]
    counts = {"tasks": per_member, "notifications": notes, "orgs": len(orgs),
              "seats": len(seats), "verification mails": len(verification)}
    lost = sum(n == 0 for n in per_member + notes) + (not orgs) + (not seats) + (not verification)
    duplicates = (sum(max(0, n - 1) for n in per_member + notes) + max(0, len(orgs) - 1)
                  + max(0, len(seats) - 1) + max(0, len(verification) - 1))
    print(f"cluster failover: lost {lost}, duplicates {duplicates}: {counts}")
    assert per_member == [1] * CREW and notes == [1] * CREW, counts
    assert (len(orgs), len(seats), len(verification)) == (1, 1, 1), counts
    assert not cluster_mesh.mesh.dead(), cluster_mesh.mesh.last_words()
