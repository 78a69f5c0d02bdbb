"""What the teams/tasks integration tests share: fake ``employees`` and
``organizations`` services (the real ones have their own tests), a listener that
records the events users would notice, and small helpers."""
from __future__ import annotations

import uuid

import pymongo
import requests
from nameko.events import event_handler
from nameko.standalone.events import event_dispatcher
from nameko.testing.services import entrypoint_hook

from shared.events import make_envelope
from shared.rpc import rpc
from tests.tokens import auth_headers

# employee_id -> employee; filled per test (ids are unique per test)
PEOPLE: dict[str, dict] = {}
SEEN: list[dict] = []  # every event the listener got, in order


class FakeEmployees:
    """The contract of docs/events.md and the brief: get_membership, get_employees."""

    name = "employees"

    @rpc
    def get_membership(self, org_id, user_id):
        for p in PEOPLE.values():
            if p["org_id"] == org_id and p["user_id"] == user_id:
                return {**p, "permissions": [], "teams": p.get("teams", {})}
        return None

    @rpc
    def get_employees(self, org_id, employee_ids):
        return [dict(PEOPLE[e]) for e in employee_ids if e in PEOPLE and PEOPLE[e]["org_id"] == org_id]

    @rpc
    def active_org_ids(self, user_id):
        return sorted({p["org_id"] for p in PEOPLE.values()
                       if p["user_id"] == user_id and p["status"] == "active"})


ZONES: dict[str, str] = {}  # org_id -> its settings' time zone (UTC when not set)


class FakeOrganizations:
    """The calls teams and tasks make: these orgs are on a plan with no team limit (the
    limit itself is tested against the real organizations service in test_teams), and
    their settings hold the time zone of ``ZONES``."""

    name = "organizations"

    @rpc
    def check_plan_limit(self, org_id, resource, current=None):
        return None

    @rpc
    def get_org(self, org_id):
        return {"org_id": org_id, "settings": {"timezone": ZONES.get(org_id, "UTC")}}


LISTENED = [
    ("tasks", t) for t in ("task.created", "task.assigned", "task.bulk.assigned",
                           "task.reassigned", "task.updated",
                           "task.status.changed", "task.completed", "task.overdue",
                           "task.deleted", "task.comment.added", "task.attachment.deleted",
                           "task.link.added", "task.link.removed", "task.recurred", "task.time.logged")
] + [
    ("teams", t) for t in ("team.created", "team.updated", "team.deleted", "team.member.added",
                           "team.member.removed", "team.leader.changed",
                           "team.permission.granted", "team.permission.revoked")
]


def _recorder():
    def record(self, payload):
        SEEN.append(payload)
    return record


Listener = type("Listener", (), {
    "name": "listener",
    **{f"on_{svc}_{et.replace('.', '_')}": event_handler(svc, et)(_recorder())
       for svc, et in LISTENED},
})


def make_org(roles: dict[str, str], status: dict[str, str] | None = None) -> tuple[str, dict]:
    """A fresh org with one employee per name: ``{name: employee}``."""
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    people = {}
    for name, role in roles.items():
        emp = {"employee_id": f"emp-{name}-{uuid.uuid4().hex[:8]}", "org_id": org_id,
               "user_id": f"user-{name}-{uuid.uuid4().hex[:8]}", "email": f"{name}@example.com",
               "name": name.title(), "role": role, "status": (status or {}).get(name, "active"),
               "job_title": "engineer"}
        PEOPLE[emp["employee_id"]] = emp
        people[name] = emp
    return org_id, people


def call(container, method, *args):
    with entrypoint_hook(container, method) as hook:
        return hook(*args)


def seen(event_type: str, **match) -> list[dict]:
    return [e for e in SEEN if e["event_type"] == event_type
            and all(e["data"].get(k) == v for k, v in match.items())]


def dispatch(config, producer: str, event_type: str, data: dict, **fields) -> dict:
    envelope = make_envelope(event_type, data, producer=producer, org_id=data.get("org_id"), **fields)
    event_dispatcher(config)(producer, event_type, envelope)
    return envelope


def database(config, service: str):
    return pymongo.MongoClient(config["MONGODB_URI"], tz_aware=True)[
        f"{config['MONGODB_DB_PREFIX']}_{service}"]


def start_api(container_factory, config, services) -> tuple[str, object]:
    """Start ``services`` (the gateway among them) on ``config``, with a fresh event
    record: the API's base URL and ``as_user(person)``, a session signed in as them."""
    SEEN.clear()
    for cls in services:
        container_factory(cls, config).start()

    def as_user(person):
        session = requests.Session()
        session.headers.update(auth_headers(config, person["user_id"]))
        return session
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/v1", as_user


def problem(response, status):
    """The problem+json body of an answer that must have ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    return response.json()
