"""Neighbours of the organizations and employees services, faked as small
nameko services: ``auth`` answers the user look-ups and publishes user events,
``teams`` and ``tasks`` publish their events (all through the real outbox and
RabbitMQ), so the services under test see exactly what the real ones send."""
from __future__ import annotations

import uuid

from nameko.testing.services import entrypoint_hook

from employee_svc.service import EmployeeService
from org_svc.service import OrganizationService
from shared import service as base
from shared.rpc import rpc


class Emitter(base.ServiceBase):
    @rpc
    def emit(self, event_type: str, data: dict, org_id: str | None = None,
             event_id: str | None = None) -> str:
        return self.events.publish(event_type, data, org_id=org_id or data.get("org_id"),
                                   event_id=event_id)["event_id"]

    @rpc
    def emit_many(self, event_type: str, datas: list[dict],
                  event_ids: list[str | None] | None = None) -> list[str]:
        """Published together, in order (the ids: new ones where ``event_ids`` has None)."""
        return [self.events.publish(event_type, data, org_id=data.get("org_id"),
                                    event_id=event_id)["event_id"]
                for data, event_id in zip(datas, event_ids or [None] * len(datas), strict=True)]


class FakeAuth(Emitter):
    name = "auth"
    users: dict[str, dict] = {}

    @rpc
    def find_user_by_email(self, email: str) -> dict | None:
        return next((u for u in FakeAuth.users.values() if u["email"] == email.lower()), None)

    @rpc
    def get_users(self, user_ids: list[str]) -> list[dict]:
        return [FakeAuth.users[u] for u in user_ids if u in FakeAuth.users]


class FakeTeams(Emitter):
    name = "teams"


class FakeTasks(Emitter):
    name = "tasks"


class Mesh:
    """The two services under test plus their fakes, on one test's vhost."""

    def __init__(self, container_factory, config, with_orgs: bool = True):
        self.config = config
        self.containers = {}
        classes = [EmployeeService, FakeAuth, FakeTeams, FakeTasks]
        if with_orgs:
            classes.insert(0, OrganizationService)
        for cls in classes:
            container = container_factory(cls, config)
            container.start()
            self.containers[cls.name] = container

    def call(self, service: str, method: str, *args, **kwargs):
        with entrypoint_hook(self.containers[service], method) as hook:
            return hook(*args, **kwargs)

    def emit(self, service: str, event_type: str, data: dict, **kwargs) -> str:
        return self.call(service, "emit", event_type, data, **kwargs)

    def store(self, service: str):
        from shared.mongo import Mongo
        container = self.containers[service]
        return next(d for d in container.dependencies if isinstance(d, Mongo)).store

    def redis(self, service: str):
        from shared.redis import Redis
        container = self.containers[service]
        return next(d for d in container.dependencies if isinstance(d, Redis)).client

    def register(self, unique: str, name: str = "Ada Lovelace", verified: bool = True,
                 publish: bool = True) -> dict:
        """A user known to auth; with ``publish`` also its user.registered event."""
        user_id = uuid.uuid4().hex
        user = {"user_id": user_id, "email": f"{name.split()[0].lower()}-{unique}-"
                f"{user_id[:6]}@example.com", "name": name, "email_verified": verified}
        FakeAuth.users[user_id] = user
        if publish:
            self.emit("auth", "user.registered", {**user, "sealed_link": "s"})
        return user
