"""Wire shapes of the auth service (marshmallow): what the gateway accepts,
what auth's RPCs accept, what they answer (documented in OpenAPI)."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from auth_svc import domain

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
                         validate=validate.Length(min=1, max=domain.MAX_NAME_LENGTH))


def _token():
    return fields.String(required=True, validate=validate.Length(min=1, max=MAX_TOKEN))


class RegisterSchema(Schema):
    email = NormalisedEmail(required=True)
    password = Password(required=True)
    name = _name(required=True)


class LoginSchema(Schema):
    email = NormalisedEmail(required=True)
    password = Password(required=True)


class MfaLoginSchema(Schema):
    mfa_token = _token()
    code = fields.String(required=True, validate=validate.Length(min=1, max=32))


class RefreshSchema(Schema):
    refresh_token = _token()


class ForgotPasswordSchema(Schema):
    email = NormalisedEmail(required=True)


class ResetPasswordSchema(Schema):
    token = _token()
    password = Password(required=True)


class TokenSchema(Schema):
    token = _token()


class CodeSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=32))


class ProfileUpdateSchema(Schema):
    name = _name()
    email = NormalisedEmail()

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send name and/or email.", "_schema")


# -- answers (OpenAPI) -------------------------------------------------------
class UserSchema(Schema):
    user_id = fields.String()
    email = fields.String()
    name = fields.String()
    email_verified = fields.Boolean()
    mfa_enabled = fields.Boolean()
    pending_email = fields.String(allow_none=True)
    created_at = fields.DateTime()


class TokensSchema(Schema):
    user = fields.Nested(UserSchema)
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()
    mfa_required = fields.Boolean()
    mfa_token = fields.String()


class SessionSchema(Schema):
    session_id = fields.String()
    created_at = fields.DateTime()
    last_used_at = fields.DateTime()
    ip = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    current = fields.Boolean()


class SessionListSchema(Schema):
    items = fields.List(fields.Nested(SessionSchema))
    next_cursor = fields.String(allow_none=True)


class MfaSetupSchema(Schema):
    secret = fields.String()
    otpauth_uri = fields.String()


class RecoveryCodesSchema(Schema):
    recovery_codes = fields.List(fields.String())


class JwkSchema(Schema):
    kty = fields.String()
    crv = fields.String()
    x = fields.String()
    kid = fields.String()
    alg = fields.String()
    use = fields.String()


class JwksSchema(Schema):
    keys = fields.List(fields.Nested(JwkSchema))


class AcceptedSchema(Schema):
    """The answer to work done later (an email sent): the same whatever happens next."""
    status = fields.String(metadata={"enum": ["accepted"], "example": "accepted"})
