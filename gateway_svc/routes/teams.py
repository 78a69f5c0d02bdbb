"""Gateway routes for teams (api.md). Entrypoints stay thin: validate,
one RPC, shape the answer. The teams service validates every field (with
the schemas named here, which document the route) and decides tenancy
(404 outside the org, 403 without the permission) before it does."""
from __future__ import annotations

from gateway_svc import etags
from gateway_svc.http import api, json_object
from team_svc.schemas import (
    LeaderSchema,
    ListArgsSchema,
    MemberAddSchema,
    MemberSchema,
    PermissionsSchema,
    TeamCreateSchema,
    TeamGrantsSchema,
    TeamPageSchema,
    TeamSchema,
    TeamUpdateSchema,
)

ORG = "/orgs/<org_id>"
TEAM = f"{ORG}/teams/<team_id>"


class TeamRoutes:
    @api("POST", f"{ORG}/teams", body=TeamCreateSchema, response=TeamSchema, status=201,
         errors=(403, 404))
    def create_team(self, request, org_id):
        return 201, self.rpc_teams.create_team(request.user_id, org_id, json_object(request))

    @api("GET", f"{ORG}/teams", query=ListArgsSchema, response=TeamPageSchema, errors=(403, 404))
    def list_teams(self, request, org_id):
        """``?employee_id=`` lists the teams of one employee."""
        return self.rpc_teams.list_teams(request.user_id, org_id, request.args.to_dict())

    @api("GET", TEAM, response=TeamSchema, errors=(403, 404), etag=True)
    def get_team(self, request, org_id, team_id):
        return etags.answer(request, self.rpc_teams.get_team(request.user_id, org_id, team_id))

    @api("PATCH", TEAM, body=TeamUpdateSchema, response=TeamSchema, errors=(403, 404),
         etag=True)
    def update_team(self, request, org_id, team_id):
        version = etags.if_match_version(request)
        return etags.answer(request, self.rpc_teams.update_team(
            request.user_id, org_id, team_id, json_object(request), if_version=version))

    @api("DELETE", TEAM, status=204, errors=(403, 404), etag=True)
    def delete_team(self, request, org_id, team_id):
        self.rpc_teams.delete_team(request.user_id, org_id, team_id,
                                   if_version=etags.if_match_version(request))
        return 204, None

    @api("POST", f"{TEAM}/members", body=MemberAddSchema, response=MemberSchema, status=201,
         errors=(403, 404, 409))
    def add_team_member(self, request, org_id, team_id):
        return 201, self.rpc_teams.add_member(request.user_id, org_id, team_id, json_object(request))

    @api("DELETE", f"{TEAM}/members/<employee_id>", status=204, errors=(403, 404))
    def remove_team_member(self, request, org_id, team_id, employee_id):
        self.rpc_teams.remove_member(request.user_id, org_id, team_id, employee_id)
        return 204, None

    @api("PUT", f"{TEAM}/leader", body=LeaderSchema, response=TeamSchema, errors=(403, 404))
    def set_team_leader(self, request, org_id, team_id):
        """The leader must already be a member of the team (422 otherwise)."""
        return self.rpc_teams.set_leader(request.user_id, org_id, team_id, json_object(request))

    @api("GET", f"{TEAM}/permissions", response=TeamGrantsSchema, errors=(403, 404))
    def get_team_permissions(self, request, org_id, team_id):
        return self.rpc_teams.get_permissions(request.user_id, org_id, team_id)

    @api("PUT", f"{TEAM}/permissions", body=PermissionsSchema, response=TeamGrantsSchema,
         errors=(403, 404))
    def set_team_permissions(self, request, org_id, team_id):
        """Replace the grants: ``{employee_id: [permission, ...]}`` for members of the team."""
        return self.rpc_teams.set_permissions(request.user_id, org_id, team_id, json_object(request))
