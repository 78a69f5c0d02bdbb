"""The auth service's MongoDB collections: indexes beside the queries.

users                      _id, email (normalised, unique), name, password_hash,
                           email_verified, pending_email, deleted_at, mfa{enabled,
                           secret_enc / pending_secret_enc (encrypted, auth_svc.vault),
                           last_step, recovery_codes (keyed hashes)}
refresh_tokens             one document per session: _id = session id,
                           token_hash (current), used_hashes (rotated out),
                           revoked_at, expires_at (TTL)
password_reset_tokens      _id = SHA-256 of the token, user_id, expires_at (TTL), used_at
email_verification_tokens  _id = SHA-256 of the token, user_id, email, expires_at (TTL), used_at
unlock_tokens              _id = SHA-256 of the token, user_id, expires_at (TTL), used_at
access_tokens              personal access tokens: _id (token id), user_id, name, prefix
                           (wfp_ + 6 characters), token_hash (SHA-256, unique), scope,
                           org_id (or None: every org), created_at, expires_at,
                           last_used_at, revoked_at
"""
from __future__ import annotations

from datetime import timedelta

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict
from shared.mongo import BaseStore, find_by_id, find_by_ids, utcnow, write_at_version

USED_HASHES_KEPT = 100   # rotated-out refresh tokens remembered per session (reuse detection)


class AuthStore(BaseStore):
    INDEXES = {
        "users": [IndexModel("email", unique=True), IndexModel("service_account.org_id")],
        "refresh_tokens": [IndexModel("token_hash", unique=True),
                           IndexModel("used_hashes"),
                           IndexModel([("user_id", ASCENDING), ("revoked_at", ASCENDING)]),
                           IndexModel("expires_at", expireAfterSeconds=0)],
        "password_reset_tokens": [IndexModel("user_id"),
                                  IndexModel("expires_at", expireAfterSeconds=0)],
        "email_verification_tokens": [IndexModel("user_id"),
                                      IndexModel("expires_at", expireAfterSeconds=0)],
        "unlock_tokens": [IndexModel("user_id"), IndexModel("expires_at", expireAfterSeconds=0)],
        "access_tokens": [IndexModel("token_hash", unique=True),
                          IndexModel([("user_id", ASCENDING), ("created_at", ASCENDING)]),
                          IndexModel([("revoked_at", ASCENDING), ("expires_at", ASCENDING)])],
    }

    # -- users -------------------------------------------------------------
    def insert_user(self, doc: dict, session=None) -> dict:
        try:
            self.db.users.insert_one(doc, session=session)
        except DuplicateKeyError:
            raise Conflict("An account with this email already exists.",
                           errors={"email": ["Already registered."]}) from None
        return doc

    def user(self, user_id: str) -> dict | None:
        return find_by_id(self.db.users, user_id, deleted_at=None)

    def users(self, user_ids: list[str]) -> list[dict]:
        return find_by_ids(self.db.users, user_ids, deleted_at=None)

    def service_accounts(self, org_id: str) -> list[dict]:
        return list(self.db.users.find({"service_account.org_id": org_id, "deleted_at": None})
                    .sort("created_at", ASCENDING))

    def user_by_email(self, email: str) -> dict | None:
        return self.db.users.find_one({"email": email, "deleted_at": None})

    def update_user(self, user_id: str, changes: dict, session=None, unset=None) -> dict | None:
        update = {"$set": {**changes, "updated_at": utcnow()}}
        if unset:
            update["$unset"] = {field: "" for field in unset}
        try:
            return self.db.users.find_one_and_update(
                {"_id": user_id, "deleted_at": None}, update,
                return_document=ReturnDocument.AFTER, session=session)
        except DuplicateKeyError:
            raise Conflict("An account with this email already exists.",
                           errors={"email": ["Already registered."]}) from None

    def set_totp_step(self, user_id: str, step: int) -> bool:
        """Record a used TOTP step unless it (or a later one) was used: replay guard."""
        result = self.db.users.update_one(
            {"_id": user_id, "$or": [{"mfa.last_step": {"$lt": step}},
                                     {"mfa.last_step": None}]},
            {"$set": {"mfa.last_step": step}})
        return result.modified_count == 1

    def use_recovery_code(self, user_id: str, code_hashes: list[str]) -> bool:
        """Spend the stored code that is one of ``code_hashes`` (its hash under
        each key that may have made it); False if there is none."""
        result = self.db.users.update_one(
            {"_id": user_id, "mfa.recovery_codes": {"$in": code_hashes}},
            {"$pull": {"mfa.recovery_codes": {"$in": code_hashes}}})
        return result.modified_count == 1

    def soft_delete_user(self, user_id: str, session=None) -> dict | None:
        """Frees the email (kept in deleted_email) and marks the account deleted."""
        doc = self.user(user_id)
        if doc is None:
            return None
        self.db.users.update_one(
            {"_id": user_id, "deleted_at": None},
            {"$set": {"deleted_at": utcnow(), "deleted_email": doc["email"],
                      "email": f"deleted+{user_id}@invalid"},
             "$unset": {"password_hash": "", "mfa": "", "pending_email": ""}}, session=session)
        return doc

    # -- sessions (refresh tokens) ------------------------------------------
    def create_session(self, doc: dict, session=None) -> None:
        self.db.refresh_tokens.insert_one(doc, session=session)

    def rotate_refresh(self, old_hash: str, new_hash: str, ip, user_agent) -> dict | None:
        """Swap the current token of a live session; None if ``old_hash`` is
        not any live session's current token."""
        now = utcnow()
        sessions = self.db.refresh_tokens
        live = sessions.find_one({"token_hash": old_hash})  # its unique index
        if live is None or live["expires_at"] <= now:
            return None
        # written by ``_id`` alone, only while it still holds ``old_hash`` and is not
        # revoked (a findAndModify scans every session on SecantusDB: 54 ms among 5,000)
        if write_at_version(sessions, live["_id"], lambda s: {
                "token_hash": new_hash, "last_used_at": now, "ip": ip, "user_agent": user_agent,
                "used_hashes": [*s.get("used_hashes", []), old_hash][-USED_HASHES_KEPT:]},
                live, token_hash=old_hash, revoked_at=None) is None:
            return None
        return sessions.find_one({"_id": live["_id"]})

    def session_by_used_hash(self, token_hash: str) -> dict | None:
        return self.db.refresh_tokens.find_one({"used_hashes": token_hash})

    def session(self, session_id: str) -> dict | None:
        return self.db.refresh_tokens.find_one({"_id": session_id})

    def active_sessions(self, user_id: str, limit: int = 200) -> list[dict]:
        return list(self.db.refresh_tokens.find(
            {"user_id": user_id, "revoked_at": None, "expires_at": {"$gt": utcnow()}},
            {"token_hash": 0, "used_hashes": 0}).sort("created_at", -1).limit(limit))

    def revoke_session(self, session_id: str, user_id: str | None = None) -> bool:
        query = {"_id": session_id, "revoked_at": None}
        if user_id is not None:
            query["user_id"] = user_id
        result = self.db.refresh_tokens.update_one(query, {"$set": {"revoked_at": utcnow()}})
        return result.modified_count == 1

    def revoke_all_sessions(self, user_id: str) -> list[str]:
        """Revokes every live session of the user; returns their ids."""
        ids = [d["_id"] for d in self.db.refresh_tokens.find(
            {"user_id": user_id, "revoked_at": None}, {"_id": 1})]
        if ids:
            self.db.refresh_tokens.update_many({"_id": {"$in": ids}, "revoked_at": None},
                                               {"$set": {"revoked_at": utcnow()}})
        return ids

    # -- single-use tokens (reset, verification) -----------------------------
    def add_token(self, collection: str, token_hash: str, user_id: str, ttl: int,
                  session=None, **fields) -> None:
        now = utcnow()
        self.db[collection].insert_one(
            {"_id": token_hash, "user_id": user_id, "created_at": now,
             "expires_at": now + timedelta(seconds=ttl), "used_at": None, **fields},
            session=session)

    def live_token(self, collection: str, token_hash: str) -> dict | None:
        return self.db[collection].find_one({"_id": token_hash, "used_at": None,
                                             "expires_at": {"$gt": utcnow()}})

    def use_token(self, collection: str, token_hash: str) -> dict | None:
        """Marks a live token used and returns it; None if unknown, used or expired."""
        now = utcnow()
        return self.db[collection].find_one_and_update(
            {"_id": token_hash, "used_at": None, "expires_at": {"$gt": now}},
            {"$set": {"used_at": now}})

    def drop_tokens(self, collection: str, user_id: str) -> None:
        """Invalidates every outstanding token of the user in ``collection``."""
        self.db[collection].update_many({"user_id": user_id, "used_at": None},
                                        {"$set": {"used_at": utcnow()}})

    # -- personal access tokens -------------------------------------------------
    def insert_access_token(self, doc: dict) -> dict:
        self.db.access_tokens.insert_one(doc)
        return doc

    def access_tokens(self, user_id: str) -> list[dict]:
        return list(self.db.access_tokens.find({"user_id": user_id})
                    .sort("created_at", ASCENDING))

    def count_live_access_tokens(self, user_id: str, now) -> int:
        return self.db.access_tokens.count_documents(
            {"user_id": user_id, "revoked_at": None, "expires_at": {"$gt": now}})

    def access_token_by_hash(self, token_hash: str) -> dict | None:
        return self.db.access_tokens.find_one({"token_hash": token_hash})

    def live_access_tokens(self, now, limit: int = 10_000) -> list[dict]:
        return list(self.db.access_tokens.find({"revoked_at": None, "expires_at": {"$gt": now}})
                    .limit(limit))

    def recently_revoked_access_tokens(self, since) -> list[dict]:
        return list(self.db.access_tokens.find({"revoked_at": {"$gte": since}}))

    def revoke_access_token(self, user_id: str, token_id: str, now) -> dict | None:
        """The token as it was, if it was this user's and not yet revoked."""
        return self.db.access_tokens.find_one_and_update(
            {"_id": token_id, "user_id": user_id, "revoked_at": None},
            {"$set": {"revoked_at": now}})

    def revoke_user_access_tokens(self, user_id: str, now) -> list[dict]:
        tokens = list(self.db.access_tokens.find({"user_id": user_id, "revoked_at": None}))
        self.db.access_tokens.update_many({"user_id": user_id, "revoked_at": None},
                                          {"$set": {"revoked_at": now}})
        return tokens

    def note_access_token_use(self, token_id: str, at) -> None:
        self.db.access_tokens.update_one(
            {"_id": token_id, "$or": [{"last_used_at": None}, {"last_used_at": {"$lt": at}}]},
            {"$set": {"last_used_at": at}})
