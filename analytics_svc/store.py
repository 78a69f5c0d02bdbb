"""The analytics service's read model in its own MongoDB database, indexes
beside the queries:

* ``tasks``: one document per task (``_id`` = task id): ``log``, what each event
  said about it (one entry per event id and kind, so a replay adds nothing),
  ``rev`` (bumped on every write) and the facts derived from the whole log
  (``domain.derive``), written with the log in one write, only if ``rev`` has not
  moved since the log was read (else read and written again): every entry stays;
* ``orgs``: each org's time zone and week start, from its settings events (or
  asked of the organizations service once, when none was seen)."""
from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.errors import DuplicateKeyError

from analytics_svc import domain
from shared.errors import Unavailable
from shared.mongo import WRITE_ATTEMPTS, BaseStore, at_version, find_by_ids, utcnow

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
        """Add each task's log entries (those not in its log yet) and the facts derived
        from the whole log, in one write per task: one read of the tasks' logs, one
        insert of the tasks not seen before, one write of the others while their
        ``rev`` is the one read. A task another writer got to first (it inserted it, or
        moved its ``rev``) is read and written again. Returns how many tasks were
        written."""
        pending, written = dict(entries), 0
        for _attempt in range(WRITE_ATTEMPTS):
            known = {doc["_id"]: doc for doc in find_by_ids(self.tasks, pending, {"log": 1, "rev": 1})}
            new, updates = [], []
            for task_id, found in pending.items():
                doc = known.get(task_id)
                log = domain.with_entries(doc["log"] if doc else [], found)
                if log is None:  # every entry is there already (a replay)
                    continue
                if doc is None:
                    new.append({"_id": task_id, "org_id": org_id, "log": log, "rev": 1,
                                **domain.derive(log)})
                else:  # by _id alone (SecantusDB scans for more: docs/stack.md)
                    updates.append((task_id, UpdateOne({"_id": task_id}, [at_version(
                        doc, {"log": log, **domain.derive(log)}, version="rev")])))
            inserted = self.insert_ignoring_duplicates(self.tasks, new)
            modified = self.tasks.bulk_write([u for _, u in updates], ordered=False
                                             ).modified_count if updates else 0
            written += len(inserted) + modified
            if len(inserted) == len(new) and modified == len(updates):
                return written
            # some lost a race: read them all again (those written have nothing new)
            pending = {t: pending[t] for t in [d["_id"] for d in new if d["_id"] not in inserted]
                       + [task_id for task_id, _ in updates]}
        raise Unavailable("These tasks are being changed by others right now; try again.")

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
