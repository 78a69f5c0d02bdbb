"""The notifications service's MongoDB collections: indexes beside the queries."""
from __future__ import annotations

from datetime import datetime, timedelta

from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from notify_svc import domain
from shared.mongo import DUPLICATE_KEY, BaseStore, claim_ids, find_by_id, id_slices, utcnow


def drop_clear_secret_links(db) -> None:
    """Items and finished deliveries stored before links were sealed kept reset,
    verification and invitation links in clear: remove them (deliveries still
    to be sent keep theirs until they are)."""
    kinds = sorted(domain.SECRET_LINK_KINDS)
    db.notifications.update_many({"kind": {"$in": kinds}}, {"$set": {"link": None}, "$unset": {
        f"data.{name}": "" for name in domain.SECRET_FIELDS}})
    db.deliveries.update_many(
        {"kind": {"$in": kinds}, "status": {"$nin": ["queued", "held", "sending"]}},
        {"$unset": {"context.link": "", **{f"context.{name}": "" for name in domain.SECRET_FIELDS
                                           if name != "sealed_link"}}})


class NotificationStore(BaseStore):
    MIGRATIONS = [("0001_drop_clear_secret_links", drop_clear_secret_links)]
    INDEXES = {
        **BaseStore.INDEXES,
        "notifications": [IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING),
                                      ("_id", DESCENDING)]),
                          IndexModel([("user_id", ASCENDING), ("read", ASCENDING)])],
        "deliveries": [IndexModel([("status", ASCENDING), ("due_at", ASCENDING)]),
                       IndexModel([("user_id", ASCENDING), ("status", ASCENDING)])],
        "recipients": [],
        "preferences": [],
        "templates": [],
        "push_subscriptions": [IndexModel([("user_id", ASCENDING)])],
    }

    # recipients directory (fed by user.* events) --------------------------
    def upsert_recipient(self, user_id: str, fields: dict) -> None:
        fields = {k: v for k, v in fields.items() if v is not None}
        if fields:
            self.db.recipients.update_one({"_id": user_id}, {"$set": fields}, upsert=True)

    def recipient(self, user_id: str) -> dict | None:
        return self.db.recipients.find_one({"_id": user_id})

    def recipients(self, user_ids: list[str]) -> dict[str, dict]:
        return {d["_id"]: d for part in id_slices(user_ids)
                for d in self.db.recipients.find({"_id": {"$in": part}})}

    def forget_user(self, user_id: str) -> None:
        for name in ("recipients", "preferences"):
            self.db[name].delete_one({"_id": user_id})
        self.db.notifications.delete_many({"user_id": user_id})
        self.db.push_subscriptions.delete_many({"user_id": user_id})

    # in-app notifications ------------------------------------------------
    def add_notifications(self, docs: list[dict]) -> set[str]:
        """Insert in one write (deterministic ids); returns the ids that were new."""
        return self.insert_ignoring_duplicates(self.db.notifications, docs)

    def add_to_groups(self, grown: list[tuple[str, dict, dict]]) -> dict[str, dict]:
        """A bulk job's assignments to people whose item of the job exists already
        (``[(item id, the item without _id, task)]``: another chunk, or a redelivery):
        each task added once (``$addToSet``) to the person's one item, in one write by
        ``_id`` alone (a findAndModify scans the whole collection on SecantusDB: 500 of
        them for a redelivered chunk read every item 500 times); returns the items."""
        ops = [UpdateOne({"_id": _id}, {"$setOnInsert": base, "$addToSet": {"tasks": task}},
                         upsert=True) for _id, base, task in grown]
        for attempt in (1, 2):  # two concurrent upserts of one item: the loser updates
            if not ops:
                break
            try:
                self.db.notifications.bulk_write(ops, ordered=False)
                break
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if attempt == 2 or any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                ops = [ops[e["index"]] for e in errors]
        return self.get_notifications(list(dict.fromkeys(_id for _id, _, _ in grown)))

    def get_notification(self, _id: str) -> dict | None:
        return self.db.notifications.find_one({"_id": _id})

    def get_notifications(self, ids: list[str]) -> dict[str, dict]:
        return {d["_id"]: d for part in id_slices(ids)
                for d in self.db.notifications.find({"_id": {"$in": part}})}

    def list_notifications(self, user_id: str, limit: int, after: tuple | None,
                           unread: bool) -> list[dict]:
        """Newest first, past the sort key ``after`` (created_at, _id)."""
        query: dict = {"user_id": user_id}
        if unread:
            query["read"] = False
        if after:
            at, _id = after
            query["$or"] = [{"created_at": {"$lt": at}},
                            {"created_at": at, "_id": {"$lt": _id}}]
        return list(self.db.notifications.find(query).sort(
            [("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit))

    def since(self, user_id: str, last_id: str, limit: int = 200) -> list[dict]:
        """What a reconnecting client missed: items newer than ``last_id``, oldest first."""
        last = find_by_id(self.db.notifications, last_id, user_id=user_id)
        if last is None:
            return []
        query = {"user_id": user_id, "$or": [
            {"created_at": {"$gt": last["created_at"]}},
            {"created_at": last["created_at"], "_id": {"$gt": last_id}}]}
        return list(self.db.notifications.find(query).sort(
            [("created_at", ASCENDING), ("_id", ASCENDING)]).limit(limit))

    def unread_count(self, user_id: str) -> int:
        return self.db.notifications.count_documents({"user_id": user_id, "read": False})

    def mark_read(self, user_id: str, _id: str) -> dict | None:
        """The notification (None if not the user's); ``changed`` if it was unread."""
        doc = self.db.notifications.find_one_and_update(
            {"_id": _id, "user_id": user_id}, {"$set": {"read": True, "read_at": utcnow()}})
        return doc

    def mark_all_read(self, user_id: str) -> int:
        return self.db.notifications.update_many(
            {"user_id": user_id, "read": False},
            {"$set": {"read": True, "read_at": utcnow()}}).modified_count

    def delete_notification(self, user_id: str, _id: str) -> dict | None:
        return self.db.notifications.find_one_and_delete({"_id": _id, "user_id": user_id})

    # deliveries (email/push attempts) ------------------------------------
    def add_deliveries(self, docs: list[dict]) -> set[str]:
        """Insert in one write (deterministic ids); returns the ids that were new."""
        return self.insert_ignoring_duplicates(self.db.deliveries, docs)

    def claim_due(self, limit: int = 500, lease_s: float = 60) -> list[dict]:
        """Claim up to ``limit`` due deliveries for this worker (``sending`` with a
        lease): one write for all of them, each taken by one worker only."""
        now = utcnow()
        stale = {"status": "sending", "lease_until": {"$lt": now}}
        self.db.deliveries.update_many(stale, {"$set": {"status": "queued"}})
        due = {"status": {"$in": ["queued", "held"]}, "due_at": {"$lte": now}}
        ids: list[str] = []
        for status in ("queued", "held"):  # one status each: a range of the (status, due_at)
            if len(ids) < limit:           # index, where the $in read every held delivery
                ids += [d["_id"] for d in self.db.deliveries.find(
                    {"status": status, "due_at": {"$lte": now}}, {"_id": 1})
                    .sort("due_at", ASCENDING).limit(limit - len(ids))]
        if not ids:
            return []
        # by _id (claim_ids): the status index would hand SecantusDB every held delivery
        # to match (4 s for 10,000, not 0.1 s)
        return claim_ids(self.db.deliveries, ids, due, {
            "status": "sending", "lease_until": now + timedelta(seconds=lease_s)})

    def record_attempts(self, outcomes: list[tuple[str, str, str, datetime | None]]) -> None:
        """``[(delivery id, status, answer, retry_at)]``: one update per distinct
        outcome (a batch's emails mostly share one: sent, "250 accepted")."""
        alike: dict[tuple, list[str]] = {}
        for _id, status, answer, retry_at in outcomes:
            alike.setdefault((status, answer[:500], retry_at), []).append(_id)
        at = utcnow()
        writes = []
        for (status, answer, retry_at), ids in alike.items():
            update: dict = {"$push": {"attempts": {"at": at, "status": status, "answer": answer}},
                            "$inc": {"attempt_count": 1}, "$unset": {"lease_until": "", "claim": ""}}
            if status == "sent":
                update["$set"] = {"status": "sent", "sent_at": at}
            elif retry_at is not None:
                update["$set"] = {"status": "queued", "due_at": retry_at}
            else:
                update["$set"] = {"status": "failed", "failed_at": at}
            writes += [UpdateMany({"_id": {"$in": part}}, update) for part in id_slices(ids)]
        if writes:
            self.db.deliveries.bulk_write(writes, ordered=False)

    def failures(self, limit: int = 100) -> list[dict]:
        return list(self.db.deliveries.find({"status": "failed"}, {"text": 0, "html": 0})
                    .sort("failed_at", DESCENDING).limit(limit))

    def deliveries_of(self, notification_id: str) -> list[dict]:
        return list(self.db.deliveries.find({"notification_id": notification_id}))

    # digests -------------------------------------------------------------
    def digest_users_due(self) -> list[str]:
        now = utcnow()
        return self.db.deliveries.distinct("user_id", {"status": "digest", "due_at": {"$lte": now}})

    def take_digest(self, user_id: str, digest_id: str) -> list[dict]:
        """Claim every pending digest item of a user (idempotent by digest_id)."""
        self.db.deliveries.update_many({"user_id": user_id, "status": "digest"},
                                       {"$set": {"status": "digested", "digest_id": digest_id}})
        return list(self.db.deliveries.find({"digest_id": digest_id}).sort("created_at", ASCENDING))

    def digest_due_at(self, user_id: str) -> datetime | None:
        doc = self.db.deliveries.find_one({"user_id": user_id, "status": "digest"},
                                          sort=[("due_at", ASCENDING)])
        return doc["due_at"] if doc else None

    # preferences and templates -------------------------------------------
    def preferences_of(self, user_ids: list[str]) -> dict[str, dict]:
        return {d.pop("_id"): d for part in id_slices(user_ids)
                for d in self.db.preferences.find({"_id": {"$in": part}})}

    def save_preferences(self, user_id: str, prefs: dict) -> None:
        self.db.preferences.replace_one({"_id": user_id}, prefs, upsert=True)

    def template(self, org_id: str, key: str, locale: str) -> dict | None:
        return self.db.templates.find_one({"_id": f"{org_id}:{key}:{locale}"})

    def save_template(self, org_id: str, key: str, locale: str, doc: dict) -> None:
        self.db.templates.replace_one({"_id": f"{org_id}:{key}:{locale}"},
                                      {**doc, "org_id": org_id, "key": key, "locale": locale,
                                       "updated_at": utcnow()}, upsert=True)

    # push subscriptions --------------------------------------------------
    def add_push_subscription(self, user_id: str, sub: dict) -> bool:
        """Store or refresh the user's subscription; False when the endpoint
        belongs to another user (it is never moved to the caller)."""
        try:
            self.db.push_subscriptions.update_one(
                {"_id": sub["endpoint"], "user_id": user_id},
                {"$set": {**sub, "user_id": user_id, "created_at": utcnow()}}, upsert=True)
        except DuplicateKeyError:
            return False
        return True

    def has_push_subscription(self, user_id: str, endpoint: str) -> bool:
        return self.db.push_subscriptions.count_documents(
            {"_id": endpoint, "user_id": user_id}, limit=1) > 0

    def push_subscription_count(self, user_id: str) -> int:
        return self.db.push_subscriptions.count_documents({"user_id": user_id})

    def remove_push_subscription(self, user_id: str | None, endpoint: str) -> int:
        query = {"_id": endpoint}
        if user_id is not None:
            query["user_id"] = user_id
        return self.db.push_subscriptions.delete_one(query).deleted_count

    def push_subscriptions(self, user_id: str) -> list[dict]:
        return list(self.db.push_subscriptions.find({"user_id": user_id}))
