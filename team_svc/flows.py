"""The teams service's work of several steps (a change with its cache
invalidation and events; members, leaders and grants), on one worker's
dependencies: the entrypoints in ``service.py`` authorize and validate, then
call one of these. Rules come from :mod:`team_svc.domain`, queries from the
store; every write drops the cached team and the org's team list."""
from __future__ import annotations

from shared.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from shared.mongo import utcnow
from shared.rpc import ServiceProxy
from shared.service import Flows
from shared.versions import STALE, expect_version, require_version
from team_svc import domain


class TeamFlows(Flows):
    uses = ("employees", "organizations")
    employees: ServiceProxy
    organizations: ServiceProxy

    def team(self, org_id: str, team_id: str) -> dict:
        team = self.store.get(org_id, str(team_id))
        if team is None:
            raise NotFound("Team not found.")
        return team

    def active_employee(self, org_id: str, employee_id: str) -> dict:
        found = self.employees.get_employees(org_id, [employee_id])
        if not found or found[0].get("status") != "active":
            raise NotFound("No active employee with this id in the organization.")
        return found[0]

    # --- teams ------------------------------------------------------------------
    def create(self, org_id: str, data: dict, actor: str) -> dict:
        with self.redis.lock(f"teams:create:{org_id}"):  # one count, one insert at a time
            self.organizations.check_plan_limit(org_id, "teams", self.store.count(org_id))
            team = self.store.create_team(org_id, data["name"], data["description"],
                                          data["settings"], actor)
        self.changed(team, "team.created", actor)
        return team

    def update(self, org_id: str, team_id: str, changes: dict, if_version: int | None,
               actor: str) -> dict:
        require_version(self.team(org_id, team_id), if_version)
        team = self.store.update_team(org_id, team_id, changes, expect_version(if_version)) \
            if changes else self.store.get(org_id, team_id)
        self._found(team, if_version)
        self.changed(team, "team.updated", actor)
        return team

    def delete(self, org_id: str, team_id: str, if_version: int | None, actor: str) -> None:
        if if_version is not None:
            require_version(self.team(org_id, team_id), if_version)
        team = self._found(self.store.delete_team(org_id, team_id, expect_version(if_version)),
                           if_version)
        self.changed(team, "team.deleted", actor)

    @staticmethod
    def _found(team: dict | None, if_version: int | None) -> dict:
        """A conditional write that matched nothing: 412 when a version was named, else 404."""
        if team is None and if_version is not None:
            raise PreconditionFailed(STALE)
        if team is None:
            raise NotFound("Team not found.")
        return team

    # --- members, leader, grants ---------------------------------------------------
    def add_member(self, membership: dict, org_id: str, team_id: str, data: dict,
                   actor: str) -> dict:
        domain.require_manage_members(membership, self.team(org_id, team_id), data["role"])
        employee = self.active_employee(org_id, data["employee_id"])
        member = {"employee_id": employee["employee_id"], "user_id": employee["user_id"],
                  "name": employee.get("name"), "role": data["role"], "added_at": utcnow()}
        with self.redis.lock(f"team:{team_id}"):
            old_leader = self.team(org_id, team_id).get("leader_id")
            team = self.store.add_member(org_id, team_id, member)
        if team is None:
            raise Conflict("This employee is already a member of the team.")
        self.member_event("team.member.added", team, member, actor)
        if data["role"] == "leader" and old_leader != member["employee_id"]:
            self.leader_event(team, old_leader, member["employee_id"], actor)
        return member

    def remove_member(self, membership: dict, org_id: str, team_id: str, employee_id: str,
                      actor: str) -> None:
        domain.require_manage_members(membership, self.team(org_id, team_id))
        with self.redis.lock(f"team:{team_id}"):
            before = self.store.remove_member(org_id, team_id, employee_id)
        if before is None:
            raise NotFound("This employee is not a member of the team.")
        self.after_removal(before, employee_id, actor)

    def set_leader(self, org_id: str, team_id: str, employee_id: str, actor: str) -> dict:
        team = self.team(org_id, team_id)
        if employee_id not in team["member_ids"]:
            self.active_employee(org_id, employee_id)  # 404 for strangers
            raise ValidationFailed("The leader must be a member of the team.",
                                   errors={"employee_id": ["Add them to the team first."]})
        with self.redis.lock(f"team:{team_id}"):
            old_leader, team = self.store.set_leader(org_id, team_id, employee_id)
        if old_leader != employee_id:
            self.leader_event(team, old_leader, employee_id, actor)
        return team

    def set_permissions(self, org_id: str, team_id: str, wanted: dict, actor: str) -> dict:
        with self.redis.lock(f"team:{team_id}"):
            team = self.team(org_id, team_id)
            perms, granted, revoked = domain.permission_changes(
                team.get("permissions") or {}, wanted, set(team["member_ids"]))
            self.store.set_permissions(org_id, team_id, perms)
        for kind, pairs in (("granted", granted), ("revoked", revoked)):
            for employee_id, permission in pairs:
                self.events.publish(f"team.permission.{kind}", {
                    "org_id": org_id, "team_id": team_id, "employee_id": employee_id,
                    "permission": permission}, org_id=org_id, actor_id=actor)
        self.invalidate(team)
        return perms

    # --- what other services' events change -----------------------------------------
    def employee_removed(self, data: dict, actor: str | None) -> None:
        for team in self.store.teams_of_employee(data["org_id"], data["employee_id"]):
            before = self.store.remove_member(data["org_id"], team["_id"], data["employee_id"])
            if before is not None:
                self.after_removal(before, data["employee_id"], actor)
        self.store.forget_employee(data["employee_id"])

    def org_deleted(self, org_id: str, actor: str | None) -> None:
        for team in self.store.delete_org_teams(org_id):
            self.changed(team, "team.deleted", actor, event_id=f"team.deleted:{team['_id']}")

    # --- cache and events -------------------------------------------------------------
    def invalidate(self, team: dict) -> None:
        self.redis.cache.invalidate_tags(f"org:{team['org_id']}", f"team:{team['_id']}")

    def changed(self, team: dict, event_type: str, actor: str | None,
                event_id: str | None = None) -> None:
        self.invalidate(team)
        self.events.publish(event_type, {"org_id": team["org_id"], "team_id": team["_id"],
                                         "name": team["name"]},
                            org_id=team["org_id"], actor_id=actor, event_id=event_id)

    def member_event(self, event_type: str, team: dict, member: dict, actor: str | None) -> None:
        self.invalidate(team)
        self.events.publish(event_type, {
            "org_id": team["org_id"], "team_id": team["_id"], "team_name": team["name"],
            "employee_id": member["employee_id"], "user_id": member.get("user_id"),
            "role": member["role"]}, org_id=team["org_id"], actor_id=actor,
            event_id=f"{event_type}:{team['_id']}:{member['employee_id']}:{member.get('added_at')}")

    def leader_event(self, team: dict, old: str | None, new: str | None,
                     actor: str | None) -> None:
        self.invalidate(team)
        self.events.publish("team.leader.changed", {
            "org_id": team["org_id"], "team_id": team["_id"], "old_leader_id": old,
            "new_leader_id": new}, org_id=team["org_id"], actor_id=actor)

    def after_removal(self, before: dict, employee_id: str, actor: str | None) -> None:
        member = next(m for m in before["members"] if m["employee_id"] == employee_id)
        self.member_event("team.member.removed", before, member, actor)
        if before.get("leader_id") == employee_id:
            self.leader_event(before, employee_id,
                              domain.leader_after_removal(before, employee_id), actor)
