"""Personal access tokens: ``wfp_`` + 256 random bits, shown once, stored as
their SHA-256 (``access_tokens``), each with a name, a scope (read, write,
admin), an optional organization and an expiry.

The gateway checks them without an RPC: auth writes what it needs of a live
token to ``auth:pat:{sha256}`` (no secret; TTL until the token expires) and
overwrites it with ``revoked`` when it is revoked (TTL the same), so the
gateway's next request with it is a 401. ``publish`` re-asserts both every
minute: a live token's record with ``SET NX`` (it never overwrites a
revocation, even one racing it) and the revocations of the last
``REVOCATIONS_REASSERTED`` seconds with a plain ``SET`` (a revocation whose
Redis write failed still lands within a minute). The gateway writes when a
token was last used to ``gateway:pat:used:{token_id}`` at most once a minute;
listing the tokens reads those and keeps them in MongoDB.
"""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import redis

from auth_svc import domain, schemas
from auth_svc.store import AuthStore
from auth_svc.tokens import digest, new_secret
from shared.errors import NotFound, Unauthorized, ValidationFailed
from shared.mongo import utcnow
from shared.pagination import whole
from shared.redis import mget

log = logging.getLogger(__name__)

RECORD_PREFIX = "auth:pat:"
USED_PREFIX = "gateway:pat:used:"   # the gateway's report (gateway_svc.identity)
REVOKED = "revoked"
REVOCATIONS_REASSERTED = 24 * 3600


def record_key(token_hash: str) -> str:
    return f"{RECORD_PREFIX}{token_hash}"


def _ttl(token: dict, now) -> int:
    return max(1, int((token["expires_at"] - now).total_seconds()) + 1)


class PersonalTokens:
    def __init__(self, store: AuthStore, client: redis.Redis):
        self.store = store
        self.redis = client

    def create(self, user_id: str, data: dict) -> dict:
        if self.store.user(user_id) is None:
            raise Unauthorized("This account no longer exists.")
        now = utcnow()
        if self.store.count_live_access_tokens(user_id, now) >= domain.PAT_MAX_PER_USER:
            raise ValidationFailed(f"At most {domain.PAT_MAX_PER_USER} live tokens; revoke one.",
                                   errors={"name": ["Too many tokens."]})
        body = new_secret()
        secret = f"{domain.PAT_PREFIX}{body}"
        token = self.store.insert_access_token({
            "_id": uuid.uuid4().hex, "user_id": user_id, "name": data["name"],
            "prefix": domain.pat_display(body), "token_hash": digest(secret),
            "scope": data["scope"], "org_id": data.get("org_id"), "created_at": now,
            "expires_at": now + timedelta(days=data["expires_in_days"]),
            "last_used_at": None, "revoked_at": None})
        try:
            self.redis.set(record_key(token["token_hash"]), json.dumps(domain.pat_record(token)),
                           ex=_ttl(token, now))
        except redis.RedisError as exc:  # publish() writes it within a minute
            log.warning("could not cache a new access token: %s", exc)
        return {**schemas.dump_token(token), "token": secret}

    def list(self, user_id: str) -> dict:
        tokens = self.store.access_tokens(user_id)
        used = self._reported_uses([t["_id"] for t in tokens])
        for token in tokens:
            at = used.get(token["_id"])
            if at is not None and (token.get("last_used_at") is None
                                   or at > token["last_used_at"]):
                self.store.note_access_token_use(token["_id"], at)
        return whole(schemas.dump_token(t, used.get(t["_id"])) for t in tokens)

    def revoke(self, user_id: str, token_id: str) -> None:
        token = self.store.revoke_access_token(user_id, token_id, utcnow())
        if token is None:
            raise NotFound("No such token (or it was revoked already).")
        self._tombstone([token])

    def revoke_all(self, user_id: str) -> None:
        self._tombstone(self.store.revoke_user_access_tokens(user_id, utcnow()))

    def publish(self) -> None:
        """Re-assert every live token's record and the recent revocations."""
        now = utcnow()
        with self.redis.pipeline(transaction=False) as pipe:
            for token in self.store.live_access_tokens(now):
                pipe.set(record_key(token["token_hash"]), json.dumps(domain.pat_record(token)),
                         ex=_ttl(token, now), nx=True)
            pipe.execute()
            for token in self.store.recently_revoked_access_tokens(
                    now - timedelta(seconds=REVOCATIONS_REASSERTED)):
                if token["expires_at"] > now:
                    pipe.set(record_key(token["token_hash"]), REVOKED, ex=_ttl(token, now))
            pipe.execute()

    def _tombstone(self, tokens: Sequence[dict]) -> None:
        now = utcnow()
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for token in tokens:
                    pipe.set(record_key(token["token_hash"]), REVOKED, ex=_ttl(token, now))
                pipe.execute()
        except redis.RedisError as exc:  # publish() writes it within a minute
            log.warning("could not mark access tokens revoked in Redis: %s", exc)

    def _reported_uses(self, token_ids: Sequence[str]) -> dict:
        if not token_ids:
            return {}
        try:
            values = mget(self.redis, [f"{USED_PREFIX}{i}" for i in token_ids])
        except redis.RedisError as exc:
            log.warning("could not read access token uses: %s", exc)
            return {}
        return {i: datetime.fromtimestamp(int(v), timezone.utc)
                for i, v in zip(token_ids, values, strict=True) if v and v.isdigit()}
