"""Service accounts of an org (auth_svc.service_accounts): non-human members
that hold personal access tokens bound to the org. Creating one is two steps
across two services (auth makes the account, employees its membership), so
the route undoes the first when the second is refused."""
from __future__ import annotations

from auth_svc.schemas import (
    ServiceAccountCreateSchema,
    ServiceAccountPageSchema,
    ServiceAccountSchema,
    ServiceTokenCreateSchema,
    TokenCreatedSchema,
    TokenListSchema,
)
from employee_svc.domain import check_can_add
from gateway_svc.http import api, read_json
from shared.errors import AppError
from shared.redis import RedisTools
from shared.rpc import ServiceProxy
from shared.tenancy import require_member

ACCOUNTS = "/orgs/<org_id>/service-accounts"
ACCOUNT = f"{ACCOUNTS}/<account_id>"


class ServiceAccountRoutes:
    # the gateway's dependencies (gateway_svc.service.GatewayService) this mixin reads
    redis: RedisTools
    rpc_employees: ServiceProxy

    def _admin(self, request, org_id: str, action: str) -> dict:
        return require_member(self.redis, self.rpc_employees, org_id, request.user_id, action)

    @api("POST", ACCOUNTS, body=ServiceAccountCreateSchema, response=ServiceAccountSchema,
         status=201, errors=(403, 404))
    def create_service_account(self, request, org_id):
        """A non-human member of the org with the given role (at most yours)."""
        body = read_json(request, ServiceAccountCreateSchema())
        actor = self._admin(request, org_id, "employee.add")
        check_can_add(actor["role"], body["role"])
        account = self.rpc_auth.create_service_account(org_id, request.user_id, body)
        try:
            employee = self.rpc_employees.add_service_account(
                request.user_id, org_id, {**account, "role": body["role"]})
        except AppError:  # a plan's seat limit, say: no account without its membership
            self.rpc_auth.delete_service_account(org_id, account["user_id"], request.user_id)
            raise
        return 201, {**account, "employee_id": employee["employee_id"], "role": employee["role"]}

    @api("GET", ACCOUNTS, response=ServiceAccountPageSchema, errors=(403, 404))
    def list_service_accounts(self, request, org_id):
        self._admin(request, org_id, "employee.read")
        return self.rpc_auth.list_service_accounts(org_id)

    @api("DELETE", ACCOUNT, status=204, errors=(403, 404))
    def delete_service_account(self, request, org_id, account_id):
        """Its tokens are revoked at once; its membership goes (``user.deleted``)."""
        self._admin(request, org_id, "employee.remove")
        self.rpc_auth.delete_service_account(org_id, account_id, request.user_id)
        return 204, None

    @api("POST", f"{ACCOUNT}/tokens", body=ServiceTokenCreateSchema, response=TokenCreatedSchema,
         status=201, errors=(403, 404))
    def create_service_token(self, request, org_id, account_id):
        """A token of the service account, bound to this org; its secret is shown once."""
        body = read_json(request, ServiceTokenCreateSchema())
        self._admin(request, org_id, "employee.add")
        return 201, self.rpc_auth.create_service_token(org_id, account_id, body)

    @api("GET", f"{ACCOUNT}/tokens", response=TokenListSchema, errors=(403, 404))
    def list_service_tokens(self, request, org_id, account_id):
        self._admin(request, org_id, "employee.read")
        return self.rpc_auth.list_service_tokens(org_id, account_id)

    @api("DELETE", f"{ACCOUNT}/tokens/<token_id>", status=204, errors=(403, 404))
    def revoke_service_token(self, request, org_id, account_id, token_id):
        self._admin(request, org_id, "employee.add")
        self.rpc_auth.revoke_service_token(org_id, account_id, token_id)
        return 204, None
