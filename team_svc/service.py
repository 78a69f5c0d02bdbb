"""The teams service: entrypoints only (the work of several steps is in
``team_svc.flows``, the rules in ``team_svc.domain``, queries in ``store``)."""
from __future__ import annotations

from shared import service as base
from shared.events import handles
from shared.mongo import Mongo
from shared.pagination import decode_cursor, page, whole
from shared.rpc import ServiceRpc, rpc
from shared.tenancy import require_member
from team_svc import domain, schemas
from team_svc.flows import TeamFlows
from team_svc.store import TeamStore


class TeamService(base.ServiceBase):
    name = "teams"

    store = Mongo(TeamStore)
    employees = ServiceRpc("employees", methods=("get_employees", "get_membership"))
    organizations = ServiceRpc("organizations", methods=("check_plan_limit",))

    @property
    def flows(self) -> TeamFlows:
        return TeamFlows(self)

    # --- teams -------------------------------------------------------------
    @rpc
    def create_team(self, user_id: str, org_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "team.create")
        data = schemas.TeamCreateSchema().load(body)
        return schemas.dump_team(self.flows.create(org_id, data, user_id))

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
            f"teams:team:{org_id}:{team_id}", lambda: schemas.dump_team(self.flows.team(org_id, team_id)),
            tags=[f"team:{team_id}", f"org:{org_id}"])

    @rpc
    def update_team(self, user_id: str, org_id: str, team_id: str, body: dict,
                    if_version: int | None = None) -> dict:
        """``if_version``: the version the client saw (If-Match); 412 if it moved on."""
        require_member(self.redis, self.employees, org_id, user_id, "team.update")
        changes = schemas.TeamUpdateSchema().load(body)
        return schemas.dump_team(self.flows.update(org_id, team_id, changes, if_version, user_id))

    @rpc
    def delete_team(self, user_id: str, org_id: str, team_id: str,
                    if_version: int | None = None) -> None:
        require_member(self.redis, self.employees, org_id, user_id, "team.delete")
        self.flows.delete(org_id, team_id, if_version, user_id)

    # --- members, leader, permissions -------------------------------------
    @rpc
    def add_member(self, user_id: str, org_id: str, team_id: str, body: dict) -> dict:
        membership = require_member(self.redis, self.employees, org_id, user_id, "team.read")
        data = schemas.MemberAddSchema().load(body)
        member = self.flows.add_member(membership, org_id, team_id, data, user_id)
        return schemas.MemberSchema().dump(member)

    @rpc
    def remove_member(self, user_id: str, org_id: str, team_id: str, employee_id: str) -> None:
        membership = require_member(self.redis, self.employees, org_id, user_id, "team.read")
        self.flows.remove_member(membership, org_id, team_id, employee_id, user_id)

    @rpc
    def set_leader(self, user_id: str, org_id: str, team_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "team.update")
        employee_id = schemas.LeaderSchema().load(body)["employee_id"]
        return schemas.dump_team(self.flows.set_leader(org_id, team_id, employee_id, user_id))

    @rpc
    def get_permissions(self, user_id: str, org_id: str, team_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "team.read")
        team = self.flows.team(org_id, team_id)
        return schemas.dump_grants(team_id, team.get("permissions") or {}, domain.GRANTABLE)

    @rpc
    def set_permissions(self, user_id: str, org_id: str, team_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "team.manage_permissions")
        wanted = schemas.PermissionsSchema().load(body)["permissions"]
        perms = self.flows.set_permissions(org_id, team_id, wanted, user_id)
        return schemas.dump_grants(team_id, perms, domain.GRANTABLE)

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
        self.flows.employee_removed(event["data"], event.get("actor_id"))

    @handles("organizations", "organization.deleted")
    def on_organization_deleted(self, event: dict) -> None:
        self.flows.org_deleted(event["data"]["org_id"], event.get("actor_id"))

    @handles("employees", "employee.added")
    def on_employee_added(self, event: dict) -> None:
        data = event["data"]
        self.store.remember_employee({"employee_id": data["employee_id"], "org_id": data["org_id"],
                                      "user_id": data.get("user_id"), "name": data.get("name")})
