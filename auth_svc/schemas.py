"""Wire shapes of the auth service (marshmallow): what the gateway accepts,
what auth's RPCs accept, what they answer (documented in OpenAPI)."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from auth_svc import domain
from shared import examples as ex
from shared.pagination import page_schema

MAX_EMAIL = 254
MAX_TOKEN = 512


class NormalisedEmail(fields.String):
    """An email address, normalised (NFKC, trimmed, lower case) then checked."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        email = domain.normalise_email(text)
        if len(email) > MAX_EMAIL:
            raise ValidationError(f"Longer than maximum length {MAX_EMAIL}.")
        validate.Email()(email)
        return email


class Password(fields.String):
    """Any string up to 1024 bytes (the policy applies only to new passwords)."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text.encode("utf-8")) > domain.MAX_PASSWORD_BYTES:
            raise ValidationError(f"Longer than {domain.MAX_PASSWORD_BYTES} bytes.")
        if not text:
            raise ValidationError("Must not be empty.")
        return text


def _name(required=False):
    return fields.String(required=required,
                         validate=validate.Length(min=1, max=domain.MAX_NAME_LENGTH),
                         metadata={"example": ex.NAME})


def _token(example: str):
    return fields.String(required=True, validate=validate.Length(min=1, max=MAX_TOKEN),
                         metadata={"example": example})


def _email(required=True, example: str = ex.EMAIL):
    return NormalisedEmail(required=required, metadata={"example": example})


def _password():
    return Password(required=True, metadata={"example": ex.PASSWORD})


def _code():
    return fields.String(required=True, validate=validate.Length(min=1, max=32),
                         metadata={"example": ex.TOTP_CODE,
                                   "description": "a TOTP code, or a recovery code"})


class RegisterSchema(Schema):
    email = _email()
    password = _password()
    name = _name(required=True)


class LoginSchema(Schema):
    email = _email()
    password = _password()


class MfaLoginSchema(Schema):
    mfa_token = _token(ex.MFA_TOKEN)
    code = _code()


class RefreshSchema(Schema):
    refresh_token = _token(ex.REFRESH_TOKEN)


class ForgotPasswordSchema(Schema):
    email = _email()


class ResetPasswordSchema(Schema):
    token = _token(ex.EMAILED_TOKEN)
    password = _password()


class TokenSchema(Schema):
    token = _token(ex.EMAILED_TOKEN)


class CodeSchema(Schema):
    code = _code()


def _confirm_password():
    return Password(load_default=None, metadata={
        "example": ex.PASSWORD, "description": "your password, to confirm the change"})


def _confirm_code():
    return fields.String(load_default=None, validate=validate.Length(min=1, max=32), metadata={
        "example": ex.TOTP_CODE, "description": "or a TOTP / recovery code, to confirm"})


class ProfileUpdateSchema(Schema):
    """A new email needs ``password`` (or ``code``, with 2FA on) as well."""
    name = _name()
    email = _email(required=False, example=ex.NEW_EMAIL)
    password = _confirm_password()
    code = _confirm_code()

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not (data.get("name") or data.get("email")):
            raise ValidationError("Send name and/or email.", "_schema")


class ConfirmSchema(Schema):
    """Re-authentication for a sensitive change: the password, or a 2FA code."""
    password = _confirm_password()
    code = _confirm_code()


# -- answers (OpenAPI) -------------------------------------------------------
USER_EXAMPLE = {"user_id": ex.USER_ID, "email": ex.EMAIL, "name": ex.NAME,
                "email_verified": True, "mfa_enabled": False, "pending_email": None,
                "created_at": ex.CREATED_AT}
MFA_SECRET_EXAMPLE = "6WEMKJIKQKACVPZEX73YLA6NJ45MGIJT"
DEVICE_TOKEN_EXAMPLE = ("eyJhbGciOiJFZERTQSIsImtpZCI6Im9fR2JkNHZQIiwidHlwIjoiZGV2aWNlK2p3dCJ9."
                        "eyJzdWIiOiI2NmYxYzBkZSJ9.c2lnbmF0dXJl")


class UserSchema(Schema):
    user_id = fields.String(metadata={"example": ex.USER_ID})
    email = fields.String(metadata={"example": ex.EMAIL})
    name = fields.String(metadata={"example": ex.NAME})
    email_verified = fields.Boolean(metadata={"example": True})
    mfa_enabled = fields.Boolean(metadata={"example": False})
    pending_email = fields.String(allow_none=True, metadata={
        "example": None, "description": "the new address, until it is verified"})
    created_at = fields.DateTime(metadata={"example": ex.CREATED_AT})


class TokensSchema(Schema):
    """Tokens; or, from a login with 2FA on, only ``mfa_required``, ``mfa_token``
    and ``expires_in`` (send them to /auth/login/mfa)."""

    class Meta:
        # two shapes: the example shows the common one whole, not a mix of both
        example = {"user": USER_EXAMPLE, "access_token": ex.ACCESS_TOKEN,
                   "refresh_token": ex.REFRESH_TOKEN, "token_type": "Bearer", "expires_in": 900,
                   "device_token": DEVICE_TOKEN_EXAMPLE}

    user = fields.Nested(UserSchema)
    access_token = fields.String(metadata={"example": ex.ACCESS_TOKEN})
    refresh_token = fields.String(metadata={"example": ex.REFRESH_TOKEN})
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_in = fields.Integer(metadata={"example": 900, "description": "seconds"})
    mfa_required = fields.Boolean(metadata={"example": True})
    mfa_token = fields.String(metadata={"example": ex.MFA_TOKEN})
    device_token = fields.String(metadata={
        "example": DEVICE_TOKEN_EXAMPLE,
        "description": "keep it and send it as X-Device-Token when signing in again: a "
                       "locked account still lets a known device in (not on refresh)"})


class SessionSchema(Schema):
    session_id = fields.String(metadata={"example": ex.SESSION_ID})
    created_at = fields.DateTime(metadata={"example": ex.CREATED_AT})
    last_used_at = fields.DateTime(metadata={"example": ex.UPDATED_AT})
    ip = fields.String(allow_none=True, metadata={"example": "203.0.113.7"})
    user_agent = fields.String(allow_none=True, metadata={
        "example": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) Firefox/124.0"})
    current = fields.Boolean(metadata={"example": True})


class SessionListSchema(Schema):
    items = fields.List(fields.Nested(SessionSchema))
    next_cursor = fields.String(allow_none=True, metadata={"example": None,
                                                           "description": "always null: one page"})


class MfaSetupSchema(Schema):
    secret = fields.String(metadata={"example": MFA_SECRET_EXAMPLE})
    otpauth_uri = fields.String(metadata={"example": "otpauth://totp/Workforce:ada%40example.com"
                                                     f"?secret={MFA_SECRET_EXAMPLE}&issuer=Workforce"})


class RecoveryCodesSchema(Schema):
    recovery_codes = fields.List(fields.String(), metadata={
        "example": ["mrqe4-zmryt-k4ucd-yjdff", "p7mhm-xydx9-62w6p-sgve4",
                    "x22en-kf7n9-8ytyu-xe2ya", "52jqe-rxg9m-sewaj-v4972",
                    "xc9xc-bsfdr-rcxq2-6npb8", "k6kaf-aad6j-7ve8z-5kx2n",
                    "fjmwe-r7sgd-zj8ec-s9cpf", "jqzu8-gup6q-txzb9-3zq8j",
                    "h4tnw-m2kpe-q9rxa-vb7cs", "d3fyu-8wzgh-n5jmk-t6rqe"]})


class JwkSchema(Schema):
    kty = fields.String(metadata={"example": ex.JWK["kty"]})
    crv = fields.String(metadata={"example": ex.JWK["crv"]})
    x = fields.String(metadata={"example": ex.JWK["x"]})
    kid = fields.String(metadata={"example": ex.JWK["kid"]})
    alg = fields.String(metadata={"example": ex.JWK["alg"]})
    use = fields.String(metadata={"example": ex.JWK["use"]})


class JwksSchema(Schema):
    keys = fields.List(fields.Nested(JwkSchema))


class AcceptedSchema(Schema):
    """The answer to work done later (an email sent): the same whatever happens next."""
    status = fields.String(metadata={"enum": ["accepted"], "example": "accepted"})


# --- personal access tokens ----------------------------------------------------------
class TokenCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100),
                         metadata={"example": "CI deploys"})
    scope = fields.String(load_default="read", validate=validate.OneOf(domain.PAT_SCOPES),
                          metadata={"description": "read: GET only; write: every change but "
                                                   "admin ones; admin: everything the user may do",
                                    "example": "write"})
    org_id = fields.String(load_default=None, allow_none=True,
                           validate=validate.Length(min=1, max=64),
                           metadata={"description": "bind the token to this organization "
                                                    "(null: every organization of the user)",
                                     "example": ex.ORG_ID})
    expires_in_days = fields.Integer(load_default=domain.PAT_DEFAULT_DAYS,
                                     validate=validate.Range(min=1, max=domain.PAT_MAX_DAYS),
                                     metadata={"example": 30})


class AccessTokenSchema(Schema):
    token_id = fields.String(metadata={"example": "5f0c6d1e2a3b4c5d6e7f8091a2b3c4d5"})
    name = fields.String(metadata={"example": "CI deploys"})
    prefix = fields.String(metadata={"description": "the first characters of the token, to "
                                                    "recognise it", "example": "wfp_3kV1pQ"})
    scope = fields.String(metadata={"enum": list(domain.PAT_SCOPES), "example": "write"})
    org_id = fields.String(allow_none=True, metadata={"example": ex.ORG_ID})
    created_at = fields.DateTime(metadata={"example": ex.CREATED_AT})
    expires_at = fields.DateTime(metadata={"example": ex.DUE_AT})
    last_used_at = fields.DateTime(allow_none=True, metadata={
        "description": "at most a minute behind", "example": ex.UPDATED_AT})
    revoked_at = fields.DateTime(allow_none=True, metadata={"example": None})


class TokenCreatedSchema(AccessTokenSchema):
    token = fields.String(metadata={"description": "the secret: shown this once, never again",
                                    "example": "wfp_3kV1pQ0uJ1o3C4r1m0Yc0R8w7cVw7kq4hZ3bR2l1aE"})


TokenListSchema = page_schema("TokenList", AccessTokenSchema)  # one page: next_cursor null


def dump_token(token: dict, last_used_at=None) -> dict:
    """A stored token as the owner sees it: never its hash, never its secret."""
    seen = [t for t in (token.get("last_used_at"), last_used_at) if t is not None]
    return AccessTokenSchema().dump({**token, "token_id": token["_id"],
                                     "last_used_at": max(seen) if seen else None})


# --- service accounts -------------------------------------------------------------------
class ServiceAccountCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100),
                         metadata={"example": "Deploy bot"})
    role = fields.String(load_default="member",
                         validate=validate.OneOf(("admin", "manager", "member")),
                         metadata={"description": "its role in the organization (at most "
                                                  "the creator's)", "example": "member"})


class ServiceAccountSchema(Schema):
    user_id = fields.String(metadata={"example": ex.USER_ID})
    name = fields.String(metadata={"example": "Deploy bot"})
    email = fields.String(metadata={"description": "reserved, receives no mail",
                                    "example": "sa-5f0c6d1e@service-accounts.invalid"})
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    employee_id = fields.String(allow_none=True, metadata={
        "description": "its membership (in the create answer)", "example": ex.EMPLOYEE_ID})
    role = fields.String(allow_none=True, metadata={"example": "member"})
    created_by = fields.String(metadata={"example": ex.OTHER_USER_ID})
    created_at = fields.DateTime(metadata={"example": ex.CREATED_AT})


ServiceAccountPageSchema = page_schema("ServiceAccountPage", ServiceAccountSchema)  # one page


class ServiceTokenCreateSchema(TokenCreateSchema):
    class Meta:
        exclude = ("org_id",)  # always the service account's org


def dump_service_account(user: dict) -> dict:
    owner = user["service_account"]
    return ServiceAccountSchema().dump({
        "user_id": user["_id"], "name": user["name"], "email": user["email"],
        "org_id": owner["org_id"],
        "employee_id": None, "role": None, "created_by": owner["created_by"],
        "created_at": user.get("created_at")})
