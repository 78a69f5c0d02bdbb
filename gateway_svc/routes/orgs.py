"""Gateway routes for organizations and employees (api.md). Entrypoints stay thin:
one RPC with (user_id, org_id, ...), the body as it came; the schemas named here
document the route, the services validate with them after authorizing."""
from __future__ import annotations

from employee_svc.schemas import (
    EmployeeAddSchema,
    EmployeePageSchema,
    EmployeeQuerySchema,
    EmployeeSchema,
    EmployeeUpdateSchema,
    InvitationPageSchema,
    InvitationQuerySchema,
    InvitationSchema,
)
from gateway_svc import etags
from gateway_svc.cache import CachedRoute, entry_name
from gateway_svc.http import api, json_object
from org_svc.schemas import (
    OrgCreateSchema,
    OrgPageSchema,
    OrgSchema,
    OrgUpdateSchema,
    SettingsSchema,
    SubscriptionSchema,
    TransferSchema,
)
from shared.pagination import PageArgsSchema
from shared.redis import RedisTools, org_version_key
from shared.rpc import ServiceProxy

LIST_CACHE_TTL = 60
EMPLOYEE_LISTS = CachedRoute("employees:list", "employees", ttl=LIST_CACHE_TTL)


class OrgRoutes:
    """Every ``/orgs/<org_id>`` route has had its one membership check (``@api``:
    404 outside the org); the services authorize the action (403) before they
    validate the body (422), so bodies are forwarded as they came."""

    # the gateway's dependencies (gateway_svc.service.GatewayService) this mixin reads
    redis: RedisTools
    rpc_organizations: ServiceProxy

    def _org(self, org_id: str) -> dict:
        """The org, from the gateway's cache while the organizations service changed
        nothing in it (no RPC), else by RPC. Any member may read it (org.read)."""
        return self.redis.cache.get_or_set(
            entry_name(f"organizations:org:{org_id}"), lambda: self.rpc_organizations.get_org(org_id),
            ttl=LIST_CACHE_TTL, versions=[org_version_key("organizations", org_id)])

    # --- organizations -----------------------------------------------------------
    @api("POST", "/orgs", body=OrgCreateSchema, response=OrgSchema, status=201)
    def create_org(self, request):
        """Create an organization; the caller becomes its owner."""
        return 201, self.rpc_organizations.create_org(request.user_id, json_object(request))

    @api("GET", "/orgs", query=PageArgsSchema, response=OrgPageSchema)
    def list_my_orgs(self, request):
        """The organizations the caller is an active employee of."""
        return self.rpc_organizations.list_orgs_for_user(request.user_id, request.args.to_dict())

    @api("GET", "/orgs/<org_id>", response=OrgSchema, errors=(404,), etag=True)
    def get_org(self, request, org_id):
        return etags.answer(request, self._org(org_id))

    @api("PATCH", "/orgs/<org_id>", body=OrgUpdateSchema, response=OrgSchema,
         errors=(403, 404), etag=True)
    def update_org(self, request, org_id):
        return etags.answer(request, self.rpc_organizations.update_org(
            request.user_id, org_id, json_object(request),
            if_version=etags.if_match_version(request)))

    @api("DELETE", "/orgs/<org_id>", status=204, errors=(403, 404), etag=True)
    def delete_org(self, request, org_id):
        """Soft delete (owner only): the org answers 404 and leaves every list."""
        self.rpc_organizations.delete_org(request.user_id, org_id,
                                          if_version=etags.if_match_version(request))
        return 204, None

    @api("GET", "/orgs/<org_id>/settings", response=SettingsSchema, errors=(404,), etag=True)
    def get_org_settings(self, request, org_id):
        """Its ETag is the org's (every change of the org changes it)."""
        org = self._org(org_id)
        return etags.answer(request, org["settings"], version=org.get("version"))

    @api("PATCH", "/orgs/<org_id>/settings", body=SettingsSchema, response=SettingsSchema,
         errors=(403, 404), etag=True)
    def update_org_settings(self, request, org_id):
        """With If-Match (the ETag of the settings or the org): merged and written only
        while the org is still at that version."""
        return self.rpc_organizations.update_settings(
            request.user_id, org_id, json_object(request),
            if_version=etags.if_match_version(request))

    @api("POST", "/orgs/<org_id>/transfer-ownership", body=TransferSchema, response=OrgSchema,
         status=200, errors=(403, 404))
    def transfer_ownership(self, request, org_id):
        return self.rpc_organizations.transfer_ownership(request.user_id, org_id,
                                                         json_object(request))

    @api("GET", "/orgs/<org_id>/subscription", response=SubscriptionSchema, errors=(404,))
    def get_subscription(self, request, org_id):
        org = self._org(org_id)
        return {**org["subscription"], "usage": org["counts"]}

    # --- employees ----------------------------------------------------------------
    @api("POST", "/orgs/<org_id>/employees", body=EmployeeAddSchema, response=EmployeeSchema,
         status=201, also={202: InvitationSchema}, errors=(403, 404, 409))
    def add_employee(self, request, org_id):
        """Add a verified address's account (201 employee), else invite it (202 invitation)."""
        result = self.rpc_employees.add_employee(request.user_id, org_id, json_object(request))
        return result["status"], result.get("employee") or result.get("invitation")

    @api("GET", "/orgs/<org_id>/employees", query=EmployeeQuerySchema,
         response=EmployeePageSchema, errors=(404,), cached=EMPLOYEE_LISTS)
    def list_employees(self, request, org_id):
        """List and search (q: prefix of a name, email or job title word).
        Answered from the gateway's cache, with no RPC, until the employees service
        changes the org."""
        args = request.args.to_dict()
        return EMPLOYEE_LISTS.response(
            self.redis, request, org_id,
            lambda: self.rpc_employees.list_employees(request.user_id, org_id, args))

    @api("GET", "/orgs/<org_id>/employees/<employee_id>", response=EmployeeSchema,
         errors=(404,), etag=True)
    def get_employee(self, request, org_id, employee_id):
        return etags.answer(request, self.rpc_employees.get_employee(
            request.user_id, org_id, employee_id))

    @api("PATCH", "/orgs/<org_id>/employees/<employee_id>", body=EmployeeUpdateSchema,
         response=EmployeeSchema, errors=(403, 404, 409), etag=True)
    def update_employee(self, request, org_id, employee_id):
        """Role (employee.update_role), job title, status (employee.update)."""
        return etags.answer(request, self.rpc_employees.update_employee(
            request.user_id, org_id, employee_id, json_object(request),
            if_version=etags.if_match_version(request)))

    @api("DELETE", "/orgs/<org_id>/employees/<employee_id>", status=204,
         errors=(403, 404, 409), etag=True)
    def remove_employee(self, request, org_id, employee_id):
        self.rpc_employees.remove_employee(request.user_id, org_id, employee_id,
                                           if_version=etags.if_match_version(request))
        return 204, None

    # --- invitations --------------------------------------------------------------
    @api("GET", "/orgs/<org_id>/invitations", query=InvitationQuerySchema,
         response=InvitationPageSchema, errors=(403, 404))
    def list_invitations(self, request, org_id):
        return self.rpc_employees.list_invitations(request.user_id, org_id,
                                                   request.args.to_dict())

    @api("DELETE", "/orgs/<org_id>/invitations/<invitation_id>", status=204,
         errors=(403, 404))
    def revoke_invitation(self, request, org_id, invitation_id):
        self.rpc_employees.revoke_invitation(request.user_id, org_id, invitation_id)
        return 204, None

    @api("GET", "/me/invitations", query=InvitationQuerySchema, response=InvitationPageSchema)
    def my_invitations(self, request):
        """Pending invitations to the caller's address (memberships once it is verified)."""
        return self.rpc_employees.my_invitations(request.user_id, request.args.to_dict())

    @api("POST", "/invitations/<token>/accept", response=EmployeeSchema, status=200,
         errors=(403, 404))
    def accept_invitation(self, request, token):
        """Join the org; the caller's verified email must be the invited one."""
        return self.rpc_employees.accept_invitation(request.user_id, token)
