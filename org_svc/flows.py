"""The organizations service's work of several steps (creating, updating,
deleting, handing over an org; following members and teams), on one worker's
dependencies: the entrypoints in ``service.py`` authorize and validate, then
call one of these. Rules come from :mod:`org_svc.domain`; answers are shaped
by :mod:`org_svc.schemas`."""
from __future__ import annotations

from org_svc import domain, schemas
from shared.errors import NotFound, PreconditionFailed
from shared.mongo import utcnow
from shared.redis import org_version_key
from shared.rpc import ServiceProxy
from shared.service import Flows
from shared.tenancy import require_member
from shared.versions import STALE, expect_version

ORG_CACHE_TTL = 300
USER_ORGS_TTL = 300


def org_key(org_id: str) -> str:
    return f"organizations:org:{org_id}"


def user_orgs_key(user_id: str) -> str:
    return f"organizations:user-orgs:{user_id}"


def user_version_key(user_id: str) -> str:
    return f"organizations:ver:user:{user_id}"


class OrgFlows(Flows):
    uses = ("employees",)
    employees: ServiceProxy

    def authorize(self, org_id: str, user_id: str, action: str) -> dict:
        return require_member(self.redis, self.employees, org_id, user_id, action)

    # --- reads (cached until the org or its counts change) ------------------------
    def org(self, org_id: str) -> dict:
        """The org's answer (settings, plan, limits, counts); 404 when there is none."""
        org = self.redis.cache.get_or_set(org_key(org_id), lambda: self._load(org_id),
                                          ORG_CACHE_TTL, versions=[org_version_key(self.name, org_id)])
        if org is None:
            raise NotFound("Organization not found.")
        return org

    def _load(self, org_id: str) -> dict | None:
        doc = self.store.org(org_id) if isinstance(org_id, str) else None
        return self.answer(doc) if doc else None

    def answer(self, doc: dict) -> dict:
        """The stored org as the API shows it, with its plan's limits."""
        return schemas.dump_org(doc, domain.limits_of(self.config, doc.get("plan", "free")))

    def orgs_of_user(self, user_id: str, after: str | None, count: int) -> list[dict]:
        """Up to ``count`` of the user's orgs past the cursor (deleted ones left out)."""
        ids = self.redis.cache.get_or_set(user_orgs_key(user_id),
                                          lambda: self.store.member_org_ids(user_id),
                                          USER_ORGS_TTL, versions=[user_version_key(user_id)])
        found = []
        for org_id in domain.ids_after(ids, after, count):
            try:
                found.append(self.org(org_id))
            except NotFound:
                continue
        return found

    # --- writes -------------------------------------------------------------------
    def forget(self, org_id: str, *user_ids: str) -> None:
        """After a change: the cached org and these users' org lists (and the gateway's
        cached answers of the org) go stale at once."""
        self.redis.cache.bump_versions([org_version_key(self.name, org_id),
                                        *map(user_version_key, user_ids)])

    def create(self, org_id: str, name: str, owner_id: str, owner: dict, personal: bool,
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
        self.forget(org_id, owner_id)
        self.events.publish("organization.created", data, org_id=org_id, actor_id=owner_id,
                            event_id=eid)
        return doc

    def update(self, org_id: str, fields: dict, if_version: int | None = None) -> dict:
        doc = self.store.update_org(org_id, fields, expect_version(if_version))
        if doc is None and if_version is not None and self.store.org(org_id) is not None:
            raise PreconditionFailed(STALE)
        if doc is None:
            raise NotFound("Organization not found.")
        self.forget(org_id)
        return doc

    def delete(self, org_id: str, actor_id: str | None, eid: str | None = None,
               if_version: int | None = None) -> None:
        if self.store.update_org(org_id, {"deleted_at": utcnow(), "deleted_by": actor_id},
                                 expect_version(if_version)) is None and eid is None:
            if if_version is not None and self.store.org(org_id) is not None:
                raise PreconditionFailed(STALE)
            raise NotFound("Organization not found.")
        self.forget(org_id, *self.store.member_user_ids(org_id))
        self.employees.close_org(org_id)  # every membership ends now, not after the event
        self.events.publish("organization.deleted", {"org_id": org_id}, org_id=org_id,
                            actor_id=actor_id, event_id=eid)

    def hand_over(self, org_id: str, old_id: str, new_id: str, actor_id: str | None,
                  eid: str | None = None) -> dict:
        self.employees.transfer_ownership(org_id, old_id, new_id)  # roles swap first
        doc = self.update(org_id, {"owner_user_id": new_id})
        self.events.publish("organization.owner.changed", {
            "org_id": org_id, "old_owner_user_id": old_id, "new_owner_user_id": new_id},
            org_id=org_id, actor_id=actor_id, event_id=eid)
        return doc

    # --- what other services' events change --------------------------------------
    def member(self, data: dict, status: str) -> None:
        self.store.set_member(data["org_id"], data["user_id"], status)
        self.store.recount(data["org_id"])
        self.forget(data["org_id"], data["user_id"])

    def team(self, data: dict, present: bool) -> None:
        self.store.set_team(data["org_id"], data["team_id"], present)
        self.store.recount(data["org_id"])
        self.forget(data["org_id"])
