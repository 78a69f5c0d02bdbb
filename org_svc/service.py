"""The organizations service: entrypoints only."""
from __future__ import annotations

import logging

from org_svc import domain
from org_svc.schemas import (
    OrgCreateSchema,
    OrgUpdateSchema,
    SettingsSchema,
    SubscriptionUpdateSchema,
    TransferSchema,
)
from org_svc.store import OrganizationStore
from shared import service as base
from shared.errors import NotFound, PreconditionFailed, ValidationFailed
from shared.events import derived_event_id, handles
from shared.mongo import Mongo, utcnow
from shared.pagination import PageArgsSchema, decode_cursor, page
from shared.redis import org_version_key
from shared.rpc import ServiceRpc, rpc
from shared.tenancy import require_member
from shared.versions import STALE, expect_version, require_version

log = logging.getLogger(__name__)

ORG_CACHE_TTL = 300
USER_ORGS_TTL = 300


def org_key(org_id: str) -> str:
    return f"organizations:org:{org_id}"


def user_orgs_key(user_id: str) -> str:
    return f"organizations:user-orgs:{user_id}"


def user_version_key(user_id: str) -> str:
    return f"organizations:ver:user:{user_id}"


class OrganizationService(base.ServiceBase):
    name = "organizations"

    store = Mongo(OrganizationStore)
    auth = ServiceRpc("auth", methods=("get_users",))
    employees = ServiceRpc("employees", methods=(
        "add_owner", "close_org", "find_successor", "get_employee_by_user", "get_membership",
        "transfer_ownership"))

    # --- reads (cached) -----------------------------------------------------------
    @rpc
    def get_org(self, org_id: str) -> dict:
        """The org with settings (notification defaults included), plan, limits, counts."""
        org = self.redis.cache.get_or_set(org_key(org_id), lambda: self._org_out(org_id),
                                          ORG_CACHE_TTL, versions=[org_version_key(self.name, org_id)])
        if org is None:
            raise NotFound("Organization not found.")
        return org

    @rpc
    def list_orgs_for_user(self, user_id: str, query: dict | None = None) -> dict:
        query = PageArgsSchema().load(query or {})
        ids = self.redis.cache.get_or_set(user_orgs_key(user_id),
                                          lambda: self.store.member_org_ids(user_id),
                                          USER_ORGS_TTL, versions=[user_version_key(user_id)])
        ids = domain.ids_after(ids, decode_cursor(query.get("cursor")), query["limit"] + 1)
        orgs = [o for o in map(self._org_or_none, ids) if o]
        return page(orgs, query["limit"], dict, key=lambda o: (o["org_id"],))

    @rpc
    def check_plan_limit(self, org_id: str, resource: str, current: int | None = None) -> None:
        """Raise PlanLimitExceeded (403 plan-limit) if one more team/employee is too many.
        ``current``: the caller's own count, when it has one (the org's counts follow
        events, so a burst of creations would get past them)."""
        org = self.get_org(org_id)
        sub = org["subscription"]
        count = org["counts"].get(resource, 0) if current is None else int(current)
        domain.check_limit(sub["plan"], sub["limits"], resource, count)

    @rpc
    def get_subscription(self, org_id: str) -> dict:
        org = self.get_org(org_id)
        return {**org["subscription"], "usage": org["counts"]}

    # --- writes: org-scoped ones take (user_id, org_id, ...) and authorize here, first ---
    @rpc
    def create_org(self, user_id: str, body: dict) -> dict:
        body = OrgCreateSchema().load(body)
        user = (self.auth.get_users([user_id]) or [{}])[0]
        doc = self._create(domain.new_org_id(), body["name"], user_id, user, personal=False,
                           settings=body.get("settings"))
        return domain.org_out(doc, self.config)

    @rpc
    def update_org(self, user_id: str, org_id: str, body: dict,
                   if_version: int | None = None) -> dict:
        """``if_version``: the version the client saw (If-Match); 412 if it moved on."""
        self._authorize(org_id, user_id, "org.update")
        body = OrgUpdateSchema().load(body)
        doc = self._update(org_id, {"name": body["name"]}, if_version)
        self.events.publish("organization.updated", {"org_id": org_id, "name": doc["name"],
                                                     "changes": body},
                            org_id=org_id, actor_id=user_id)
        return domain.org_out(doc, self.config)

    @rpc
    def delete_org(self, user_id: str, org_id: str, if_version: int | None = None) -> None:
        self._authorize(org_id, user_id, "org.delete")
        self._delete(org_id, user_id, if_version=if_version)

    @rpc
    def update_settings(self, user_id: str, org_id: str, body: dict,
                        if_version: int | None = None) -> dict:
        """``if_version``: the org's version the client saw (If-Match on settings)."""
        self._authorize(org_id, user_id, "org.settings.update")
        changes = SettingsSchema().load(body)
        current = self.store.org(org_id)
        if current is None:
            raise NotFound("Organization not found.")
        require_version(current, if_version)
        settings = domain.merge_settings(current.get("settings"), changes)
        self._update(org_id, {"settings": settings}, if_version)
        self.events.publish("organization.settings.updated",
                            {"org_id": org_id, "settings": settings},
                            org_id=org_id, actor_id=user_id)
        return settings

    @rpc
    def transfer_ownership(self, user_id: str, org_id: str, body: dict) -> dict:
        self._authorize(org_id, user_id, "org.transfer")
        body = TransferSchema().load(body)
        target = self.employees.get_employee_by_user(org_id, body["user_id"])
        if not target or target["status"] != "active" or body["user_id"] == user_id:
            raise ValidationFailed("The new owner must be another active employee.",
                                   errors={"user_id": ["Not another active employee."]})
        doc = self._hand_over(org_id, user_id, body["user_id"], user_id)
        return domain.org_out(doc, self.config)

    # --- operator (``ops.cli set-plan`` or a billing hook): no HTTP route --------
    @rpc
    def set_plan(self, org_id: str, plan: str) -> dict:
        """Move the org to ``plan``; 409 if it does not fit. Plans are billing's
        business: owners cannot pick the unlimited one themselves."""
        plan = SubscriptionUpdateSchema().load({"plan": plan})["plan"]
        org = self.get_org(org_id)
        limits = domain.limits_of(self.config, plan)
        domain.check_downgrade(plan, limits, org["counts"])
        self._update(org_id, {"plan": plan})
        self.events.publish("organization.updated", {"org_id": org_id, "name": org["name"],
                                                     "changes": {"plan": plan}},
                            org_id=org_id, actor_id=None)
        return {"plan": plan, "limits": limits, "usage": org["counts"]}

    # --- events -------------------------------------------------------------------
    @handles("auth", "user.registered")
    def on_user_registered(self, event: dict) -> None:
        data = event["data"]
        name = f"{data.get('name') or data['email'].split('@')[0]}'s workspace"[:100]
        self._create(domain.personal_org_id(data["user_id"]), name, data["user_id"], data,
                     personal=True, eid=derived_event_id("personal", data["user_id"]))

    @handles("auth", "user.deleted")
    def on_user_deleted(self, event: dict) -> None:
        user_id = event["data"]["user_id"]
        for org in self.store.owned_by(user_id):
            successor = self.employees.find_successor(org["_id"], user_id)
            if successor:
                self._hand_over(org["_id"], user_id, successor["user_id"], None,
                                eid=derived_event_id(event["event_id"], org["_id"]))
            else:
                self._delete(org["_id"], None, eid=derived_event_id(event["event_id"], org["_id"]))

    @handles("employees", "employee.added")
    def on_employee_added(self, event: dict) -> None:
        self._member(event["data"], "active")

    @handles("employees", "employee.status.changed")
    def on_employee_status_changed(self, event: dict) -> None:
        self._member(event["data"], event["data"]["new_status"])

    @handles("employees", "employee.removed")
    def on_employee_removed(self, event: dict) -> None:
        self._member(event["data"], "removed")

    @handles("teams", "team.created")
    def on_team_created(self, event: dict) -> None:
        self._team(event["data"], present=True)

    @handles("teams", "team.deleted")
    def on_team_deleted(self, event: dict) -> None:
        self._team(event["data"], present=False)

    # --- helpers (not entrypoints) ------------------------------------------------
    def _authorize(self, org_id: str, user_id: str, action: str) -> dict:
        return require_member(self.redis, self.employees, org_id, user_id, action)

    def _org_out(self, org_id: str) -> dict | None:
        doc = self.store.org(org_id) if isinstance(org_id, str) else None
        return domain.org_out(doc, self.config) if doc else None

    def _org_or_none(self, org_id: str) -> dict | None:
        try:
            return self.get_org(org_id)
        except NotFound:
            return None

    def _forget(self, org_id: str, *user_ids: str) -> None:
        """After a change: the cached org and these users' org lists (and the gateway's
        cached answers of the org) go stale at once."""
        self.redis.cache.bump_versions([org_version_key(self.name, org_id),
                                  *map(user_version_key, user_ids)])

    def _create(self, org_id: str, name: str, owner_id: str, owner: dict, personal: bool,
                settings: dict | None = None, eid: str | None = None) -> dict:
        doc = {"_id": org_id, "name": name, "owner_user_id": owner_id, "personal": personal,
               "settings": domain.merge_settings(None, settings or {}), "plan": "free",
               "employee_count": 1, "team_count": 0, "created_at": utcnow(),
               "deleted_at": None}
        if not self.store.insert_org(doc):
            doc = self.store.org_any(org_id) or doc  # a re-run: announce the stored one
        data = {"org_id": org_id, "name": doc["name"], "owner_user_id": owner_id,
                "owner_email": owner.get("email", ""), "owner_name": owner.get("name", ""),
                "personal": personal}
        # the owner can use the org as soon as this answers, not after the event; and
        # it is listed among their orgs only once they are its employee (a failed
        # add_owner is retried with the handler: no window where /orgs shows an org
        # the gateway's membership check refuses)
        self.employees.add_owner(data)
        self.store.set_member(org_id, owner_id, "active")
        self._forget(org_id, owner_id)
        self.events.publish("organization.created", data, org_id=org_id, actor_id=owner_id,
                            event_id=eid)
        return doc

    def _update(self, org_id: str, fields: dict, if_version: int | None = None) -> dict:
        doc = self.store.update_org(org_id, fields, expect_version(if_version))
        if doc is None and if_version is not None and self.store.org(org_id) is not None:
            raise PreconditionFailed(STALE)
        if doc is None:
            raise NotFound("Organization not found.")
        self._forget(org_id)
        return doc

    def _delete(self, org_id: str, actor_id: str | None, eid: str | None = None,
                if_version: int | None = None) -> None:
        if self.store.update_org(org_id, {"deleted_at": utcnow(), "deleted_by": actor_id},
                                 expect_version(if_version)) is None and eid is None:
            if if_version is not None and self.store.org(org_id) is not None:
                raise PreconditionFailed(STALE)
            raise NotFound("Organization not found.")
        self._forget(org_id, *self.store.member_user_ids(org_id))
        self.employees.close_org(org_id)  # every membership ends now, not after the event
        self.events.publish("organization.deleted", {"org_id": org_id}, org_id=org_id,
                            actor_id=actor_id, event_id=eid)

    def _hand_over(self, org_id: str, old_id: str, new_id: str, actor_id: str | None,
                   eid: str | None = None) -> dict:
        self.employees.transfer_ownership(org_id, old_id, new_id)  # roles swap first
        doc = self._update(org_id, {"owner_user_id": new_id})
        self.events.publish("organization.owner.changed", {
            "org_id": org_id, "old_owner_user_id": old_id, "new_owner_user_id": new_id},
            org_id=org_id, actor_id=actor_id, event_id=eid)
        return doc

    def _member(self, data: dict, status: str) -> None:
        self.store.set_member(data["org_id"], data["user_id"], status)
        self.store.recount(data["org_id"])
        self._forget(data["org_id"], data["user_id"])

    def _team(self, data: dict, present: bool) -> None:
        self.store.set_team(data["org_id"], data["team_id"], present)
        self.store.recount(data["org_id"])
        self._forget(data["org_id"])
