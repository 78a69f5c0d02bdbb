"""The auth service: entrypoints only. The flows are in auth_svc.flows,
the rules in auth_svc.domain, the queries in auth_svc.store."""
from __future__ import annotations

import logging
from typing import Any

import redis
from nameko.extensions import DependencyProvider

from auth_svc import schemas
from auth_svc.domain import brief_user, normalise_email
from auth_svc.flows import Accounts, dummy_hash
from auth_svc.keys import KeyRing, load_keyring, publish_jwks
from auth_svc.pats import PersonalTokens
from auth_svc.service_accounts import ServiceAccounts
from auth_svc.store import AuthStore
from auth_svc.vault import Vault, load_vault
from shared import service as base
from shared.errors import ValidationFailed
from shared.mongo import Mongo
from shared.redis import make_client
from shared.rpc import rpc
from shared.timers import periodic

log = logging.getLogger(__name__)
JWKS_REFRESH_SECONDS = 60


class SigningKeys(DependencyProvider):
    """The key ring, loaded once per process; its JWKS goes to Redis at start."""

    def setup(self) -> None:
        self.ring = load_keyring(self.container.config)

    def start(self) -> None:  # before any worker runs: a client of its own, once
        client = make_client(self.container.config)
        try:
            publish(client, self.ring)
        finally:
            client.close()

    def get_dependency(self, worker_ctx) -> KeyRing:
        return self.ring


class DataKeys(DependencyProvider):
    """The keys of 2FA data at rest (auth_svc.vault), loaded once per process."""

    def setup(self) -> None:
        self.vault = load_vault(self.container.config)

    def get_dependency(self, worker_ctx) -> Vault:
        return self.vault


class DummyHashWarmup(DependencyProvider):
    """Computes the dummy bcrypt hash unknown emails are checked against at
    start, so the first such login does not take twice as long as others."""

    def start(self) -> None:
        rounds = int(self.container.config.get("BCRYPT_ROUNDS", 12))
        self.container.spawn_managed_thread(lambda: dummy_hash(rounds))


def publish(client: redis.Redis, ring: KeyRing) -> None:
    try:
        publish_jwks(client, ring)
    except redis.RedisError as exc:  # the timer tries again
        log.error("could not publish the JWKS to Redis: %s", exc)


def _load(schema, data: Any) -> dict:
    return schema.load(data if isinstance(data, dict) else {})


class AuthService(base.ServiceBase):
    name = "auth"

    store = Mongo(AuthStore)
    keys = SigningKeys()
    vault = DataKeys()
    warmup = DummyHashWarmup()

    @property
    def accounts(self) -> Accounts:
        return Accounts(self.store, self.redis.client, self.events, self.config, self.keys,
                        self.vault)

    @property
    def tokens(self) -> PersonalTokens:
        return PersonalTokens(self.store, self.redis.client)

    @property
    def service_accounts(self) -> ServiceAccounts:
        return ServiceAccounts(self.store, self.tokens, self.events)

    @periodic(interval=JWKS_REFRESH_SECONDS)
    def publish_keys(self) -> None:
        """Re-assert the public keys in Redis (after a Redis restart, say)."""
        publish(self.redis.client, self.keys)

    # -- accounts and tokens (the gateway passes the client's ip and user agent)
    @rpc(sensitive_arguments=("data.password",))
    def register(self, data: dict, ip: str | None = None, user_agent: str | None = None) -> dict:
        body = _load(schemas.RegisterSchema(), data)
        return self.accounts.register(body["email"], body["password"], body["name"],
                                      ip, user_agent)

    @rpc(sensitive_arguments=("data.password", "device_token"))
    def login(self, data: dict, ip: str | None = None, user_agent: str | None = None,
              device_token: str | None = None) -> dict:
        body = _load(schemas.LoginSchema(), data)
        return self.accounts.login(body["email"], body["password"], ip, user_agent, device_token)

    @rpc(sensitive_arguments=("data.mfa_token", "data.code"))
    def login_mfa(self, data: dict, ip: str | None = None, user_agent: str | None = None) -> dict:
        body = _load(schemas.MfaLoginSchema(), data)
        return self.accounts.login_mfa(body["mfa_token"], body["code"], ip, user_agent)

    @rpc(sensitive_arguments=("data.refresh_token",))
    def refresh(self, data: dict, ip: str | None = None, user_agent: str | None = None) -> dict:
        body = _load(schemas.RefreshSchema(), data)
        return self.accounts.refresh(body["refresh_token"], ip, user_agent)

    @rpc
    def logout(self, user_id: str, session_id: str, jti: str, exp: int) -> None:
        self.accounts.logout(user_id, session_id, jti, exp)

    @rpc
    def list_sessions(self, user_id: str, current_session_id: str | None = None) -> dict:
        return self.accounts.sessions(user_id, current_session_id)

    @rpc
    def revoke_session(self, user_id: str, session_id: str) -> None:
        self.accounts.revoke_session(user_id, session_id)

    @rpc
    def forgot_password(self, data: dict) -> None:
        self.accounts.forgot_password(_load(schemas.ForgotPasswordSchema(), data)["email"])

    @rpc(sensitive_arguments=("data.token", "data.password"))
    def reset_password(self, data: dict) -> None:
        body = _load(schemas.ResetPasswordSchema(), data)
        self.accounts.reset_password(body["token"], body["password"])

    @rpc(sensitive_arguments=("data.token",))
    def verify_email(self, data: dict) -> None:
        self.accounts.verify_email(_load(schemas.TokenSchema(), data)["token"])

    @rpc(sensitive_arguments=("data.token",))
    def unlock(self, data: dict) -> None:
        self.accounts.unlock(_load(schemas.TokenSchema(), data)["token"])

    @rpc
    def resend_verification(self, user_id: str) -> None:
        self.accounts.resend_verification(user_id)

    @rpc
    def confirm_email(self, user_id: str) -> None:
        """Operator only (``ops.cli verify-email``, no HTTP route): vouch for the
        account's current address as if its link had been used."""
        self.accounts.confirm_email(user_id)

    # -- two-factor ---------------------------------------------------------
    @rpc
    def mfa_setup(self, user_id: str) -> dict:
        return self.accounts.mfa_setup(user_id)

    @rpc(sensitive_arguments=("data.code",))
    def mfa_enable(self, user_id: str, data: dict) -> dict:
        return self.accounts.mfa_enable(user_id, _load(schemas.CodeSchema(), data)["code"])

    @rpc(sensitive_arguments=("data.code", "device_token"))
    def mfa_disable(self, user_id: str, data: dict, ip: str | None = None, user_agent: str | None = None,
                    device_token: str | None = None) -> None:
        self.accounts.mfa_disable(user_id, _load(schemas.CodeSchema(), data)["code"], ip,
                                  device_token)

    @rpc(sensitive_arguments=("data.code", "device_token"))
    def new_recovery_codes(self, user_id: str, data: dict, ip: str | None = None,
                           user_agent: str | None = None,
                           device_token: str | None = None) -> dict:
        return self.accounts.new_recovery_codes(
            user_id, _load(schemas.CodeSchema(), data)["code"], ip, device_token)

    # -- profile --------------------------------------------------------------
    @rpc
    def get_me(self, user_id: str) -> dict:
        return self.accounts.me(user_id)

    @rpc(sensitive_arguments=("data.password", "data.code", "device_token"))
    def update_me(self, user_id: str, data: dict, ip: str | None = None, user_agent: str | None = None,
                  device_token: str | None = None) -> dict:
        return self.accounts.update_me(user_id, _load(schemas.ProfileUpdateSchema(), data),
                                       ip, device_token)

    @rpc(sensitive_arguments=("data.password", "data.code", "device_token"))
    def delete_me(self, user_id: str, data: dict | None = None, ip: str | None = None,
                  user_agent: str | None = None, device_token: str | None = None) -> None:
        self.accounts.delete_me(user_id, _load(schemas.ConfirmSchema(), data), ip, device_token)
        self.tokens.revoke_all(user_id)

    # -- personal access tokens (auth_svc.pats) ------------------------------------
    @rpc
    def create_token(self, user_id: str, data: dict) -> dict:
        """A new token: the answer holds its secret, the only time it is given out."""
        return self.tokens.create(user_id, _load(schemas.TokenCreateSchema(), data))

    @rpc
    def list_tokens(self, user_id: str) -> dict:
        return self.tokens.list(user_id)

    @rpc
    def revoke_token(self, user_id: str, token_id: str) -> None:
        self.tokens.revoke(user_id, str(token_id))

    # -- service accounts (auth_svc.service_accounts; the gateway checked the org admin) ----
    @rpc
    def create_service_account(self, org_id: str, creator_user_id: str, data: dict) -> dict:
        body = _load(schemas.ServiceAccountCreateSchema(), data)
        return self.service_accounts.create(str(org_id), creator_user_id, body["name"])

    @rpc
    def list_service_accounts(self, org_id: str) -> dict:
        return self.service_accounts.list(str(org_id))

    @rpc
    def delete_service_account(self, org_id: str, user_id: str, actor_id: str) -> None:
        self.service_accounts.delete(str(org_id), str(user_id), actor_id)

    @rpc
    def create_service_token(self, org_id: str, user_id: str, data: dict) -> dict:
        return self.service_accounts.create_token(
            str(org_id), str(user_id), _load(schemas.ServiceTokenCreateSchema(), data))

    @rpc
    def list_service_tokens(self, org_id: str, user_id: str) -> dict:
        return self.service_accounts.list_tokens(str(org_id), str(user_id))

    @rpc
    def revoke_service_token(self, org_id: str, user_id: str, token_id: str) -> None:
        self.service_accounts.revoke_token(str(org_id), str(user_id), str(token_id))

    @periodic(interval=JWKS_REFRESH_SECONDS)
    def publish_tokens(self) -> None:
        """Re-assert the live tokens' records and the recent revocations in Redis."""
        try:
            self.tokens.publish()
        except redis.RedisError as exc:  # the next tick tries again
            log.error("could not publish access tokens to Redis: %s", exc)

    # -- for other services -------------------------------------------------------
    @rpc
    def get_user(self, user_id: str) -> dict | None:
        """``{user_id, email, name, email_verified}`` or None."""
        user = self.store.user(user_id) if isinstance(user_id, str) else None
        return brief_user(user) if user else None

    @rpc
    def get_users(self, user_ids: list[str]) -> list[dict]:
        """The users found among ``user_ids`` (at most 1000), in no order."""
        if not isinstance(user_ids, (list, tuple)):
            raise ValidationFailed("user_ids must be a list.", errors={"user_ids": ["Not a list."]})
        ids = [i for i in user_ids[:1000] if isinstance(i, str)]
        return [brief_user(user) for user in self.store.users(ids)]

    @rpc
    def find_user_by_email(self, email: str) -> dict | None:
        if not isinstance(email, str):
            return None
        user = self.store.user_by_email(normalise_email(email))
        return brief_user(user) if user else None

    @rpc
    def user_exists(self, user_id: str) -> bool:
        return isinstance(user_id, str) and self.store.user(user_id) is not None

    @rpc
    def jwks(self) -> dict:
        return self.keys.jwks()

    # -- for operators (ops.cli create-admin; the web console's operator pages) ----
    @rpc
    def set_operator(self, email: str, operator: bool = True) -> dict | None:
        """Grant (or take away) the operator flag; answers the user or None."""
        user = self.store.user_by_email(normalise_email(email)) if isinstance(email, str) else None
        if user is None:
            return None
        self.store.update_user(user["_id"], {"operator": bool(operator)})
        return brief_user(user)

    @rpc
    def is_operator(self, user_id: str) -> bool:
        user = self.store.user(user_id) if isinstance(user_id, str) else None
        return bool(user and user.get("operator") and not user.get("deleted_at"))
