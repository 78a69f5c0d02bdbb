"""Service accounts: non-human users owned by one organization, that hold
personal access tokens (GitLab's and Plane's "bot users", kept minimal).

A service account is a ``users`` document flagged ``service_account:
{org_id, created_by}``, with no password (login compares against the dummy
hash and fails like an unknown address) and an address under the reserved
``.invalid`` domain (RFC 2606) that no one can receive mail at, so no reset
or verification link can be used. Its membership of the org (the role) is the
employees service's, added by the gateway's flow
(``gateway_svc.routes.service_accounts``). Its tokens are always bound to its
org. Deleting it revokes its tokens and publishes ``user.deleted`` (the
membership goes as for any deleted user).
"""
from __future__ import annotations

import uuid

from auth_svc import schemas
from auth_svc.pats import PersonalTokens
from auth_svc.store import AuthStore
from shared.errors import NotFound
from shared.mongo import utcnow
from shared.pagination import whole

DOMAIN = "service-accounts.invalid"


def is_service_account(user: dict | None) -> bool:
    return bool(user and user.get("service_account"))


class ServiceAccounts:
    def __init__(self, store: AuthStore, tokens: PersonalTokens, events):
        self.store = store
        self.tokens = tokens
        self.events = events

    def create(self, org_id: str, creator_user_id: str, name: str) -> dict:
        user_id = uuid.uuid4().hex
        now = utcnow()
        user = self.store.insert_user({
            "_id": user_id, "email": f"sa-{user_id}@{DOMAIN}", "name": name,
            "password_hash": None, "email_verified": True, "deleted_at": None,
            "service_account": {"org_id": org_id, "created_by": creator_user_id},
            "created_at": now, "updated_at": now})
        return schemas.dump_service_account(user)

    def list(self, org_id: str) -> dict:
        return whole(schemas.dump_service_account(u) for u in self.store.service_accounts(org_id))

    def of_org(self, org_id: str, user_id: str) -> dict:
        user = self.store.user(user_id) if isinstance(user_id, str) else None
        if user is None or not is_service_account(user) \
                or user["service_account"]["org_id"] != org_id:
            raise NotFound("No such service account.")
        return user

    def create_token(self, org_id: str, user_id: str, data: dict) -> dict:
        self.of_org(org_id, user_id)
        return self.tokens.create(user_id, {**data, "org_id": org_id})

    def list_tokens(self, org_id: str, user_id: str) -> dict:
        self.of_org(org_id, user_id)
        return self.tokens.list(user_id)

    def revoke_token(self, org_id: str, user_id: str, token_id: str) -> None:
        self.of_org(org_id, user_id)
        self.tokens.revoke(user_id, token_id)

    def delete(self, org_id: str, user_id: str, actor_id: str) -> None:
        user = self.of_org(org_id, user_id)
        self.tokens.revoke_all(user_id)
        self.store.soft_delete_user(user_id)
        self.events.publish("user.deleted", {"user_id": user_id, "email": user["email"]},
                            actor_id=actor_id)
