"""The webhooks service's MongoDB collections: endpoints and their deliveries,
indexes beside the queries."""
from __future__ import annotations

from datetime import timedelta

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import BulkWriteError

from shared.mongo import EARLIEST, BaseStore, claim_ids, find_by_id, utcnow


def new_id() -> str:
    return str(ObjectId())


class WebhookStore(BaseStore):
    INDEXES = {
        "endpoints": [IndexModel([("org_id", ASCENDING), ("_id", ASCENDING)], name="org")],
        "deliveries": [
            # the log of one endpoint, newest first
            IndexModel([("endpoint_id", ASCENDING), ("_id", DESCENDING)], name="endpoint"),
            # one delivery per endpoint and event, however often the event arrives
            IndexModel([("endpoint_id", ASCENDING), ("event_id", ASCENDING)], unique=True,
                       name="endpoint_event"),
            # what the sender picks up: due, oldest first
            IndexModel([("state", ASCENDING), ("next_attempt_at", ASCENDING)], name="due"),
        ],
    }

    @property
    def endpoints(self):
        return self.db.endpoints

    @property
    def deliveries(self):
        return self.db.deliveries

    # --- endpoints ---------------------------------------------------------
    def create_endpoint(self, org_id: str, data: dict, secret: str, actor: str) -> dict:
        doc = {"_id": new_id(), "org_id": org_id, "url": data["url"],
               "event_types": data["event_types"], "description": data["description"],
               "secret": secret, "enabled": True, "consecutive_failures": 0,
               "disabled_reason": None, "created_by": actor, "created_at": utcnow(),
               "updated_at": utcnow()}
        self.endpoints.insert_one(doc)
        return doc

    def get_endpoint(self, org_id: str, endpoint_id: str) -> dict | None:
        return find_by_id(self.endpoints, endpoint_id, org_id=org_id)

    def list_endpoints(self, org_id: str, limit: int, after: str | None) -> list[dict]:
        query: dict = {"org_id": org_id}
        if after:
            query["_id"] = {"$gt": after}
        return list(self.endpoints.find(query).sort("_id", ASCENDING).limit(limit + 1))

    def enabled_endpoints(self, org_id: str) -> list[dict]:
        return list(self.endpoints.find({"org_id": org_id, "enabled": True}))

    def update_endpoint(self, org_id: str, endpoint_id: str, changes: dict) -> dict | None:
        if changes.get("enabled"):  # re-enabled by an admin: a fresh start
            changes = {**changes, "consecutive_failures": 0, "disabled_reason": None}
        return self.endpoints.find_one_and_update(
            {"_id": endpoint_id, "org_id": org_id}, {"$set": {**changes, "updated_at": utcnow()}},
            return_document=ReturnDocument.AFTER)

    def delete_endpoint(self, org_id: str, endpoint_id: str) -> bool:
        if not self.endpoints.delete_one({"_id": endpoint_id, "org_id": org_id}).deleted_count:
            return False
        self.deliveries.delete_many({"endpoint_id": endpoint_id})
        return True

    def endpoint_result(self, endpoint_id: str, ok: bool) -> dict | None:
        """Count a delivery attempt's outcome; returns the endpoint after it."""
        update = ({"$set": {"consecutive_failures": 0}} if ok
                  else {"$inc": {"consecutive_failures": 1}})
        return self.endpoints.find_one_and_update({"_id": endpoint_id}, update,
                                                  return_document=ReturnDocument.AFTER)

    def disable_endpoint(self, endpoint_id: str, reason: str) -> bool:
        """True when this call disabled it (exactly one caller publishes the event)."""
        done = self.endpoints.update_one({"_id": endpoint_id, "enabled": True},
                                         {"$set": {"enabled": False, "disabled_reason": reason,
                                                   "updated_at": utcnow()}})
        return bool(done.modified_count)

    # --- deliveries ----------------------------------------------------------
    def add_deliveries(self, docs: list[dict]) -> None:
        """Idempotent: an (endpoint, event) pair already recorded is skipped."""
        if not docs:
            return
        try:
            self.deliveries.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise

    DUE_STATES = ("pending", "retrying", "sending")  # "sending" due: its sender died

    def claim_due(self, limit: int, lease_s: float) -> list[dict]:
        """Take up to ``limit`` due deliveries; a claim lapses after ``lease_s``
        (a sender that died mid-request), so nothing is stuck in "sending". The ids
        are read per state, each a bounded range of the ``due`` index, then claimed
        (``shared.mongo.claim_ids``: a replica racing for the same ones gets those it
        wrote). A ``find_one_and_update`` per delivery, as before,
        made SecantusDB scan the whole collection, sent ones included, every tick."""
        now = utcnow()
        ids: list[str] = []
        for state in self.DUE_STATES:
            if len(ids) < limit:
                ids += [d["_id"] for d in self.deliveries.find(
                    {"state": state, "next_attempt_at": {"$gte": EARLIEST, "$lte": now}},
                    {"_id": 1}).sort("next_attempt_at", ASCENDING).limit(limit - len(ids))]
        if not ids:
            return []
        return claim_ids(self.deliveries, ids, {"state": {"$in": list(self.DUE_STATES)},
                                                "next_attempt_at": {"$lte": now}},
                         {"state": "sending", "next_attempt_at": now + timedelta(seconds=lease_s)})

    def record_attempt(self, delivery_id: str, attempt: dict, state: str, next_at) -> None:
        self.deliveries.update_one(
            {"_id": delivery_id},
            {"$set": {"state": state, "next_attempt_at": next_at, "last": attempt,
                      "updated_at": utcnow()},
             "$inc": {"attempts": 1}, "$push": {"log": {"$each": [attempt], "$slice": -20}}})

    def get_delivery(self, endpoint_id: str, delivery_id: str) -> dict | None:
        return find_by_id(self.deliveries, delivery_id, endpoint_id=endpoint_id)

    def list_deliveries(self, endpoint_id: str, limit: int, before: str | None) -> list[dict]:
        query: dict = {"endpoint_id": endpoint_id}
        if before:
            query["_id"] = {"$lt": before}
        return list(self.deliveries.find(query).sort("_id", DESCENDING).limit(limit + 1))

    def redeliver(self, endpoint_id: str, delivery_id: str) -> dict | None:
        """Send again now (the log keeps the earlier attempts)."""
        return self.deliveries.find_one_and_update(
            {"_id": delivery_id, "endpoint_id": endpoint_id},
            {"$set": {"state": "pending", "next_attempt_at": utcnow(), "attempts": 0}},
            return_document=ReturnDocument.AFTER)
