"""Personal access tokens (auth_svc.pats): the caller's own, at /me/tokens.
A token bound to an organization needs its creator to be an active member of
it (404 otherwise). Tokens cannot call these routes (gateway_svc.scopes)."""
from __future__ import annotations

from auth_svc.schemas import TokenCreatedSchema, TokenCreateSchema, TokenListSchema
from gateway_svc.http import api, read_json
from shared.tenancy import require_member


class TokenRoutes:
    @api("POST", "/me/tokens", body=TokenCreateSchema, response=TokenCreatedSchema, status=201,
         errors=(403, 404))
    def create_token(self, request):
        """A new token; the answer shows its secret (``wfp_...``) this once only.
        Send it as ``Authorization: Bearer wfp_...``."""
        body = read_json(request, TokenCreateSchema())
        if body.get("org_id"):
            require_member(self.redis, self.rpc_employees, body["org_id"], request.user_id)
        return 201, self.rpc_auth.create_token(request.user_id, body)

    @api("GET", "/me/tokens", response=TokenListSchema)
    def list_tokens(self, request):
        """Every token of the caller, revoked and expired ones included, with when
        each was last used (at most a minute behind)."""
        return self.rpc_auth.list_tokens(request.user_id)

    @api("DELETE", "/me/tokens/<token_id>", status=204, errors=(404,))
    def revoke_token(self, request, token_id):
        """Revoke: the gateway refuses the token within a second."""
        self.rpc_auth.revoke_token(request.user_id, token_id)
        return 204, None
