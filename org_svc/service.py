"""The organizations service: entrypoints only (the work of several steps is in
``org_svc.flows``, the rules in ``org_svc.domain``)."""
from __future__ import annotations

from org_svc import domain
from org_svc.flows import OrgFlows
from org_svc.schemas import (
    OrgCreateSchema,
    OrgUpdateSchema,
    SettingsSchema,
    SubscriptionUpdateSchema,
    TransferSchema,
)
from org_svc.store import OrganizationStore
from shared import service as base
from shared.errors import NotFound, ValidationFailed
from shared.events import derived_event_id, handles
from shared.mongo import Mongo
from shared.pagination import PageArgsSchema, decode_cursor, page
from shared.rpc import ServiceRpc, rpc
from shared.versions import require_version


class OrganizationService(base.ServiceBase):
    name = "organizations"

    store = Mongo(OrganizationStore)
    auth = ServiceRpc("auth", methods=("get_users",))
    employees = ServiceRpc("employees", methods=(
        "add_owner", "close_org", "find_successor", "get_employee_by_user", "get_membership",
        "transfer_ownership"))

    @property
    def flows(self) -> OrgFlows:
        return OrgFlows(self)

    # --- reads (cached) -----------------------------------------------------------
    @rpc
    def get_org(self, org_id: str) -> dict:
        """The org with settings (notification defaults included), plan, limits, counts."""
        return self.flows.org(org_id)

    @rpc
    def list_orgs_for_user(self, user_id: str, query: dict | None = None) -> dict:
        query = PageArgsSchema().load(query or {})
        orgs = self.flows.orgs_of_user(user_id, decode_cursor(query.get("cursor")), query["limit"] + 1)
        return page(orgs, query["limit"], dict, key=lambda o: (o["org_id"],))

    @rpc
    def check_plan_limit(self, org_id: str, resource: str, current: int | None = None) -> None:
        """Raise PlanLimitExceeded (403 plan-limit) if one more team/employee is too many.
        ``current``: the caller's own count, when it has one (the org's counts follow
        events, so a burst of creations would get past them)."""
        org = self.flows.org(org_id)
        sub = org["subscription"]
        count = org["counts"].get(resource, 0) if current is None else int(current)
        domain.check_limit(sub["plan"], sub["limits"], resource, count)

    @rpc
    def get_subscription(self, org_id: str) -> dict:
        org = self.flows.org(org_id)
        return {**org["subscription"], "usage": org["counts"]}

    # --- writes: org-scoped ones take (user_id, org_id, ...) and authorize here, first ---
    @rpc
    def create_org(self, user_id: str, body: dict) -> dict:
        body = OrgCreateSchema().load(body)
        user = (self.auth.get_users([user_id]) or [{}])[0]
        flows = self.flows
        doc = flows.create(domain.new_org_id(), body["name"], user_id, user, personal=False,
                           settings=body.get("settings"))
        return flows.answer(doc)

    @rpc
    def update_org(self, user_id: str, org_id: str, body: dict,
                   if_version: int | None = None) -> dict:
        """``if_version``: the version the client saw (If-Match); 412 if it moved on."""
        flows = self.flows
        flows.authorize(org_id, user_id, "org.update")
        body = OrgUpdateSchema().load(body)
        doc = flows.update(org_id, {"name": body["name"]}, if_version)
        self.events.publish("organization.updated", {"org_id": org_id, "name": doc["name"],
                                                     "changes": body},
                            org_id=org_id, actor_id=user_id)
        return flows.answer(doc)

    @rpc
    def delete_org(self, user_id: str, org_id: str, if_version: int | None = None) -> None:
        flows = self.flows
        flows.authorize(org_id, user_id, "org.delete")
        flows.delete(org_id, user_id, if_version=if_version)

    @rpc
    def update_settings(self, user_id: str, org_id: str, body: dict,
                        if_version: int | None = None) -> dict:
        """``if_version``: the org's version the client saw (If-Match on settings)."""
        flows = self.flows
        flows.authorize(org_id, user_id, "org.settings.update")
        changes = SettingsSchema().load(body)
        current = self.store.org(org_id)
        if current is None:
            raise NotFound("Organization not found.")
        require_version(current, if_version)
        settings = domain.merge_settings(current.get("settings"), changes)
        flows.update(org_id, {"settings": settings}, if_version)
        self.events.publish("organization.settings.updated",
                            {"org_id": org_id, "settings": settings},
                            org_id=org_id, actor_id=user_id)
        return settings

    @rpc
    def transfer_ownership(self, user_id: str, org_id: str, body: dict) -> dict:
        flows = self.flows
        flows.authorize(org_id, user_id, "org.transfer")
        body = TransferSchema().load(body)
        target = self.employees.get_employee_by_user(org_id, body["user_id"])
        if not target or target["status"] != "active" or body["user_id"] == user_id:
            raise ValidationFailed("The new owner must be another active employee.",
                                   errors={"user_id": ["Not another active employee."]})
        doc = flows.hand_over(org_id, user_id, body["user_id"], user_id)
        return flows.answer(doc)

    # --- operator (``ops.cli set-plan`` or a billing hook): no HTTP route --------
    @rpc
    def set_plan(self, org_id: str, plan: str) -> dict:
        """Move the org to ``plan``; 409 if it does not fit. Plans are billing's
        business: owners cannot pick the unlimited one themselves."""
        plan = SubscriptionUpdateSchema().load({"plan": plan})["plan"]
        flows = self.flows
        org = flows.org(org_id)
        limits = domain.limits_of(self.config, plan)
        domain.check_downgrade(plan, limits, org["counts"])
        flows.update(org_id, {"plan": plan})
        self.events.publish("organization.updated", {"org_id": org_id, "name": org["name"],
                                                     "changes": {"plan": plan}},
                            org_id=org_id, actor_id=None)
        return {"plan": plan, "limits": limits, "usage": org["counts"]}

    # --- events -------------------------------------------------------------------
    @handles("auth", "user.registered")
    def on_user_registered(self, event: dict) -> None:
        data = event["data"]
        name = f"{data.get('name') or data['email'].split('@')[0]}'s workspace"[:100]
        self.flows.create(domain.personal_org_id(data["user_id"]), name, data["user_id"], data,
                     personal=True, eid=derived_event_id("personal", data["user_id"]))

    @handles("auth", "user.deleted")
    def on_user_deleted(self, event: dict) -> None:
        user_id, flows = event["data"]["user_id"], self.flows
        for org in self.store.owned_by(user_id):
            successor = self.employees.find_successor(org["_id"], user_id)
            if successor:
                flows.hand_over(org["_id"], user_id, successor["user_id"], None,
                                eid=derived_event_id(event["event_id"], org["_id"]))
            else:
                flows.delete(org["_id"], None, eid=derived_event_id(event["event_id"], org["_id"]))

    @handles("employees", "employee.added")
    def on_employee_added(self, event: dict) -> None:
        self.flows.member(event["data"], "active")

    @handles("employees", "employee.status.changed")
    def on_employee_status_changed(self, event: dict) -> None:
        self.flows.member(event["data"], event["data"]["new_status"])

    @handles("employees", "employee.removed")
    def on_employee_removed(self, event: dict) -> None:
        self.flows.member(event["data"], "removed")

    @handles("teams", "team.created")
    def on_team_created(self, event: dict) -> None:
        self.flows.team(event["data"], present=True)

    @handles("teams", "team.deleted")
    def on_team_deleted(self, event: dict) -> None:
        self.flows.team(event["data"], present=False)
