"""The employees service's MongoDB collections: indexes beside the queries."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pymongo import ASCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from employee_svc.domain import keywords, prefix_regex
from shared.errors import Unavailable
from shared.mongo import (
    WRITE_ATTEMPTS,
    BaseStore,
    at_version,
    find_by_id,
    find_by_ids,
    holds,
    id_slices,
)

PUBLIC = {"keywords": 0, "team_ids": 0}


def drop_email_index(db) -> None:
    """The employees' ``email`` index served no query; gone, each employee write (a bulk
    job's task counts: one per assignee) keeps one index less up to date."""
    if "email_1" in db.employees.index_information():
        db.employees.drop_index("email_1")


def counts_id(org_id: str, employee_id: str) -> str:
    """An employee's ``task_counts`` document id."""
    return f"{org_id}:{employee_id}"


def move_task_counts(db) -> None:
    """Employees' task counts move to ``task_counts`` (one index, not the employees'
    eight: a bulk job writes one per assignee). A count written there already wins."""
    for doc in db.employees.find({"task_counts": {"$exists": True}}, {"org_id": 1, "task_counts": 1}):
        c = doc.get("task_counts") or {}
        db.task_counts.update_one(
            {"_id": counts_id(doc["org_id"], doc["_id"])},
            {"$setOnInsert": {"open": c.get("open", 0), "completed": c.get("completed", 0)}},
            upsert=True)
    db.employees.update_many({"task_counts": {"$exists": True}}, {"$unset": {"task_counts": ""}})


class EmployeeStore(BaseStore):
    MIGRATIONS = [("0001_drop_employees_email_index", drop_email_index),
                  ("0002_task_counts_own_collection", move_task_counts)]
    INDEXES = {
        "employees": [
            IndexModel([("org_id", ASCENDING), ("user_id", ASCENDING)], unique=True),
            IndexModel([("org_id", ASCENDING), ("_id", ASCENDING)]),
            IndexModel([("org_id", ASCENDING), ("role", ASCENDING), ("_id", ASCENDING)]),
            IndexModel([("org_id", ASCENDING), ("status", ASCENDING), ("_id", ASCENDING)]),
            IndexModel([("org_id", ASCENDING), ("team_ids", ASCENDING), ("_id", ASCENDING)]),
            IndexModel([("org_id", ASCENDING), ("keywords", ASCENDING)]),
            IndexModel([("user_id", ASCENDING)]),
            # none on email: no query reads employees by it, and every index costs each
            # write of an employee (a bulk job's task counts rewrite 10,000 of them)
        ],
        "invitations": [
            IndexModel("token_hash", unique=True),
            IndexModel([("org_id", ASCENDING), ("email", ASCENDING), ("status", ASCENDING)]),
            IndexModel([("email", ASCENDING), ("status", ASCENDING)]),
            IndexModel([("org_id", ASCENDING), ("_id", ASCENDING)]),
            IndexModel([("status", ASCENDING), ("expires_at", ASCENDING)]),  # the expiry sweep
        ],
        # one document per task: which employee holds it and whether it is done;
        # task counts are recomputed from it, so redelivered events count once
        "employee_tasks": [IndexModel([("employee_id", ASCENDING), ("state", ASCENDING)])],
        # task_counts: {_id: "<org>:<employee>", open, completed}, by _id only
    }

    # employees
    def upsert_employee(self, doc: dict) -> tuple[dict, bool]:
        """Insert unless the (org, user) pair exists; (document, created).
        A removed membership is brought back."""
        query = {"org_id": doc["org_id"], "user_id": doc["user_id"]}
        existing = self.db.employees.find_one(query)
        if existing and existing["status"] != "removed":
            return existing, False
        if existing:  # its version goes on: a tag of the old membership never matches
            fields = {k: v for k, v in doc.items() if k not in ("_id", "version")}
            fields.update(removed_at=None, removed_by=None)
            return self.db.employees.find_one_and_update(
                {"_id": existing["_id"], "status": "removed"},
                {"$set": fields, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER) or existing, True
        try:
            doc.setdefault("version", 1)
            self.db.employees.insert_one(doc)
            return doc, True
        except DuplicateKeyError:  # a concurrent insert of the same pair won: that one
            return self.db.employees.find_one(query) or doc, False

    def employee(self, org_id: str, employee_id: str) -> dict | None:
        return find_by_id(self.db.employees, employee_id, org_id=org_id)

    def employee_by_user(self, org_id: str, user_id: str) -> dict | None:
        return self.db.employees.find_one({"org_id": org_id, "user_id": user_id})

    def employees_by_ids(self, org_id: str, employee_ids: list[str]) -> list[dict]:
        return find_by_ids(self.db.employees, employee_ids, org_id=org_id)

    def search_export(self, org_id: str | None, ids: list[str] | None, after: str | None,
                      limit: int) -> list[dict]:
        """Employees (not removed, of live orgs) for the search service's index: those
        of ``ids`` (in ``org_id``), or a page in ``_id`` order (one org, or all)."""
        query: dict = {"status": {"$ne": "removed"}, "org_deleted": {"$ne": True}}
        if org_id is not None:
            query["org_id"] = org_id
        if ids is not None:
            return find_by_ids(self.db.employees, ids, **query)
        if after:
            query["_id"] = {"$gt": after}
        return list(self.db.employees.find(query).sort("_id", ASCENDING).limit(limit))

    def employees_of_user(self, user_id: str) -> list[dict]:
        return list(self.db.employees.find({"user_id": user_id}))

    def is_member(self, org_id: str, user_id: str) -> bool:
        return self.db.employees.count_documents(
            {"org_id": org_id, "user_id": user_id, "status": {"$ne": "removed"}}) > 0

    def active_org_ids(self, user_id: str) -> list[str]:
        return sorted(d["org_id"] for d in self.db.employees.find(
            {"user_id": user_id, "status": "active", "org_deleted": {"$ne": True}},
            {"org_id": 1}))

    def owner_count(self, org_id: str) -> int:
        return self.db.employees.count_documents({"org_id": org_id, "role": "owner",
                                                  "status": "active"})

    def seat_count(self, org_id: str) -> int:
        """Employees (not removed) plus pending invitations: what the plan limits."""
        return (self.db.employees.count_documents({"org_id": org_id,
                                                   "status": {"$ne": "removed"}})
                + self.db.invitations.count_documents({"org_id": org_id, "status": "pending"}))

    def update_employee(self, org_id: str, employee_id: str, fields: dict,
                        expect: dict | None = None, session=None) -> dict | None:
        """Conditional on ``expect`` (None when it no longer holds)."""
        query = {"_id": employee_id, "org_id": org_id, **(expect or {})}
        return self.db.employees.find_one_and_update(query, {"$set": fields,
                                                             "$inc": {"version": 1}},
                                                     return_document=ReturnDocument.AFTER,
                                                     session=session)

    def update_user_everywhere(self, user_id: str, fields: dict) -> list[dict]:
        docs = self.employees_of_user(user_id)
        for doc in docs:
            merged = {**doc, **fields}
            self.db.employees.update_one({"_id": doc["_id"]}, {"$set": {
                **fields, "keywords": keywords(merged["name"], merged["email"],
                                               merged.get("job_title", ""))},
                "$inc": {"version": 1}})
        return docs

    def list_employees(self, org_id: str, *, role: str | None = None, status: str | None = None,
                       team_id: str | None = None, terms: Sequence[str] = (),
                       after: str | None = None, limit: int = 50) -> list[dict]:
        return list(self.list_cursor(org_id, role=role, status=status, team_id=team_id,
                                     terms=terms, after=after).limit(limit + 1))

    def list_cursor(self, org_id: str, *, role=None, status=None, team_id=None, terms=(),
                    after=None):
        """The list query with its index named: the most selective equality (or
        the first search term's prefix range on ``keywords``) leads."""
        query, hint = self.list_query(org_id, role=role, status=status, team_id=team_id,
                                      terms=terms, after=after)
        return self.db.employees.find(query, PUBLIC).sort("_id", ASCENDING).hint(hint)

    @staticmethod
    def list_query(org_id: str, *, role=None, status=None, team_id=None, terms=(),
                   after=None) -> tuple[dict, list]:
        query: dict = {"org_id": org_id, "status": status or {"$ne": "removed"}}
        hint = [("org_id", ASCENDING), ("_id", ASCENDING)]
        if status:
            hint = [("org_id", ASCENDING), ("status", ASCENDING), ("_id", ASCENDING)]
        if team_id:
            query["team_ids"] = team_id
            hint = [("org_id", ASCENDING), ("team_ids", ASCENDING), ("_id", ASCENDING)]
        if role:
            query["role"] = role
            hint = [("org_id", ASCENDING), ("role", ASCENDING), ("_id", ASCENDING)]
        if terms:  # an anchored prefix: an index range on the lower-case keyword array
            first, *rest = terms
            query["keywords"] = {"$regex": prefix_regex(first)}
            if rest:
                query["$and"] = [{"keywords": {"$regex": prefix_regex(t)}} for t in rest]
            hint = [("org_id", ASCENDING), ("keywords", ASCENDING)]
        if after:
            query["_id"] = {"$gt": after}
        return query, hint

    def set_team(self, org_id: str, employee_id: str, team_id: str, role: str | None) -> dict | None:
        if role is None:
            update = {"$unset": {f"teams.{team_id}": ""}, "$pull": {"team_ids": team_id},
                      "$inc": {"version": 1}}
        else:
            update = {"$set": {f"teams.{team_id}": role}, "$addToSet": {"team_ids": team_id},
                      "$inc": {"version": 1}}
        return self.db.employees.find_one_and_update({"_id": employee_id, "org_id": org_id},
                                                     update)

    def set_team_role_if_member(self, org_id: str, employee_id: str, team_id: str,
                                role: str) -> dict | None:
        return self.db.employees.find_one_and_update(
            {"_id": employee_id, "org_id": org_id, "team_ids": team_id},
            {"$set": {f"teams.{team_id}": role}, "$inc": {"version": 1}})

    def mark_org_deleted(self, org_id: str) -> list[dict]:
        docs = list(self.db.employees.find({"org_id": org_id}, {"user_id": 1}))
        self.db.employees.update_many({"org_id": org_id}, {"$set": {"org_deleted": True}})
        return docs

    def successor(self, org_id: str, exclude_user_id: str) -> dict | None:
        return self.db.employees.find_one(
            {"org_id": org_id, "role": {"$in": ["owner", "admin"]}, "status": "active",
             "user_id": {"$ne": exclude_user_id}}, sort=[("role", -1), ("created_at", 1)])

    # invitations
    def insert_invitation(self, doc: dict) -> dict:
        self.db.invitations.insert_one(doc)
        return doc

    def pending_invitation(self, org_id: str, email: str) -> dict | None:
        return self.db.invitations.find_one({"org_id": org_id, "email": email,
                                             "status": "pending"})

    def refresh_invitation(self, invitation_id: str, fields: dict) -> dict | None:
        return self.db.invitations.find_one_and_update(
            {"_id": invitation_id, "status": "pending"}, {"$set": fields},
            return_document=ReturnDocument.AFTER)

    def invitation(self, org_id: str, invitation_id: str) -> dict | None:
        return find_by_id(self.db.invitations, invitation_id, org_id=org_id)

    def invitation_by_token(self, token_hash: str) -> dict | None:
        return self.db.invitations.find_one({"token_hash": token_hash})

    def invitations_to_join(self, email: str, user_id: str, at: datetime) -> list[dict]:
        """Pending ones, and those this user already claimed (a re-run after a crash
        between the claim and the membership)."""
        return list(self.db.invitations.find({"email": email, "$or": [
            {"status": "pending", "expires_at": {"$gt": at}},
            {"status": "accepted", "accepted_by_user_id": user_id}]}))

    def invitations_for_email(self, email: str, at: datetime, after: str | None,
                              limit: int) -> list[dict]:
        query: dict = {"email": email, "status": "pending", "expires_at": {"$gt": at}}
        if after:
            query["_id"] = {"$gt": after}
        return list(self.db.invitations.find(query, {"token_hash": 0})
                    .sort("_id", ASCENDING).limit(limit + 1))

    def close_invitation(self, invitation_id: str, status: str, fields: dict) -> bool:
        """pending -> accepted/revoked, once (single use)."""
        result = self.db.invitations.update_one({"_id": invitation_id, "status": "pending"},
                                                {"$set": {"status": status, **fields}})
        return result.modified_count == 1

    def expired_invitations(self, at: datetime, limit: int = 500) -> list[dict]:
        return list(self.db.invitations.find({"status": "pending", "expires_at": {"$lte": at}},
                                             {"token_hash": 0}).limit(limit))

    def expire_invitation(self, invitation_id: str, at: datetime) -> bool:
        """pending -> expired, once, and only if it was not renewed meanwhile (a re-invite)."""
        result = self.db.invitations.update_one(
            {"_id": invitation_id, "status": "pending", "expires_at": {"$lte": at}},
            {"$set": {"status": "expired", "expired_at": at}})
        return result.modified_count == 1

    def list_invitations(self, org_id: str, after: str | None, limit: int) -> list[dict]:
        query: dict = {"org_id": org_id, "status": "pending"}
        if after:
            query["_id"] = {"$gt": after}
        return list(self.db.invitations.find(query, {"token_hash": 0})
                    .sort("_id", ASCENDING).limit(limit + 1))

    # task counts
    def set_tasks(self, org_id: str, changes: dict[str, dict]) -> set[str]:
        """Record these tasks' holder/state (``{task id: fields}``) in one read, one
        update of the holders that change (each at the version read) and one insert of
        the new ones (open); a holder that holds its fields already is not written.
        What lost a race is read and written again. Returns the employees the holders
        named before."""
        tasks = self.db.employee_tasks
        pending = {f"{org_id}:{task_id}": fields for task_id, fields in changes.items()}
        held: set[str | None] = set()
        for _attempt in range(WRITE_ATTEMPTS):
            found = {doc["_id"]: doc for doc in find_by_ids(tasks, pending)}
            held.update(doc.get("employee_id") for doc in found.values())
            updates = {key: UpdateOne({"_id": key}, [at_version(doc, {"org_id": org_id,
                                                                     **pending[key]})])
                       for key, doc in found.items() if not holds(doc, pending[key])}
            # assigned: a new task is open, a known one keeps its state
            new = [{"_id": key, "state": "open", "org_id": org_id, **fields}
                   for key, fields in pending.items() if key not in found]
            redo = {doc["_id"] for doc in new} - self.insert_ignoring_duplicates(tasks, new)
            if updates and tasks.bulk_write(list(updates.values()), ordered=False
                                            ).modified_count < len(updates):
                redo.update(updates)  # which of them lost is not known: all are read again
            pending = {key: pending[key] for key in redo}
            if not pending:
                return {e for e in held if e}
        raise Unavailable("These tasks' holders are being changed right now; try again.")

    def add_new_tasks(self, org_id: str, tasks: list[dict]) -> None:
        """A bulk chunk's new tasks, open, in one write. Insert-only: a task known
        already (a redelivered chunk, or a later reassignment or status change
        handled first) keeps what was recorded."""
        self.insert_ignoring_duplicates(self.db.employee_tasks, [
            {"_id": f"{org_id}:{t['task_id']}", "org_id": org_id, "employee_id": t["assignee_id"],
             "state": "open"} for t in tasks])

    def recount_tasks_of(self, org_id: str, employee_ids: set[str]) -> bool:
        """Recompute the task counts of these employees (a few aggregations) and
        write those that differ from what is stored, in one write; True if any did."""
        ids = sorted(i for i in employee_ids if i)
        counts = {i: {"open": 0, "completed": 0} for i in ids}
        for part in id_slices(ids):
            for row in self.db.employee_tasks.aggregate([
                    {"$match": {"employee_id": {"$in": part},
                                "state": {"$in": ["open", "completed"]}}},
                    {"$group": {"_id": {"employee_id": "$employee_id", "state": "$state"},
                                "n": {"$sum": 1}}}]):
                counts[row["_id"]["employee_id"]][row["_id"]["state"]] = row["n"]
        stored = {row["_id"]: row for row in find_by_ids(
            self.db.task_counts, [counts_id(org_id, i) for i in ids])}
        moved = {i: c for i, c in counts.items()
                 if {k: stored.get(counts_id(org_id, i), {}).get(k) for k in c} != c}
        if moved:  # their own small collection (one index): not the employee document's eight
            self.db.task_counts.bulk_write([
                UpdateOne({"_id": counts_id(org_id, employee_id)},
                          {"$set": {"open": c["open"], "completed": c["completed"]},
                           "$inc": {"version": 1}}, upsert=True)
                for employee_id, c in moved.items()], ordered=False)
        return bool(moved)

    def with_counts(self, docs: list[dict]) -> list[dict]:
        """``docs`` (employees) as answered: with their ``task_counts`` (open/completed,
        0 when none was counted yet), read from ``task_counts`` (``find_by_ids``), and
        a ``version`` that is the document's plus its counts'
        (each only grows, so any change of either moves the ETag: no stale 304;
        :meth:`own_version` turns an If-Match back into the document's)."""
        keys = [counts_id(d["org_id"], d["_id"]) for d in docs]
        found = {row["_id"]: row for row in find_by_ids(self.db.task_counts, keys)}
        for doc, key in zip(docs, keys, strict=True):
            row = found.get(key) or {}
            doc["task_counts"] = {"open": row.get("open", 0), "completed": row.get("completed", 0)}
            doc["version"] = (doc.get("version") or 0) + row.get("version", 0)
        return docs

    def own_version(self, doc: dict, answered: int | None) -> int | None:
        """The employee document's own version behind ``answered`` (a version
        :meth:`with_counts` gave, from an If-Match; None stays None). Counts that
        moved on since make it one the document never had: 412, as before counts
        had their own collection."""
        if answered is None:
            return None
        row = self.db.task_counts.find_one({"_id": counts_id(doc["org_id"], doc["_id"])},
                                           {"version": 1}) or {}
        return answered - row.get("version", 0)

