"""The teams service: entrypoints only. Rules live in ``domain``, queries in
``store``; every write drops the cached team and the org's team list."""
from __future__ import annotations

from shared import service as base
from shared.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from shared.events import handles
from shared.mongo import Mongo, utcnow
from shared.pagination import decode_cursor, page, whole
from shared.rpc import ServiceRpc, rpc
from shared.tenancy import require_member
from shared.versions import STALE, expect_version, require_version
from team_svc import domain, schemas
from team_svc.store import TeamStore


class TeamService(base.ServiceBase):
    name = "teams"

    store = Mongo(TeamStore)
    employees = ServiceRpc("employees", methods=("get_employees", "get_membership"))
    organizations = ServiceRpc("organizations", methods=("check_plan_limit",))

    # --- teams -------------------------------------------------------------
    @rpc
    def create_team(self, user_id: str, org_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "team.create")
        data = schemas.TeamCreateSchema().load(body)
        with self.redis.lock(f"teams:create:{org_id}"):  # one count, one insert at a time
            self.organizations.check_plan_limit(org_id, "teams", self.store.count(org_id))
            team = self.store.create_team(org_id, data["name"], data["description"],
                                          data["settings"], user_id)
        self._changed(team, "team.created", user_id)
        return schemas.dump_team(team)

    @rpc
    def list_teams(self, user_id: str, org_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "team.read")
        args = schemas.ListArgsSchema().load(args)
        if args.get("employee_id"):  # the teams of one employee
            return whole(map(schemas.dump_team,
                             self.store.teams_of_employee(org_id, args["employee_id"])))
        after, limit = decode_cursor(args["cursor"]), args["limit"]
        return self.redis.cache.get_or_set(
            f"teams:list:{org_id}:{after}:{limit}",
            lambda: page(self.store.list_teams(org_id, limit + 1, after), limit, schemas.dump_team),
            tags=[f"org:{org_id}"])

    @rpc
    def get_team(self, user_id: str, org_id: str, team_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "team.read")
        return self.redis.cache.get_or_set(
            f"teams:team:{org_id}:{team_id}", lambda: schemas.dump_team(self._team(org_id, team_id)),
            tags=[f"team:{team_id}", f"org:{org_id}"])

    @rpc
    def update_team(self, user_id: str, org_id: str, team_id: str, body: dict,
                    if_version: int | None = None) -> dict:
        """``if_version``: the version the client saw (If-Match); 412 if it moved on."""
        require_member(self.redis, self.employees, org_id, user_id, "team.update")
        changes = schemas.TeamUpdateSchema().load(body)
        require_version(self._team(org_id, team_id), if_version)
        team = self.store.update_team(org_id, team_id, changes, expect_version(if_version)) \
            if changes else self.store.get(org_id, team_id)
        if team is None and if_version is not None:
            raise PreconditionFailed(STALE)
        if team is None:
            raise NotFound("Team not found.")
        self._changed(team, "team.updated", user_id)
        return schemas.dump_team(team)

    @rpc
    def delete_team(self, user_id: str, org_id: str, team_id: str,
                    if_version: int | None = None) -> None:
        require_member(self.redis, self.employees, org_id, user_id, "team.delete")
        if if_version is not None:
            require_version(self._team(org_id, team_id), if_version)
        team = self.store.delete_team(org_id, team_id, expect_version(if_version))
        if team is None and if_version is not None:
            raise PreconditionFailed(STALE)
        if team is None:
            raise NotFound("Team not found.")
        self._changed(team, "team.deleted", user_id)

    # --- members, leader, permissions -------------------------------------
    @rpc
    def add_member(self, user_id: str, org_id: str, team_id: str, body: dict) -> dict:
        membership = require_member(self.redis, self.employees, org_id, user_id, "team.read")
        data = schemas.MemberAddSchema().load(body)
        domain.require_manage_members(membership, self._team(org_id, team_id), data["role"])
        employee = self._active_employee(org_id, data["employee_id"])
        member = {"employee_id": employee["employee_id"], "user_id": employee["user_id"],
                  "name": employee.get("name"), "role": data["role"], "added_at": utcnow()}
        with self.redis.lock(f"team:{team_id}"):
            old_leader = self._team(org_id, team_id).get("leader_id")
            team = self.store.add_member(org_id, team_id, member)
        if team is None:
            raise Conflict("This employee is already a member of the team.")
        self._member_event("team.member.added", team, member, user_id)
        if data["role"] == "leader" and old_leader != member["employee_id"]:
            self._leader_event(team, old_leader, member["employee_id"], user_id)
        return schemas.MemberSchema().dump(member)

    @rpc
    def remove_member(self, user_id: str, org_id: str, team_id: str, employee_id: str) -> None:
        membership = require_member(self.redis, self.employees, org_id, user_id, "team.read")
        domain.require_manage_members(membership, self._team(org_id, team_id))
        with self.redis.lock(f"team:{team_id}"):
            before = self.store.remove_member(org_id, team_id, employee_id)
        if before is None:
            raise NotFound("This employee is not a member of the team.")
        self._after_removal(before, employee_id, user_id)

    @rpc
    def set_leader(self, user_id: str, org_id: str, team_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "team.update")
        employee_id = schemas.LeaderSchema().load(body)["employee_id"]
        team = self._team(org_id, team_id)
        if employee_id not in team["member_ids"]:
            self._active_employee(org_id, employee_id)  # 404 for strangers
            raise ValidationFailed("The leader must be a member of the team.",
                                   errors={"employee_id": ["Add them to the team first."]})
        with self.redis.lock(f"team:{team_id}"):
            old_leader, team = self.store.set_leader(org_id, team_id, employee_id)
        if old_leader != employee_id:
            self._leader_event(team, old_leader, employee_id, user_id)
        return schemas.dump_team(team)

    @rpc
    def get_permissions(self, user_id: str, org_id: str, team_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "team.read")
        team = self._team(org_id, team_id)
        return {"team_id": team_id, "grantable": sorted(domain.GRANTABLE),
                "permissions": team.get("permissions") or {}}

    @rpc
    def set_permissions(self, user_id: str, org_id: str, team_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "team.manage_permissions")
        wanted = schemas.PermissionsSchema().load(body)["permissions"]
        with self.redis.lock(f"team:{team_id}"):
            team = self._team(org_id, team_id)
            perms, granted, revoked = domain.permission_changes(
                team.get("permissions") or {}, wanted, set(team["member_ids"]))
            self.store.set_permissions(org_id, team_id, perms)
        for kind, pairs in (("granted", granted), ("revoked", revoked)):
            for employee_id, permission in pairs:
                self.events.publish(f"team.permission.{kind}", {
                    "org_id": org_id, "team_id": team_id, "employee_id": employee_id,
                    "permission": permission}, org_id=org_id, actor_id=user_id)
        self._invalidate(team)
        return {"team_id": team_id, "grantable": sorted(domain.GRANTABLE), "permissions": perms}

    # --- for other services ------------------------------------------------
    @rpc
    def teams_of_employee(self, org_id: str, employee_id: str) -> list[dict]:
        return [schemas.brief(t) for t in self.store.teams_of_employee(org_id, employee_id)]

    @rpc
    def get_team_briefs(self, org_id: str, team_ids: list[str]) -> dict:
        """``{team_id: brief}`` for the teams found in ``org_id`` (one call for many)."""
        return {t["_id"]: schemas.brief(t) for t in self.store.many(org_id, list(team_ids)[:1000])}

    @rpc
    def search_documents(self, org_id: str | None, team_ids: list[str] | None = None,
                         after: str | None = None, limit: int = 200) -> dict:
        """What the search index holds of teams: those of ``team_ids`` (missing ones are
        deleted), or a page after ``after`` (one org, or all: a rebuild)."""
        ids = [i for i in team_ids if isinstance(i, str)][:1000] if team_ids is not None else None
        limit = max(1, min(int(limit), 1000))
        docs = self.store.search_export(org_id, ids, after, limit)
        return {"items": [schemas.search_document(d) for d in docs],
                "next_after": docs[-1]["_id"] if ids is None and len(docs) == limit else None}

    # --- events consumed ---------------------------------------------------
    @handles("employees", "employee.removed")
    def on_employee_removed(self, event: dict) -> None:
        data = event["data"]
        for team in self.store.teams_of_employee(data["org_id"], data["employee_id"]):
            before = self.store.remove_member(data["org_id"], team["_id"], data["employee_id"])
            if before is not None:
                self._after_removal(before, data["employee_id"], event.get("actor_id"))
        self.store.forget_employee(data["employee_id"])

    @handles("organizations", "organization.deleted")
    def on_organization_deleted(self, event: dict) -> None:
        org_id = event["data"]["org_id"]
        for team in self.store.delete_org_teams(org_id):
            self._changed(team, "team.deleted", event.get("actor_id"),
                          event_id=f"team.deleted:{team['_id']}")

    @handles("employees", "employee.added")
    def on_employee_added(self, event: dict) -> None:
        data = event["data"]
        self.store.remember_employee({"employee_id": data["employee_id"], "org_id": data["org_id"],
                                      "user_id": data.get("user_id"), "name": data.get("name")})

    # --- helpers (no entrypoints below) -------------------------------------
    def _team(self, org_id: str, team_id: str) -> dict:
        team = self.store.get(org_id, str(team_id))
        if team is None:
            raise NotFound("Team not found.")
        return team

    def _active_employee(self, org_id: str, employee_id: str) -> dict:
        found = self.employees.get_employees(org_id, [employee_id])
        if not found or found[0].get("status") != "active":
            raise NotFound("No active employee with this id in the organization.")
        return found[0]

    def _invalidate(self, team: dict) -> None:
        self.redis.cache.invalidate_tags(f"org:{team['org_id']}", f"team:{team['_id']}")

    def _changed(self, team: dict, event_type: str, actor: str | None, event_id=None) -> None:
        self._invalidate(team)
        self.events.publish(event_type, {"org_id": team["org_id"], "team_id": team["_id"],
                                         "name": team["name"]},
                            org_id=team["org_id"], actor_id=actor, event_id=event_id)

    def _member_event(self, event_type: str, team: dict, member: dict, actor: str | None) -> None:
        self._invalidate(team)
        self.events.publish(event_type, {
            "org_id": team["org_id"], "team_id": team["_id"], "team_name": team["name"],
            "employee_id": member["employee_id"], "user_id": member.get("user_id"),
            "role": member["role"]}, org_id=team["org_id"], actor_id=actor,
            event_id=f"{event_type}:{team['_id']}:{member['employee_id']}:{member.get('added_at')}")

    def _leader_event(self, team: dict, old: str | None, new: str | None, actor) -> None:
        self._invalidate(team)
        self.events.publish("team.leader.changed", {
            "org_id": team["org_id"], "team_id": team["_id"], "old_leader_id": old,
            "new_leader_id": new}, org_id=team["org_id"], actor_id=actor)

    def _after_removal(self, before: dict, employee_id: str, actor: str | None) -> None:
        member = next(m for m in before["members"] if m["employee_id"] == employee_id)
        self._member_event("team.member.removed", before, member, actor)
        if before.get("leader_id") == employee_id:
            self._leader_event(before, employee_id,
                               domain.leader_after_removal(before, employee_id), actor)
