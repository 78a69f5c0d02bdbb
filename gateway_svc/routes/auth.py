"""Gateway routes for auth (api.md). Entrypoints stay thin: validate, one
RPC, shape the answer. The client's IP and User-Agent go to auth with the
calls that create or use a session."""
from auth_svc.schemas import (
    AcceptedSchema,
    CodeSchema,
    ConfirmSchema,
    ForgotPasswordSchema,
    JwksSchema,
    LoginSchema,
    MfaLoginSchema,
    MfaSetupSchema,
    ProfileUpdateSchema,
    RecoveryCodesSchema,
    RefreshSchema,
    RegisterSchema,
    ResetPasswordSchema,
    SessionListSchema,
    TokenSchema,
    TokensSchema,
    UserSchema,
)
from gateway_svc.http import api, client_ip, read_json

MAX_USER_AGENT = 256
DEVICE_HEADER = "X-Device-Token"   # the "known device" token a sign-in answered


def client(request, device: bool = False) -> dict:
    """Who is asking: IP, User-Agent and, where lockout applies, the device token."""
    who = {"ip": client_ip(request),
           "user_agent": (request.headers.get("User-Agent") or "")[:MAX_USER_AGENT]}
    if device:
        who["device_token"] = request.headers.get(DEVICE_HEADER) or None
    return who


class AuthRoutes:
    @api("POST", "/auth/register", auth=False, limit="auth", body=RegisterSchema,
         response=TokensSchema, status=201, errors=(409, 422))
    def register(self, request):
        """Create an account; a verification email is sent."""
        body = read_json(request, RegisterSchema())
        return 201, self.rpc_auth.register(body, **client(request))

    @api("POST", "/auth/login", auth=False, limit="auth", body=LoginSchema,
         response=TokensSchema, status=200, errors=(401, 422, 423, 429))
    def login(self, request):
        """Tokens, or ``{mfa_required: true, mfa_token}`` when 2FA is on.

        Send the ``device_token`` of an earlier sign-in as ``X-Device-Token``: a
        locked account still lets that client in."""
        body = read_json(request, LoginSchema())
        return self.rpc_auth.login(body, **client(request, device=True))

    @api("POST", "/auth/login/mfa", auth=False, limit="auth", body=MfaLoginSchema,
         response=TokensSchema, status=200, errors=(401, 422, 423, 429))
    def login_mfa(self, request):
        """Second login step: the mfa_token and a TOTP or recovery code."""
        body = read_json(request, MfaLoginSchema())
        return self.rpc_auth.login_mfa(body, **client(request))

    @api("POST", "/auth/refresh", auth=False, limit="auth", body=RefreshSchema,
         response=TokensSchema, status=200, errors=(401, 422))
    def refresh(self, request):
        """Rotate: a used refresh token revokes its whole session."""
        body = read_json(request, RefreshSchema())
        return self.rpc_auth.refresh(body, **client(request))

    @api("POST", "/auth/logout", status=204, errors=(401,))
    def logout(self, request):
        """Revoke this session and this access token."""
        claims = request.token_claims
        self.rpc_auth.logout(request.user_id, claims.get("sid"), claims["jti"], claims["exp"])
        return 204, None

    @api("POST", "/auth/password/forgot", auth=False, limit="auth", body=ForgotPasswordSchema,
         response=AcceptedSchema, status=202, errors=(422,))
    def forgot_password(self, request):
        """Same answer whether or not the email has an account."""
        self.rpc_auth.forgot_password(read_json(request, ForgotPasswordSchema()))
        return 202, {"status": "accepted"}

    @api("POST", "/auth/password/reset", auth=False, limit="auth", body=ResetPasswordSchema,
         status=204, errors=(422,))
    def reset_password(self, request):
        """Set a new password with an emailed token; every session is revoked."""
        self.rpc_auth.reset_password(read_json(request, ResetPasswordSchema()))
        return 204, None

    @api("POST", "/auth/email/verify", auth=False, limit="auth", body=TokenSchema,
         status=204, errors=(422,))
    def verify_email(self, request):
        self.rpc_auth.verify_email(read_json(request, TokenSchema()))
        return 204, None

    @api("POST", "/auth/unlock", auth=False, limit="auth", body=TokenSchema,
         status=204, errors=(422,))
    def unlock(self, request):
        """Lift the lock of an account with the emailed unlock link's token."""
        self.rpc_auth.unlock(read_json(request, TokenSchema()))
        return 204, None

    @api("POST", "/auth/email/resend", limit="auth", response=AcceptedSchema, status=202,
         errors=(401, 409))
    def resend_verification(self, request):
        """Send the verification email again (to the pending address if changing)."""
        self.rpc_auth.resend_verification(request.user_id)
        return 202, {"status": "accepted"}

    @api("POST", "/auth/mfa/setup", response=MfaSetupSchema, status=200, errors=(401, 409))
    def mfa_setup(self, request):
        return self.rpc_auth.mfa_setup(request.user_id)

    @api("POST", "/auth/mfa/enable", body=CodeSchema, response=RecoveryCodesSchema, status=200,
         errors=(401, 409, 422))
    def mfa_enable(self, request):
        """Turn 2FA on with a code from the app; answers the recovery codes, once."""
        return self.rpc_auth.mfa_enable(request.user_id, read_json(request, CodeSchema()))

    @api("POST", "/auth/mfa/disable", body=CodeSchema, status=204,
         errors=(401, 403, 409, 422, 423, 429))
    def mfa_disable(self, request):
        """Turn 2FA off: needs a current TOTP or recovery code."""
        self.rpc_auth.mfa_disable(request.user_id, read_json(request, CodeSchema()),
                                  **client(request, device=True))
        return 204, None

    @api("POST", "/auth/mfa/recovery-codes", body=CodeSchema, response=RecoveryCodesSchema,
         status=200, errors=(401, 403, 409, 422, 423, 429))
    def new_recovery_codes(self, request):
        """New recovery codes, shown once (the old ones stop working).

        Needs a current TOTP or recovery code."""
        return self.rpc_auth.new_recovery_codes(request.user_id, read_json(request, CodeSchema()),
                                                **client(request, device=True))

    @api("GET", "/auth/sessions", response=SessionListSchema, errors=(401,))
    def list_sessions(self, request):
        return self.rpc_auth.list_sessions(request.user_id, request.token_claims.get("sid"))

    @api("DELETE", "/auth/sessions/<session_id>", status=204, errors=(401, 404))
    def revoke_session(self, request, session_id):
        self.rpc_auth.revoke_session(request.user_id, session_id)
        return 204, None

    @api("GET", "/auth/jwks.json", auth=False, limit="public", response=JwksSchema)
    def jwks(self, request):
        """The public keys that verify access tokens."""
        return 200, {"Cache-Control": "public, max-age=300"}, self.rpc_auth.jwks()

    @api("GET", "/users/me", response=UserSchema, errors=(401,))
    def get_me(self, request):
        return self.rpc_auth.get_me(request.user_id)

    @api("PATCH", "/users/me", body=ProfileUpdateSchema, response=UserSchema,
         errors=(401, 403, 409, 422, 423, 429))
    def update_me(self, request):
        """Name, or email (applied once the new address is verified).

        A new email needs ``password`` (or ``code``, with 2FA on)."""
        return self.rpc_auth.update_me(request.user_id, read_json(request, ProfileUpdateSchema()),
                                       **client(request, device=True))

    @api("DELETE", "/users/me", body=ConfirmSchema, status=204,
         errors=(401, 403, 422, 423, 429))
    def delete_me(self, request):
        """Soft delete, confirmed with ``password`` (or ``code``): every session is revoked."""
        self.rpc_auth.delete_me(request.user_id, read_json(request, ConfirmSchema()),
                                **client(request, device=True))
        return 204, None
