"""Gateway routes for organizations and employees (api.md). Entrypoints stay thin:
validate, check tenancy once (shared.tenancy.require_member), one RPC, shape the answer."""
from __future__ import annotations

import json

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
from gateway_svc.cache import cached_response, entry_name
from gateway_svc.http import api, query_args, read_json
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
from shared.redis import org_version_key
from shared.tenancy import require_member

LIST_CACHE_TTL = 60


class OrgRoutes:
    def _member(self, request, org_id: str, action: str | None) -> dict:
        return require_member(self.redis, self.rpc_employees, org_id, request.user_id, action)

    def _org(self, org_id: str) -> dict:
        """The org, from the gateway's cache while the organizations service changed
        nothing in it (no RPC), else by RPC."""
        return self.redis.cache.get_or_set(
            entry_name(f"organizations:org:{org_id}"), lambda: self.rpc_organizations.get_org(org_id),
            ttl=LIST_CACHE_TTL, versions=[org_version_key("organizations", org_id)])

    # --- organizations -----------------------------------------------------------
    @api("POST", "/orgs", body=OrgCreateSchema, response=OrgSchema, status=201)
    def create_org(self, request):
        """Create an organization; the caller becomes its owner."""
        body = read_json(request, OrgCreateSchema())
        return 201, self.rpc_organizations.create_org(request.user_id, body)

    @api("GET", "/orgs", query=PageArgsSchema, response=OrgPageSchema)
    def list_my_orgs(self, request):
        """The organizations the caller is an active employee of."""
        query = query_args(request, PageArgsSchema())
        return self.rpc_organizations.list_orgs_for_user(request.user_id, query)

    @api("GET", "/orgs/<org_id>", response=OrgSchema, errors=(404,))
    def get_org(self, request, org_id):
        self._member(request, org_id, "org.read")
        return self._org(org_id)

    @api("PATCH", "/orgs/<org_id>", body=OrgUpdateSchema, response=OrgSchema,
         errors=(403, 404))
    def update_org(self, request, org_id):
        body = read_json(request, OrgUpdateSchema())
        actor = self._member(request, org_id, "org.update")
        return self.rpc_organizations.update_org(actor, org_id, body)

    @api("DELETE", "/orgs/<org_id>", status=204, errors=(403, 404))
    def delete_org(self, request, org_id):
        """Soft delete (owner only): the org answers 404 and leaves every list."""
        actor = self._member(request, org_id, "org.delete")
        self.rpc_organizations.delete_org(actor, org_id)
        return 204, None

    @api("GET", "/orgs/<org_id>/settings", response=SettingsSchema, errors=(404,))
    def get_org_settings(self, request, org_id):
        self._member(request, org_id, "org.read")
        return self._org(org_id)["settings"]

    @api("PATCH", "/orgs/<org_id>/settings", body=SettingsSchema, response=SettingsSchema,
         errors=(403, 404))
    def update_org_settings(self, request, org_id):
        body = read_json(request, SettingsSchema())
        actor = self._member(request, org_id, "org.settings.update")
        return self.rpc_organizations.update_settings(actor, org_id, body)

    @api("POST", "/orgs/<org_id>/transfer-ownership", body=TransferSchema, response=OrgSchema,
         status=200, errors=(403, 404))
    def transfer_ownership(self, request, org_id):
        body = read_json(request, TransferSchema())
        actor = self._member(request, org_id, "org.transfer")
        return self.rpc_organizations.transfer_ownership(actor, org_id, body)

    @api("GET", "/orgs/<org_id>/subscription", response=SubscriptionSchema, errors=(404,))
    def get_subscription(self, request, org_id):
        self._member(request, org_id, "org.read")
        org = self._org(org_id)
        return {**org["subscription"], "usage": org["counts"]}

    # --- employees ----------------------------------------------------------------
    @api("POST", "/orgs/<org_id>/employees", body=EmployeeAddSchema, response=EmployeeSchema,
         status=201, also={202: InvitationSchema}, errors=(403, 404, 409))
    def add_employee(self, request, org_id):
        """Add a verified address's account (201 employee), else invite it (202 invitation)."""
        body = read_json(request, EmployeeAddSchema())
        actor = self._member(request, org_id, "employee.add")
        result = self.rpc_employees.add_employee(actor, org_id, body)
        return result["status"], result.get("employee") or result.get("invitation")

    @api("GET", "/orgs/<org_id>/employees", query=EmployeeQuerySchema,
         response=EmployeePageSchema, errors=(404,))
    def list_employees(self, request, org_id):
        """List and search (q: prefix of a name, email or job title word)."""
        query = query_args(request, EmployeeQuerySchema())
        self._member(request, org_id, "employee.read")
        key = f"employees:list:{org_id}:{json.dumps(query, sort_keys=True)}"
        return cached_response(  # no RPC while nothing changed
            self.redis, key, [org_version_key("employees", org_id)],
            lambda: self.rpc_employees.list_employees(org_id, query), ttl=LIST_CACHE_TTL)

    @api("GET", "/orgs/<org_id>/employees/<employee_id>", response=EmployeeSchema,
         errors=(404,))
    def get_employee(self, request, org_id, employee_id):
        self._member(request, org_id, "employee.read")
        return self.rpc_employees.get_employee(org_id, employee_id)

    @api("PATCH", "/orgs/<org_id>/employees/<employee_id>", body=EmployeeUpdateSchema,
         response=EmployeeSchema, errors=(403, 404, 409))
    def update_employee(self, request, org_id, employee_id):
        """Role (employee.update_role), job title, status (employee.update)."""
        body = read_json(request, EmployeeUpdateSchema())
        actor = self._member(request, org_id, None)
        return self.rpc_employees.update_employee(actor, org_id, employee_id, body)

    @api("DELETE", "/orgs/<org_id>/employees/<employee_id>", status=204,
         errors=(403, 404, 409))
    def remove_employee(self, request, org_id, employee_id):
        actor = self._member(request, org_id, "employee.remove")
        self.rpc_employees.remove_employee(actor, org_id, employee_id)
        return 204, None

    # --- invitations --------------------------------------------------------------
    @api("GET", "/orgs/<org_id>/invitations", query=InvitationQuerySchema,
         response=InvitationPageSchema, errors=(403, 404))
    def list_invitations(self, request, org_id):
        query = query_args(request, InvitationQuerySchema())
        self._member(request, org_id, "invitation.manage")
        return self.rpc_employees.list_invitations(org_id, query)

    @api("DELETE", "/orgs/<org_id>/invitations/<invitation_id>", status=204,
         errors=(403, 404))
    def revoke_invitation(self, request, org_id, invitation_id):
        actor = self._member(request, org_id, "invitation.manage")
        self.rpc_employees.revoke_invitation(actor, org_id, invitation_id)
        return 204, None

    @api("GET", "/me/invitations", query=InvitationQuerySchema, response=InvitationPageSchema)
    def my_invitations(self, request):
        """Pending invitations to the caller's address (memberships once it is verified)."""
        query = query_args(request, InvitationQuerySchema())
        return self.rpc_employees.my_invitations(request.user_id, query)

    @api("POST", "/invitations/<token>/accept", response=EmployeeSchema, status=200,
         errors=(403, 404))
    def accept_invitation(self, request, token):
        """Join the org; the caller's verified email must be the invited one."""
        return self.rpc_employees.accept_invitation(request.user_id, token)
