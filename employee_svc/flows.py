"""The employees service's work of several steps (adding, inviting, joining,
removing, owner changes, the task counts), on one worker's dependencies: the
entrypoints in ``service.py`` authorize and validate, then call one of these.
Rules come from :mod:`employee_svc.domain`; queries from the store."""
from __future__ import annotations

import logging

from employee_svc import domain
from employee_svc.contract import membership_tag
from shared.errors import Conflict, NotFound, PlanLimitExceeded, PreconditionFailed, RateLimited
from shared.events import derived_event_id
from shared.mongo import utcnow
from shared.redis import Limit, org_version_key
from shared.sealed import seal
from shared.service import Flows
from shared.versions import STALE, expect_version

log = logging.getLogger(__name__)


class EmployeeFlows(Flows):

    def employee(self, org_id: str, employee_id: str) -> dict:
        doc = self.store.employee(org_id, employee_id) if isinstance(employee_id, str) else None
        if doc is None or doc["status"] == "removed":
            raise NotFound("Employee not found.")
        return doc

    def invalidate(self, org_id: str, user_id: str) -> None:
        """The membership cache entry goes now; cached lists of the org go stale."""
        self.redis.cache.invalidate_tags(membership_tag(org_id, user_id))
        self.changed(org_id)

    def changed(self, org_id: str) -> None:
        self.redis.cache.bump_versions([org_version_key(self.name, org_id)])

    def check_seats(self, org: dict) -> None:
        limit = ((org.get("subscription") or {}).get("limits") or {}).get("employees")
        if limit is not None and self.store.seat_count(org["org_id"]) >= limit:
            raise PlanLimitExceeded(
                f"The {org['subscription']['plan']} plan allows {limit} employees; "
                "upgrade the subscription to add more.", limit=limit, resource="employees")

    def add_user(self, actor: dict | None, org: dict, user: dict, body: dict,
                  check_limit: bool = True) -> dict:
        existing = self.store.employee_by_user(org["org_id"], user["user_id"])
        if existing and existing["status"] != "removed" and actor is not None:
            raise Conflict("This user is already an employee of the organization.")
        if check_limit:
            self.check_seats(org)
        email = user["email"].lower()
        doc = {"_id": domain.new_id(), "org_id": org["org_id"], "user_id": user["user_id"],
               "email": email, "name": user.get("name", ""), "role": body["role"],
               "job_title": body.get("job_title", ""), "status": "active",
               "email_verified": bool(user.get("email_verified")), "teams": {},
               "team_ids": [],
               "keywords": domain.keywords(user.get("name", ""), email,
                                           body.get("job_title", "")),
               "created_at": utcnow(), "org_name": org.get("name", "")}
        doc, created = self.store.upsert_employee(doc)
        if created:
            self.invalidate(org["org_id"], user["user_id"])
        self.events.publish("employee.added", {
            "org_id": doc["org_id"], "employee_id": doc["_id"], "user_id": doc["user_id"],
            "email": doc["email"], "name": doc.get("name", ""), "role": doc["role"],
            "job_title": doc.get("job_title", ""), "org_name": org.get("name", "")},
            org_id=doc["org_id"], actor_id=actor and actor["user_id"],
            event_id=derived_event_id("employee.added", doc["_id"], str(doc["created_at"])))
        return doc

    def check_invitation_rate(self, org_id: str, email: str) -> None:
        """Invitation emails are limited per org and per address (anti-spam); the
        address is hashed into the key, so Redis holds no list of addresses."""
        limits = {**domain.INVITE_RATE, **(self.config.get("INVITATION_RATE_LIMITS") or {})}
        for scope, key in (("address", domain.hash_token(email)), ("org", org_id)):
            decision = self.redis.limiter.hit(f"employees:invite-rate:{scope}:{key}",
                                              Limit.parse(limits[scope]))
            if not decision.allowed:
                raise RateLimited(domain.INVITE_RATE_REFUSED[scope], headers=decision.headers())

    def invite(self, actor: dict, org: dict, body: dict) -> dict:
        email = body["email"].lower()
        token, token_hash = domain.new_invitation_token()
        expires_at = utcnow() + domain.INVITATION_TTL
        doc = self.store.pending_invitation(org["org_id"], email)
        if doc is None:
            self.check_seats(org)
        self.check_invitation_rate(org["org_id"], email)  # before anything changes
        if doc:  # re-send: a fresh token; the old one stops working
            doc = self.store.refresh_invitation(doc["_id"], {
                "token_hash": token_hash, "expires_at": expires_at, "role": body["role"],
                "job_title": body["job_title"]}) or doc
        else:
            doc = self.store.insert_invitation({
                "_id": domain.new_id(), "org_id": org["org_id"], "email": email,
                "role": body["role"], "job_title": body["job_title"], "status": "pending",
                "token_hash": token_hash, "expires_at": expires_at,
                "invited_by_user_id": actor["user_id"], "org_name": org.get("name", ""),
                "created_at": utcnow()})
        accept_url = (f"{self.config.get('PUBLIC_URL', '').rstrip('/')}"
                      f"/invitations/{token}")  # the web console's page
        sealed_link = seal(self.config, accept_url, domain.INVITATION_TTL.total_seconds())
        self.events.publish("employee.invited", {
            "org_id": org["org_id"], "invitation_id": doc["_id"], "email": email,
            "role": doc["role"], "sealed_link": sealed_link,
            "invited_by_user_id": actor["user_id"], "org_name": org.get("name", "")},
            org_id=org["org_id"], actor_id=actor["user_id"])
        return doc

    def join(self, invitation: dict, user: dict) -> dict:
        """An invitation becomes a membership (once: the close is conditional)."""
        claimed = self.store.close_invitation(invitation["_id"], "accepted", {
            "accepted_by_user_id": user["user_id"], "accepted_at": utcnow()})
        if not claimed and invitation.get("accepted_by_user_id") != user["user_id"]:
            raise NotFound("Invitation not found or already used.")
        org = {"org_id": invitation["org_id"], "name": invitation.get("org_name", "")}
        body = {"role": invitation["role"], "job_title": invitation.get("job_title", "")}
        return self.add_user(None, org, user, body, check_limit=False)

    def remove(self, target: dict, by_user_id: str | None, eid: str | None = None,
               if_version: int | None = None) -> None:
        def write(session):
            doc = self.store.update_employee(target["org_id"], target["_id"], {
                "status": "removed", "removed_at": utcnow(), "removed_by": by_user_id},
                expect={"status": {"$ne": "removed"}, **expect_version(if_version)},
                session=session)
            if doc is None and if_version is not None:
                raise PreconditionFailed(STALE)
            if doc is None and eid is None:
                raise NotFound("Employee not found.")
            # a re-run handler (eid) sends its event again: consumers dedupe it
            self.events.publish("employee.removed", {
                "org_id": target["org_id"], "employee_id": target["_id"],
                "user_id": target["user_id"], "email": target["email"],
                "name": target.get("name", ""), "org_name": target.get("org_name", ""),
                "removed_by_user_id": by_user_id}, org_id=target["org_id"],
                actor_id=by_user_id, event_id=eid, session=session if doc else None)

        self.store.run_transaction(write)
        self.invalidate(target["org_id"], target["user_id"])

    def publish_update(self, actor_id: str | None, before: dict, after: dict, changes: dict,
                        session=None) -> None:
        common = {"org_id": after["org_id"], "employee_id": after["_id"],
                  "user_id": after["user_id"]}
        self.events.publish("employee.updated", {**common, "changes": changes},
                            org_id=after["org_id"], actor_id=actor_id, session=session)
        for field, event_type in (("role", "employee.role.changed"),
                                  ("status", "employee.status.changed")):
            if field in changes:
                self.events.publish(event_type, {**common, f"old_{field}": before[field],
                                                 f"new_{field}": after[field]},
                                    org_id=after["org_id"], actor_id=actor_id,
                                    session=session)

    def apply_owner_change(self, org_id: str, old_user_id: str | None, new_user_id: str,
                            actor_id: str | None) -> None:
        for user_id, role in ((new_user_id, "owner"), (old_user_id, "admin")):
            if not user_id:
                continue
            doc = self.store.employee_by_user(org_id, user_id)
            if doc is None or doc["role"] == role or doc["status"] == "removed":
                continue
            def write(session, doc=doc, role=role):
                after = self.store.update_employee(org_id, doc["_id"], {"role": role},
                                                   expect={"role": doc["role"]}, session=session)
                if after is not None:
                    self.publish_update(actor_id, doc, after, {"role": role}, session)

            self.store.run_transaction(write)
            self.invalidate(org_id, user_id)

    def sync_user(self, user_id: str, fields: dict) -> None:
        for doc in self.store.update_user_everywhere(user_id, fields):
            self.invalidate(doc["org_id"], user_id)

    def set_team(self, org_id: str, employee_id: str, team_id: str, role: str | None) -> None:
        doc = self.store.set_team(org_id, employee_id, team_id, role)
        if doc is not None:
            self.invalidate(org_id, doc["user_id"])

    def track_tasks(self, events: list[dict]) -> None:
        """Task events (a batch) into the holders of their tasks, each org's at once
        (a task's events in order: later fields win); then one recount of every
        employee held before or named, even when nothing moved (a re-run after a
        crash between the writes must still count)."""
        by_org: dict[str, list[domain.TaskChange]] = {}
        for change in map(domain.task_change, events):
            by_org.setdefault(change.org_id, []).append(change)
        for org_id, changes in by_org.items():
            fields: dict[str, dict] = {}
            for change in changes:
                fields.setdefault(change.task_id, {}).update(change.fields)
            held = self.store.set_tasks(org_id, fields)
            named = {e for change in changes for e in change.named}
            if self.store.recount_tasks_of(org_id, held | named):
                self.changed(org_id)
