"""The employees service: entrypoints only (the work of several steps is in
``employee_svc.flows``, the rules in ``employee_svc.domain``)."""
from __future__ import annotations

import logging

from employee_svc import domain
from employee_svc.contract import MEMBERSHIP_TTL, membership_key, membership_tag
from employee_svc.flows import EmployeeFlows
from employee_svc.schemas import (
    EmployeeAddSchema,
    EmployeeQuerySchema,
    EmployeeUpdateSchema,
    InvitationQuerySchema,
    dump_employee,
    dump_invitation,
    iso,
)
from employee_svc.store import EmployeeStore
from shared import service as base
from shared.errors import Conflict, NotFound, PreconditionFailed
from shared.events import derived_event_id, handle_each, handles
from shared.mongo import Mongo, utcnow
from shared.pagination import decode_cursor, page
from shared.rpc import ServiceRpc, rpc
from shared.tenancy import require_member
from shared.timers import periodic
from shared.versions import STALE, expect_version, require_version

log = logging.getLogger(__name__)

BATCH = 50  # task events handled together: one read, update and insert of holders, one recount


class EmployeeService(base.ServiceBase):
    name = "employees"

    store = Mongo(EmployeeStore)
    auth = ServiceRpc("auth", methods=("find_user_by_email", "get_users"))
    organizations = ServiceRpc("organizations", methods=("get_org",))

    @property
    def flows(self) -> EmployeeFlows:
        return EmployeeFlows(self)

    # --- contracts other services use -------------------------------------------
    @rpc
    def get_membership(self, org_id: str, user_id: str) -> dict | None:
        def load() -> dict | None:
            doc = self.store.employee_by_user(org_id, user_id)
            return None if doc is None or doc.get("org_deleted") else domain.membership(doc)

        return self.redis.cache.get_or_set(
            membership_key(org_id, user_id), load, ttl=MEMBERSHIP_TTL,
            tags=[membership_tag(org_id, user_id)], cache_none=False)

    @rpc
    def get_employees(self, org_id: str, employee_ids: list[str]) -> list[dict]:
        ids = [i for i in employee_ids or [] if isinstance(i, str)][:1000]
        return [{k: out[k] for k in ("employee_id", "user_id", "org_id", "email", "name",
                                     "role", "status", "job_title")}
                for out in map(dump_employee, self.store.employees_by_ids(org_id, ids))]

    @rpc
    def search_documents(self, org_id: str | None, employee_ids: list[str] | None = None,
                         after: str | None = None, limit: int = 200) -> dict:
        """What the search index holds of employees: those of ``employee_ids`` (missing or
        removed ones are dropped), or a page after ``after`` (one org, or all: a rebuild)."""
        ids = [i for i in employee_ids if isinstance(i, str)][:1000] if employee_ids is not None else None
        limit = max(1, min(int(limit), 1000))
        docs = self.store.search_export(org_id, ids, after, limit)
        return {"items": [{k: out[k] for k in ("employee_id", "org_id", "user_id", "name", "email",
                                               "job_title", "role", "status")}
                          for out in map(dump_employee, docs)],
                "next_after": docs[-1]["_id"] if ids is None and len(docs) == limit else None}

    @rpc
    def get_employee_by_user(self, org_id: str, user_id: str) -> dict | None:
        doc = self.store.employee_by_user(org_id, user_id)
        return self._out(doc) if doc else None

    @rpc
    def find_successor(self, org_id: str, exclude_user_id: str) -> dict | None:
        """An active admin (or co-owner) to hand the org to when its owner leaves."""
        doc = self.store.successor(org_id, exclude_user_id)
        return self._out(doc) if doc else None

    @rpc
    def transfer_ownership(self, org_id: str, old_user_id: str, new_user_id: str) -> None:
        self.flows.apply_owner_change(org_id, old_user_id, new_user_id, actor_id=old_user_id)

    @rpc
    def add_owner(self, data: dict) -> dict:
        """The creator of an org becomes its first employee (organization.created's data);
        called at once by organizations and again by the event: idempotent."""
        user = {"user_id": data["owner_user_id"], "email": data.get("owner_email") or "",
                "name": data.get("owner_name") or ""}
        org = {"org_id": data["org_id"], "name": data.get("name", "")}
        return self._out(self.flows.add_user(None, org, user, {"role": "owner", "job_title": ""},
                                           check_limit=False))

    @rpc
    def close_org(self, org_id: str) -> None:
        """A deleted org has no members any more (called at once, and again by the event)."""
        for doc in self.store.mark_org_deleted(org_id):
            self.flows.invalidate(org_id, doc["user_id"])

    # --- org-scoped operations: (user_id, org_id, ...), authorized here, first -------
    @rpc
    def add_employee(self, user_id: str, org_id: str, body: dict) -> dict:
        actor = self._member(org_id, user_id, "employee.add")
        body = EmployeeAddSchema().load(body)
        domain.check_can_add(actor["role"], body["role"])
        org = self.organizations.get_org(org_id)
        user = self.auth.find_user_by_email(body["email"])
        if domain.may_join(user, body["email"]):
            return {"status": 201, "employee": self._out(self.flows.add_user(actor, org, user, body))}
        if user and self.store.is_member(org_id, user["user_id"]):
            raise Conflict("This user is already an employee of the organization.")
        # an unknown or not yet verified address: an invitation, which becomes a
        # membership once that address is verified (whoever proves it, not whoever
        # registered it first)
        return {"status": 202, "invitation": dump_invitation(self.flows.invite(actor, org, body))}

    @rpc
    def add_service_account(self, user_id: str, org_id: str, account: dict) -> dict:
        """A service account (made by auth) becomes an active member at once: it has
        no mailbox to verify. Its role is at most the adding admin's."""
        actor = self._member(org_id, user_id, "employee.add")
        role = account.get("role") or "member"
        domain.check_can_add(actor["role"], role)
        org = self.organizations.get_org(org_id)
        user = {"user_id": account["user_id"], "email": account["email"],
                "name": account.get("name", ""), "email_verified": True}
        return self._out(self.flows.add_user(actor, org, user,
                                                {"role": role, "job_title": "service account"}))

    @rpc
    def list_employees(self, user_id: str, org_id: str, query: dict) -> dict:
        self._member(org_id, user_id, "employee.read")
        query = EmployeeQuerySchema().load(query)
        docs = self.store.list_employees(
            org_id, role=query.get("role"), status=query.get("status"),
            team_id=query.get("team_id"), terms=domain.search_terms(query.get("q", "")),
            after=decode_cursor(query.get("cursor")), limit=query["limit"])
        return page(self.store.with_counts(docs), query["limit"], dump_employee)

    @rpc
    def get_employee(self, user_id: str, org_id: str, employee_id: str) -> dict:
        self._member(org_id, user_id, "employee.read")
        return self._out(self.flows.employee(org_id, employee_id))

    @rpc
    def update_employee(self, user_id: str, org_id: str, employee_id: str, body: dict,
                        if_version: int | None = None) -> dict:
        """What may change depends on what changes (one's own job title, another's
        details, a role): the member is checked first, the changes after validation.
        ``if_version``: the version the client saw (If-Match); 412 if it moved on."""
        actor = self._member(org_id, user_id, None)
        body = EmployeeUpdateSchema().load(body)
        target = self.flows.employee(org_id, employee_id)
        changes = domain.changes_of(target, body)
        domain.check_update(actor, target, changes, self.store.owner_count(org_id))
        if_version = self.store.own_version(target, if_version)
        require_version(target, if_version)
        if not changes:
            return self._out(target)
        fields = dict(changes)
        if "job_title" in changes:
            fields["keywords"] = domain.keywords(target.get("name", ""), target["email"],
                                                 changes["job_title"])
        def write(session):  # the change and its events, together
            doc = self.store.update_employee(org_id, employee_id, fields, session=session,
                                             expect={"status": target["status"],
                                                     **expect_version(if_version)})
            if doc is None and if_version is not None:  # changed (or removed) meanwhile
                raise PreconditionFailed(STALE)
            if doc is None:  # removed meanwhile
                raise NotFound("Employee not found.")
            self.flows.publish_update(actor["user_id"], target, doc, changes, session)
            return doc

        doc = self.store.run_transaction(write)
        self.flows.invalidate(org_id, doc["user_id"])
        return self._out(doc)

    @rpc
    def remove_employee(self, user_id: str, org_id: str, employee_id: str,
                        if_version: int | None = None) -> None:
        actor = self._member(org_id, user_id, "employee.remove")
        target = self.flows.employee(org_id, employee_id)
        domain.check_remove(actor, target, self.store.owner_count(org_id))
        if_version = self.store.own_version(target, if_version)
        require_version(target, if_version)
        self.flows.remove(target, actor["user_id"], if_version=if_version)

    @rpc
    def list_invitations(self, user_id: str, org_id: str, query: dict) -> dict:
        self._member(org_id, user_id, "invitation.manage")
        query = InvitationQuerySchema().load(query)
        docs = self.store.list_invitations(org_id, decode_cursor(query.get("cursor")),
                                           query["limit"])
        return page(docs, query["limit"], dump_invitation)

    @rpc
    def my_invitations(self, user_id: str, query: dict) -> dict:
        """The pending invitations to the caller's address (joined once it is verified)."""
        query = InvitationQuerySchema().load(query)
        user = (self.auth.get_users([user_id]) or [None])[0]
        if user is None:
            return {"items": [], "next_cursor": None}
        docs = self.store.invitations_for_email(user["email"].lower(), utcnow(),
                                                decode_cursor(query.get("cursor")),
                                                query["limit"])
        return page(docs, query["limit"], dump_invitation)

    @rpc
    def active_org_ids(self, user_id: str) -> list[str]:
        """The orgs where the user is an active employee (and that still exist)."""
        return self.store.active_org_ids(user_id)

    @rpc
    def revoke_invitation(self, user_id: str, org_id: str, invitation_id: str) -> None:
        self._member(org_id, user_id, "invitation.manage")
        invitation = self.store.invitation(org_id, invitation_id)
        if invitation is None or not self.store.close_invitation(
                invitation_id, "revoked", {"revoked_by": user_id,
                                           "revoked_at": utcnow()}):
            raise NotFound("Invitation not found.")
        self.flows.changed(org_id)

    @periodic(interval=60, config_key="EMPLOYEE_INVITATION_SWEEP_INTERVAL")
    def expire_invitations(self) -> int:
        """Pending invitations past their expiry become ``expired`` (so they stop holding a
        seat and leave the list) with ``employee.invitation.expired``; the conditional
        update makes each expire once, whichever replica gets there first."""
        at = utcnow()
        expired = [i for i in self.store.expired_invitations(at)
                   if self.store.expire_invitation(i["_id"], at)]
        for invitation in expired:
            self.events.publish("employee.invitation.expired", {
                "org_id": invitation["org_id"], "invitation_id": invitation["_id"],
                "email": invitation["email"], "role": invitation["role"],
                "expires_at": iso(invitation["expires_at"]),
                "invited_by_user_id": invitation.get("invited_by_user_id")},
                org_id=invitation["org_id"],
                event_id=derived_event_id("invitation.expired", invitation["_id"],
                                          iso(invitation["expires_at"]) or ""))
        return len(expired)

    @rpc
    def accept_invitation(self, user_id: str, token: str) -> dict:
        invitation = self.store.invitation_by_token(domain.hash_token(str(token)))
        users = self.auth.get_users([user_id]) if invitation else []
        domain.check_acceptance(invitation, (users or [None])[0], utcnow())
        return self._out(self.flows.join(invitation, users[0]))

    # --- events -----------------------------------------------------------------
    @handles("organizations", "organization.created")
    def on_org_created(self, event: dict) -> None:
        self.add_owner(event["data"])

    @handles("organizations", "organization.owner.changed")
    def on_owner_changed(self, event: dict) -> None:
        data = event["data"]
        self.flows.apply_owner_change(data["org_id"], data.get("old_owner_user_id"),
                                 data["new_owner_user_id"], actor_id=event.get("actor_id"))

    @handles("organizations", "organization.deleted")
    def on_org_deleted(self, event: dict) -> None:
        self.close_org(event["data"]["org_id"])

    @handles("auth", "user.email.verified")
    def on_email_verified(self, event: dict) -> None:
        """The address is proven: its pending invitations become memberships, for the
        account that holds it verified now (auth is asked: the event may be old)."""
        data = event["data"]
        self.flows.sync_user(data["user_id"], {"email_verified": True})
        user = (self.auth.get_users([data["user_id"]]) or [None])[0]
        if not domain.may_join(user, data["email"]):
            return
        for invitation in self.store.invitations_to_join(user["email"].lower(),
                                                         user["user_id"], utcnow()):
            self.flows.join(invitation, user)

    @handles("auth", "user.updated")
    def on_user_updated(self, event: dict) -> None:
        data = event["data"]
        fields = {k: data[k] for k in ("name", "email", "email_verified") if k in data}
        if "email" in fields:
            fields["email"] = fields["email"].lower()
        self.flows.sync_user(data["user_id"], fields)

    @handles("auth", "user.deleted")
    def on_user_deleted(self, event: dict) -> None:
        for doc in self.store.employees_of_user(event["data"]["user_id"]):
            if doc["status"] != "removed":
                self.flows.remove(doc, None, eid=derived_event_id(event["event_id"], doc["_id"]))

    @handles("teams", "team.member.added")
    def on_team_member_added(self, event: dict) -> None:
        data = event["data"]
        role = "leader" if data.get("role") == "leader" else "member"
        self.flows.set_team(data["org_id"], data["employee_id"], data["team_id"], role)

    @handles("teams", "team.member.removed")
    def on_team_member_removed(self, event: dict) -> None:
        data = event["data"]
        self.flows.set_team(data["org_id"], data["employee_id"], data["team_id"], None)

    @handles("teams", "team.leader.changed")
    def on_team_leader_changed(self, event: dict) -> None:
        data = event["data"]
        if data.get("old_leader_id"):
            doc = self.store.set_team_role_if_member(data["org_id"], data["old_leader_id"],
                                                     data["team_id"], "member")
            if doc:
                self.flows.invalidate(data["org_id"], doc["user_id"])
        if data.get("new_leader_id"):
            self.flows.set_team(data["org_id"], data["new_leader_id"], data["team_id"], "leader")

    @handles("tasks", "task.bulk.assigned", bulk=True)
    def on_task_bulk_assigned(self, event: dict) -> None:
        data = event["data"]  # a bulk chunk: one write for the tasks, one for the counts
        self.store.add_new_tasks(data["org_id"], data["tasks"])
        self.store.recount_tasks_of(data["org_id"], {t["assignee_id"] for t in data["tasks"]})
        self.flows.changed(data["org_id"])

    # --- helpers (not entrypoints) ----------------------------------------------
    def _track_tasks(self, events: list[dict]) -> None:
        self.flows.track_tasks(events)

    def _out(self, doc: dict) -> dict:
        """An employee as answered, with its task counts (kept in their own collection)."""
        return dump_employee(self.store.with_counts([doc])[0])

    def _member(self, org_id: str, user_id: str, action: str | None) -> dict:
        """The caller's membership (404 outside the org, 403 without ``action``),
        read from this service's own cache or store."""
        return require_member(self.redis, self, org_id, user_id, action)


# one durable queue per task event (on_task_assigned, ...), in batches
handle_each(EmployeeService, [("tasks", event_type) for event_type in (
    "task.assigned", "task.reassigned", "task.completed", "task.status.changed",
    "task.deleted")], "_track_tasks", "Track the holder and counts after", batch=BATCH)
