"""The analytics service's read model in its own MongoDB database, indexes
beside the queries:

* ``tasks``: one document per task (``_id`` = task id): ``log``, what each event
  said about it (one entry per event id, added with ``$addToSet``, so a replay
  adds nothing), ``rev`` (bumped on every write) and the facts derived from the
  whole log (``domain.derive``), written only if ``rev`` has not moved since the
  log was read: the last writer wins, with every entry in view;
* ``orgs``: each org's time zone and week start, from its settings events (or
  asked of the organizations service once, when none was seen)."""
from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from analytics_svc import domain
from shared.mongo import DUPLICATE_KEY, BaseStore, id_slices, set_while, utcnow

FACTS = ("created_at", "status", "started_at", "done_at", "assignee_id", "team_id", "due_at",
         "deleted")
_FACTS_ONLY = {name: 1 for name in FACTS}


class AnalyticsStore(BaseStore):
    INDEXES = {
        "tasks": [
            IndexModel([("org_id", ASCENDING), ("created_at", ASCENDING)], name="org_created"),
            IndexModel([("org_id", ASCENDING), ("done_at", ASCENDING)], name="org_done"),
            IndexModel([("org_id", ASCENDING), ("due_at", ASCENDING)], name="org_due"),
            IndexModel([("org_id", ASCENDING), ("status", ASCENDING)], name="org_status"),
        ],
    }

    @property
    def tasks(self):
        return self.db.tasks

    @property
    def orgs(self):
        return self.db.orgs

    # --- writes (event handlers) ---------------------------------------------------
    def record(self, org_id: str, entries: dict[str, list[dict]]) -> int:
        """Add each task's log entries, then write the facts derived from its whole
        log. Returns how many tasks' facts were written."""
        if not entries:
            return 0
        adds = [UpdateOne({"_id": task_id},
                          {"$setOnInsert": {"org_id": org_id},
                           "$addToSet": {"log": {"$each": found}}, "$inc": {"rev": 1}},
                          upsert=True)
                for task_id, found in entries.items()]
        self._bulk_upsert(adds)
        written = 0
        for ids in id_slices(entries):
            # by _id alone, while the log is the one read (SecantusDB scans every fact
            # for a filter with more than the _id: docs/stack.md)
            facts = [UpdateOne({"_id": doc["_id"]}, [set_while({"$eq": ["$rev", doc["rev"]]},
                                                               domain.derive(doc["log"]))])
                     for doc in self.tasks.find({"_id": {"$in": ids}}, {"log": 1, "rev": 1})]
            if facts:
                written += self.tasks.bulk_write(facts, ordered=False).modified_count
        return written

    def _bulk_upsert(self, writes: list[UpdateOne]) -> None:
        """Two first events of one task at once: one upsert loses the race on the
        unique _id; run again, it updates the document the other made."""
        try:
            self.tasks.bulk_write(writes, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            self.tasks.bulk_write([writes[e["index"]] for e in errors], ordered=False)

    def forget_org(self, org_id: str) -> None:
        self.tasks.delete_many({"org_id": org_id})
        self.orgs.delete_one({"_id": org_id})

    def save_org_settings(self, org_id: str, settings: dict, at: datetime) -> None:
        """Keep the org's zone and week start unless newer ones are stored already."""
        doc = {"timezone": settings.get("timezone") or "UTC",
               "week_start": settings.get("week_start") or "mon", "at": at}
        try:
            self.orgs.update_one({"_id": org_id, "$or": [{"at": {"$lte": at}},
                                                         {"at": {"$exists": False}}]},
                                 {"$set": doc}, upsert=True)
        except DuplicateKeyError:  # a newer one is there
            pass

    # --- reads -----------------------------------------------------------------------
    def org_settings(self, org_id: str) -> dict | None:
        return self.orgs.find_one({"_id": org_id})

    def _facts(self, query: dict) -> list[dict]:
        return list(self.tasks.find({**query, "deleted": False}, _FACTS_ONLY))

    def created_between(self, org_id: str, since: datetime, until: datetime) -> list[dict]:
        return self._facts({"org_id": org_id, "created_at": {"$gte": since, "$lt": until}})

    def done_between(self, org_id: str, since: datetime, until: datetime) -> list[dict]:
        return self._facts({"org_id": org_id, "done_at": {"$gte": since, "$lt": until}})

    def due_between(self, org_id: str, since: datetime, until: datetime) -> list[dict]:
        return self._facts({"org_id": org_id, "due_at": {"$gte": since, "$lt": until}})

    def open_tasks(self, org_id: str) -> list[dict]:
        return self._facts({"org_id": org_id, "status": {"$in": list(domain.OPEN)}})

    def facts_of(self, task_id: str) -> dict | None:
        return self.tasks.find_one({"_id": task_id})


def now() -> datetime:
    return utcnow()
