"""The tasks service's MongoDB collections: indexes beside the queries.

Every query filters by ``org_id`` (tenancy) except the caller's own
``/me/tasks`` (by ``assignee_user_id``) and the overdue scan. The index that
serves each query is named beside it.

* tasks: ``parent_id`` (a task of the same org, or None), ``subtasks``
  ``{total, done}`` (recounted from the children), ``watcher_user_ids``.
* links: one document per ``blocks`` edge, ``_id`` ``{blocker}>{blocked}``
  (``domain.edge_id``): both directions are answered from it.
* time_entries: one per logged stretch (who, which task and team, how many minutes);
  a task keeps their sum in ``time_spent_minutes`` (added when an entry is first
  written) beside its ``estimate_minutes``.
* timers: one running timer per person and task, ``_id`` ``{task_id}:{user_id}``
  (``domain.timer_id``), so a second start is a duplicate on every replica.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict
from shared.mongo import (
    CARRIED_AT,
    EARLIEST,
    BaseStore,
    carrying,
    find_by_id,
    find_by_ids,
    id_slices,
    utcnow,
    write_at_version,
)
from task_svc import domain


def new_id() -> str:
    return str(ObjectId())


def _ix(name: str, *keys, **kw) -> IndexModel:
    return IndexModel(list(keys), name=name, **kw)


A, D = ASCENDING, DESCENDING
SEARCH_COMMENTS = 50  # comments per task the search index holds (the latest)
BRIEF = {"_id": 1, "title": 1, "status": 1, "deleted": 1, "parent_id": 1}  # a linked task's fields
MAX_LINKS = 500  # links of one task an answer lists


_MS = timedelta(milliseconds=1)  # BSON dates: milliseconds


def _grow(span: timedelta, held: int, n: int) -> timedelta:
    """The next window after one of ``span`` that held ``held`` of the ``n`` rows wanted:
    8x larger when empty, else by the density it saw (1.5 n / held, between 2x and 8x)."""
    return span * (8 if not held else min(8.0, max(2.0, 1.5 * n / held)))


def _id_time(task_id: str) -> datetime | None:
    """When the ObjectId an id starts with was made (a bulk task's id is its job's id
    and the employee's), or None."""
    try:
        return ObjectId(task_id[:24]).generation_time
    except (InvalidId, TypeError):
        return None


def _within(low: datetime | None, high: datetime | None) -> dict:
    """``low <= value <= high`` for dates, written with strict bounds: SecantusDB's scan
    of a compound index drops the entries equal to an inclusive bound on the index's
    upper side (a non-final field's entry continues past the value)."""
    out = {}
    if low is not None:
        out["$gt"] = low - _MS
    if high is not None:
        out["$lt"] = high + _MS
    return out


def _fill_bounds(db) -> None:
    """Every org's list bounds (``TaskStore.bounds``), so that no first list of an
    org with tasks from before them pays the aggregate."""
    store = TaskStore(db)
    for org_id in db.tasks.distinct("org_id"):
        store.bounds(org_id)


# a task's last change's history entries, written with it (``TaskStore.update``)
HISTORY_PENDING = "history_pending"


def history_entries(task: dict, changes: list[tuple[str, object, object]], actor: str | None,
                    reason: str | None, at: datetime, versioned: bool = False) -> list[dict]:
    """History documents of ``changes`` ((field, old, new)) to ``task``. ``versioned``
    (a change that bumps the task's version): ids of the task, its next version and
    the field, so the same change copied twice (from its write and from the task)
    is one entry."""
    version = (task.get("version") or 0) + 1
    return [{"_id": f"{task['_id']}-v{version}-{f}" if versioned else new_id(),
             "task_id": task["_id"], "org_id": task["org_id"], "field": f, "old": old,
             "new": new, "actor": actor, "reason": reason, "at": at} for f, old, new in changes]


def created_entry(task: dict, actor: str | None) -> dict:
    """A new task's ``created`` history entry, at its creation time, holding what it
    started with (one document, not one per field: a bulk job writes thousands).
    The id is deterministic (a redelivered bulk chunk adds nothing twice) and sorts
    before later entries of the same instant (ObjectIds of the same process)."""
    return {"_id": f"{task['_id']}-created", "task_id": task["_id"], "org_id": task["org_id"],
            "field": "created", "old": None, "new": domain.created(task), "actor": actor,
            "reason": "created", "at": task["created_at"]}


class TaskStore(BaseStore):
    MIGRATIONS = [("0001_task_list_bounds", _fill_bounds)]
    CARRYING = ("tasks", "comments")
    INDEXES = {
        "tasks": [
            # org lists per sort order (sort=created | due | priority)
            _ix("org_created", ("org_id", A), ("deleted", A), ("created_at", D), ("_id", D)),
            _ix("org_due", ("org_id", A), ("deleted", A), ("due_sort", A), ("_id", A)),
            _ix("org_priority", ("org_id", A), ("deleted", A), ("priority_rank", D), ("_id", D)),
            # filters: assignee_id, team_id, status (+ overdue), labels, q (keywords)
            _ix("org_assignee", ("org_id", A), ("assignee_id", A), ("deleted", A), ("created_at", D)),
            _ix("org_team", ("org_id", A), ("team_id", A), ("deleted", A), ("created_at", D)),
            _ix("org_status_due", ("org_id", A), ("status", A), ("due_sort", A)),
            _ix("org_labels", ("org_id", A), ("labels", A)),
            _ix("org_keywords", ("org_id", A), ("keywords", A)),
            # /me/tasks across orgs
            _ix("assignee_user", ("assignee_user_id", A), ("deleted", A), ("created_at", D)),
            # the overdue timer: unmarked, open, past due. (Bulk jobs need no index of their
            # own: a job's task ids are deterministic, "{job_id}-{assignee_id}". Each index
            # costs ~65 us per inserted task on SecantusDB, so there is none to spare.)
            _ix("overdue_scan", ("overdue_at", A), ("status", A), ("due_at", A)),
            # the children of a parent (subtask lists, progress, the subtree walk)
            _ix("org_parent", ("org_id", A), ("parent_id", A), ("deleted", A)),
            # the events a change carries until they are sent (shared.mongo.carrying):
            # the relay's, on the few tasks that have any
            _ix("carried_at", (CARRIED_AT, A), sparse=True),
        ],
        "history": [_ix("task_at", ("task_id", A), ("at", A))],
        "comments": [_ix("task_comments", ("task_id", A), ("_id", A)),
                     _ix("comment_carried_at", (CARRIED_AT, A), sparse=True)],
        "attachments": [_ix("task_attachments", ("task_id", A), ("_id", A))],
        # the operator console's bulk jobs in progress (jobs, not tasks: cheap)
        "jobs": [_ix("jobs_status", ("status", A), ("created_at", D))],
        # blocks / blocked_by, one document per edge
        "links": [_ix("links_blocker", ("org_id", A), ("blocker_id", A)),
                  _ix("links_blocked", ("org_id", A), ("blocked_id", A))],
        # saved views: the views a caller sees; one name per owner and org (saving a
        # second "Mine" is a 409, not a twin)
        "views": [_ix("org_views", ("org_id", A), ("_id", A)),
                  _ix("owner_name", ("org_id", A), ("owner_user_id", A), ("name", A), unique=True)],
        # estimates and time tracking: a task's entries, an org's totals
        "time_entries": [_ix("task_time", ("task_id", A), ("_id", A)),
                         _ix("org_time", ("org_id", A), ("employee_id", A))],
        "timers": [],
    }

    @property
    def tasks(self):
        return self.db.tasks

    # --- one task ------------------------------------------------------------
    @staticmethod
    def task_document(org_id: str, data: dict, creator: dict, assignee: dict | None,
                      task_id: str | None = None, job_id: str | None = None) -> dict:
        at = utcnow()
        return {
            "_id": task_id or new_id(), "org_id": org_id, "title": data["title"],
            "description": data.get("description", ""),
            "keywords": domain.keywords(data["title"], data.get("description")),
            "assignee_id": assignee["employee_id"] if assignee else None,
            "assignee_user_id": assignee["user_id"] if assignee else None,
            "team_id": data.get("team_id"), "priority": data["priority"],
            "priority_rank": domain.PRIORITY_RANK[data["priority"]], "status": "todo",
            "due_at": data.get("due_at"), "due_sort": data.get("due_at") or domain.NO_DUE,
            "labels": data.get("labels", []), "creator_id": creator.get("employee_id"),
            "creator_user_id": creator["user_id"], "created_at": at, "updated_at": at,
            "completed_at": None, "overdue_at": None, "deleted": False, "job_id": job_id,
            "version": 1, "parent_id": data.get("parent_id"),
            "watcher_user_ids": domain.initial_watchers(creator["user_id"],
                                                        assignee["user_id"] if assignee else None),
        }

    def insert(self, doc: dict) -> dict:
        self.widen_bounds([doc])
        self.tasks.insert_one(doc)
        return doc

    def get(self, org_id: str, task_id: str) -> dict | None:
        return find_by_id(self.tasks, task_id, org_id=org_id, deleted=False)

    def update(self, org_id: str, task_id: str, changes: dict, expect: dict | None = None,
               actor: str | None = None, reason: str | None = None,
               current: dict | None = None,
               events: Callable[[dict, dict], list[dict]] | None = None,
               ) -> tuple[dict, list[dict]] | None:
        """Apply ``changes``, only if the task still has the values in ``expect``
        (``current``: the task as the caller just read it, not read again). One write
        lands the change with what it causes: the history entries of what it changes
        (``actor``, ``reason``; ``HISTORY_PENDING``) and the envelopes ``events(before,
        after)`` builds (carried, ``shared.mongo.carrying``). Nothing is written after
        it, so a change either lands whole before the caller's deadline or not at all.
        The entries move to the history collection when the next change or a read of
        the history comes (``flush_history``). Returns the task as written and the
        envelopes it carries; None if ``expect`` no longer held."""
        changes = dict(changes)
        if "priority" in changes:
            changes["priority_rank"] = domain.PRIORITY_RANK[changes["priority"]]
        if "due_at" in changes:
            changes["due_sort"] = changes["due_at"] or domain.NO_DUE
            changes["overdue_at"] = None  # a new due date may become overdue again
            self.widen_bounds([{"org_id": org_id, **changes}])
        at = utcnow()
        written: dict = {}

        def with_history(task: dict) -> dict:  # the diff from the task as written over
            self.flush_history(task)  # the last change's entries, before ours replace them
            fields = {**changes, "updated_at": at, HISTORY_PENDING: history_entries(
                task, domain.diff(task, changes), actor, reason, at, versioned=True)}
            after = {**task, **fields, "version": (task.get("version") or 0) + 1}
            envelopes = events(task, after) if events else []
            written.update(after=after, envelopes=envelopes)
            return {**fields, **carrying(envelopes, at)}

        # every write bumps ``version`` (the ETag): ``expect={"version": n}`` makes it
        # conditional, race-free (If-Match)
        if write_at_version(self.tasks, task_id, with_history, current, org_id=org_id,
                            deleted=False, **(expect or {})) is None:
            return None
        return written["after"], written["envelopes"]

    def flush_history(self, task: dict) -> None:
        """The history entries the task's last change left in it, into the history
        collection where they are not yet (that change's call was cut after it)."""
        self.insert_ignoring_duplicates(self.db.history, task.get(HISTORY_PENDING) or [])

    # --- bulk -----------------------------------------------------------------
    def insert_many_idempotent(self, docs: list[dict]) -> set[str]:
        """Insert, ignoring tasks that already exist (a redelivered chunk);
        returns the ids that were new."""
        self.widen_bounds(docs)
        return self.insert_ignoring_duplicates(self.tasks, docs)

    # --- an org's bounds: where the ascending list windows start ------------------
    # Per org: no task was ever created before ``created_min``, has an id below
    # ``id_min``, nor is due before ``due_min`` or after ``due_max`` (dated tasks).
    # Written before the tasks they cover (a failed write only leaves a bound wider);
    # ``complete`` once every task that existed before the first write is in (``bounds``).
    def widen_bounds(self, docs: list[dict]) -> None:
        by_org: dict[str, list[dict]] = {}
        for doc in docs:
            by_org.setdefault(doc["org_id"], []).append(doc)
        for org_id, mine in by_org.items():
            ids, created, due = ([d[f] for d in mine if d.get(f) not in (None, domain.NO_DUE)]
                                 for f in ("_id", "created_at", "due_sort"))
            low = {name: min(v) for name, v in (("id_min", ids), ("created_min", created),
                                                ("due_min", due)) if v}
            high = {"due_max": max(due)} if due else {}
            update = {op: v for op, v in (("$min", low), ("$max", high)) if v}
            if update:
                self.db.task_bounds.update_one({"_id": org_id}, update, upsert=True)

    def bounds(self, org_id: str) -> dict:
        found = self.db.task_bounds.find_one({"_id": org_id})
        if found and found.get("complete"):
            return found
        b: dict = {"$min": {}, "$max": {}}
        for row in self.tasks.aggregate([
                {"$match": {"org_id": org_id}},
                {"$group": {"_id": None, "created_min": {"$min": "$created_at"}, "id_min": {"$min": "$_id"},
                            "due_max": {"$max": {"$cond": [{"$eq": ["$due_sort", domain.NO_DUE]},
                                                           None, "$due_sort"]}},
                            "due_min": {"$min": "$due_at"}}}]):
            b["$min"] = {k: row[k] for k in ("created_min", "due_min", "id_min") if row.get(k)}
            b["$max"] = {k: row[k] for k in ("due_max",) if row.get(k)}
        update = {op: v for op, v in b.items() if v}
        return self.db.task_bounds.find_one_and_update(
            {"_id": org_id}, {**update, "$set": {"complete": True}}, upsert=True,
            return_document=ReturnDocument.AFTER)

    def create_job(self, job: dict) -> None:
        self.insert_in_time(self.db.jobs, job)

    def get_job(self, org_id: str, job_id: str) -> dict | None:
        return find_by_id(self.db.jobs, job_id, org_id=org_id)

    def running_jobs(self, limit: int) -> list[dict]:
        """Bulk jobs not finished yet, newest first (every org: for operators)."""
        return list(self.db.jobs.find({"status": "running"}, {"errors": 0})
                    .sort("created_at", -1).limit(limit))

    def record_chunk(self, job_id: str, chunk: int, done: int, errors: list[dict]) -> dict | None:
        """Count a chunk once (a redelivered chunk changes nothing) and mark the
        job done in the same write when its last chunk is in (a redelivered chunk
        still finishes a job left running). One read and one write by ``_id``
        (``write_at_version``: again on a concurrent chunk), not a findAndModify,
        which scans every job on SecantusDB."""
        now = utcnow()

        def counted(job: dict) -> dict:
            change: dict = {}
            chunks = job["chunks_done"]
            if chunk not in chunks:
                chunks = [*chunks, chunk]
                change = {"chunks_done": chunks, "done": job["done"] + done,
                          "failed": job["failed"] + len(errors),
                          "errors": [*job["errors"], *errors[:1000]], "updated_at": now}
            if job["status"] != "done" and len(chunks) >= job["chunks_total"]:
                change.update(status="done", finished_at=now)
            return change

        job = self.db.jobs.find_one({"_id": job_id})
        if job is None or not counted(job):
            return job
        write_at_version(self.db.jobs, job_id, counted, job)
        return self.db.jobs.find_one({"_id": job_id})

    # --- lists ----------------------------------------------------------------
    @staticmethod
    def list_query(base: dict, f: dict, at: datetime) -> dict:
        query = {**base, "deleted": False}
        for field in ("assignee_id", "team_id", "status", "priority"):
            if f.get(field):
                query[field] = f[field]
        if f.get("labels"):
            query["labels"] = {"$all": f["labels"]}
        due: dict = {}
        if f.get("due_before"):
            due["$lt"] = f["due_before"]
        if f.get("due_after"):
            due["$gte"] = f["due_after"]
        if f.get("overdue") is True:
            due["$lt"] = min(due.get("$lt", at), at)
            query["status"] = {"$in": list(domain.OPEN_STATUSES)} if not f.get("status") else \
                (f["status"] if f["status"] != "done" else {"$in": []})
        elif f.get("overdue") is False:
            query["$or"] = [{"due_at": None}, {"due_at": {"$gte": at}}, {"status": "done"}]
        if due:
            query["due_at"] = due
        terms = domain.search_terms(f.get("q") or "")
        if terms:  # each word a prefix of some keyword: anchored regex on the keywords index
            query["$and"] = [{"keywords": {"$regex": "^" + re.escape(t)}} for t in terms]
        return query

    def page(self, query: dict, sort: str, n: int, after: tuple | None) -> list[dict]:
        """Up to ``n`` tasks in ``sort`` order past the sort key ``after`` (value, id).

        SecantusDB plans one index per query, only when every filter field is part of
        its prefix (equalities, then one range), and it materialises every match before
        a limit. So a page is read as aggregates: a first ``$match`` the planner serves
        exactly (the *driver*: an index prefix and a window of the sort field, so a page
        costs about what it returns) and a second ``$match`` with the rest of the filter
        (the *residual*), applied to the driver's rows only. docs/tasks.md lists the
        shapes that still read every match of their driver."""
        field, direction = domain.SORTS[sort]
        order = [(field, direction), ("_id", direction)]
        if sort == "created":
            pins = self._driver(query, self.WINDOWED_DRIVERS)
            if pins is not None:
                top = after[0] if after else None
                return self._seek(query, pins, {}, "created_at", -1, top, after, order, n)
        segments = self._segments(query, sort, after) if "assignee_id" not in query else None
        if segments is None:  # one query: every match of the most selective driver, sorted
            pins = self._driver(query, self.DRIVERS) or ()
            past = self._past(field, direction, after)
            return self._read(query, pins, [past] if past else [], order, n)
        docs: list[dict] = []
        for fixed, wfield, wdir, origin in segments:
            docs += self._seek(query, ("org_id", "deleted"), fixed, wfield, wdir, origin, after,
                               order, n - len(docs))
            if len(docs) >= n:
                break
        return docs

    # equality prefixes an index pins, most selective first. WINDOWED_DRIVERS have
    # created_at next in their index (org_assignee, assignee_user, org_team, org_created)
    WINDOWED_DRIVERS = (("org_id", "assignee_id", "deleted"), ("assignee_user_id", "deleted"),
                        ("org_id", "team_id", "deleted"), ("org_id", "deleted"))
    # for one-query reads (org_status_due has no "deleted": it stays in the residual)
    DRIVERS = (("org_id", "assignee_id", "deleted"), ("assignee_user_id", "deleted"),
               ("org_id", "team_id", "deleted"), ("org_id", "status"), ("org_id", "deleted"))

    def _segments(self, query: dict, sort: str, after: tuple | None) -> list[tuple] | None:
        """How an org-wide order is read: ``(fixed, field, direction, origin)`` parts in
        order, each windows of ``field`` (within ``fixed`` equalities) growing from
        ``origin`` (None: from the newest id / the open end). None: not windowed."""
        if not all(k in query and self._plain(query[k]) for k in ("org_id", "deleted")):
            return None
        value, after_id = after if after else (None, None)
        b = self.bounds(query["org_id"])
        if sort in ("priority", "-priority") and b.get("id_min"):
            # org_priority: rank by rank, ids in order in each
            ranks = [domain.PRIORITY_RANK[query["priority"]]] if self._plain(query.get("priority")) \
                else sorted(domain.PRIORITY_RANK.values(), reverse=sort == "priority")
            if sort == "priority":
                return [({"priority_rank": r}, "_id", -1, after_id if r == value else None)
                        for r in ranks if value is None or r <= value]
            return [({"priority_rank": r}, "_id", 1, after_id if r == value else b["id_min"])
                    for r in ranks if value is None or r >= value]
        if sort == "-created" and b.get("created_min"):
            return [({}, "created_at", 1, value or b["created_min"])]
        at_undated = value == domain.NO_DUE
        undated = {"due_sort": domain.NO_DUE}
        dated = {"due_sort": {"$lt": domain.NO_DUE}}
        if sort == "due" and b.get("due_min"):  # org_due: dated tasks, then the undated ones
            return ([] if at_undated else [(dated, "due_sort", 1, value or b["due_min"])]) + \
                [(undated, "_id", 1, after_id if at_undated else b["id_min"])]
        if sort == "-due" and b.get("due_max"):
            return ([(undated, "_id", -1, after_id)] if value is None or at_undated else []) + \
                [(dated, "due_sort", -1, b["due_max"] if value is None or at_undated else value)]
        return None

    @staticmethod
    def _driver(query: dict, drivers: tuple) -> tuple | None:
        """The first of ``drivers`` whose fields ``query`` pins to one value."""
        for pins in drivers:
            if all(k in query and TaskStore._plain(query[k]) for k in pins):
                return pins
        return None

    @staticmethod
    def _plain(value) -> bool:
        return value is not None and not isinstance(value, (dict, list))

    @staticmethod
    def _past(field: str, direction: int, after: tuple | None) -> dict | None:
        if not after:
            return None
        value, after_id = after
        op = "$gt" if direction == 1 else "$lt"
        return {"$or": [{field: {op: value}}, {field: value, "_id": {op: after_id}}]}

    def _read(self, query: dict, pins: tuple, extra: list[dict], order: list, n: int,
              window: dict | None = None) -> list[dict]:
        """One aggregate: ``$match`` on the pinned fields (+ ``window``), ``$match`` on
        the rest of ``query`` and ``extra``, sorted, at most ``n``."""
        driver = {k: query[k] for k in pins}
        residual = [r for r in [{k: v for k, v in query.items() if k not in pins}, *extra] if r]
        driver.update(window or {})
        pipeline: list[dict] = [{"$match": driver}]
        if residual:
            pipeline.append({"$match": residual[0] if len(residual) == 1 else {"$and": residual}})
        pipeline += [{"$sort": dict(order)}, {"$limit": n}]
        return list(self.tasks.aggregate(pipeline))

    # windows from the cursor (or now / the org's bound) moving away from it, each reading
    # only the range past the last (no row is read twice); past ~4 years, the rest of that
    # side in one query. From one second: a busy org (a bulk job adds thousands of tasks a
    # minute) finds its page in the first windows; a window costs SecantusDB ~0.07 ms per
    # task in it. An empty window grows 8x; one with k of the n rows wanted grows by the
    # density it saw (1.5 n / k, 2x to 8x), so a page reads ~1.5x what it needs
    FIRST_WINDOW = timedelta(seconds=1)
    LAST_WINDOW = timedelta(days=4 * 366)

    def _seek(self, query: dict, pins: tuple, fixed: dict, field: str, direction: int,
              origin, after: tuple | None, order: list, n: int) -> list[dict]:
        """Up to ``n`` of ``query`` in ``order``, read as adjoining index ranges of ``field``
        (within ``fixed``) moving away from ``origin`` in ``direction`` (None: from now, the
        newest side left open; windows of ``_id`` use the time its ObjectId carries)."""
        first_field, first_direction = order[0]
        past = self._past(first_field, first_direction, after)
        extra = [past] if past else []
        base = dict(fixed.get(field, {})) if isinstance(fixed.get(field), dict) else {}
        fixed = {k: v for k, v in fixed.items() if k != field}
        if field == "_id":  # ids carry their creation time: windows of it, from the origin
            t0 = _id_time(origin) if origin else utcnow()
            if t0 is None:  # not an ObjectId: one read
                return self._read(query, pins, extra, order, n, {**fixed, **({field: base} if base else {})})
            near = ({"$lte": origin} if origin else {}) if direction == -1 else {"$gte": origin}

            def edge(span):
                return str(ObjectId.from_datetime(t0 - span if direction == -1 else t0 + span))

            def window(done, span) -> dict:  # ids in (done, span] away from t0
                far = {"$gte" if direction == -1 else "$lt": edge(span)}
                if done is None:
                    return {**near, **far}
                return {"$lt" if direction == -1 else "$gte": edge(done), **far}

            def rest(done) -> dict:
                return {"$lt" if direction == -1 else "$gte": edge(done)}
        else:
            start = origin if origin is not None else utcnow()
            open_near = origin is None  # from now: rows stamped later (another clock) still count

            def window(done, span) -> dict:  # values in (done, span] away from start
                if direction == -1:
                    low = start - span - _MS
                    high = start + _MS if done is None else start - done
                    return {"$gt": low} if done is None and open_near else {"$gt": low, "$lt": high}
                low = start - _MS if done is None else start + done
                return {"$gt": low, "$lt": start + span + _MS}

            def rest(done) -> dict:
                if done is None:
                    return {} if open_near else _within(None, start) if direction == -1 \
                        else _within(start, None)
                return {"$lt": start - done} if direction == -1 else {"$gt": start + done}

        def read(bounds: dict, want: int) -> list[dict]:
            bounds = {**base, **bounds}
            return self._read(query, pins, extra, order, want,
                              {**fixed, **({field: bounds} if bounds else {})})

        docs: list[dict] = []
        done: timedelta | None = None
        span = self.FIRST_WINDOW
        while span <= self.LAST_WINDOW:
            try:
                bounds = window(done, span)
            except OverflowError:  # a window past year 1 or 9999: the rest, in one read
                break
            got = read(bounds, n - len(docs))
            docs += got
            if len(docs) >= n:
                return docs
            done, span = span, _grow(span, len(docs), n)  # the density from the origin
        try:
            remainder = rest(done)
        except OverflowError:  # the done side already reaches past year 1 or 9999
            return docs
        return docs + read(remainder, n - len(docs))

    # --- people leaving, teams going ------------------------------------------
    def open_tasks_of(self, org_id: str, employee_id: str, team_id: str | None = None) -> list[dict]:
        query = {"org_id": org_id, "assignee_id": employee_id, "deleted": False,
                 "status": {"$in": list(domain.OPEN_STATUSES)}}
        if team_id:
            query["team_id"] = team_id
        return list(self.tasks.find(query))

    def tasks_of_team(self, org_id: str, team_id: str) -> list[dict]:
        return list(self.tasks.find({"org_id": org_id, "team_id": team_id},
                                    {"_id": 1, "org_id": 1, "title": 1, "assignee_user_id": 1}))

    # --- overdue ----------------------------------------------------------------
    def overdue_candidates(self, at: datetime, limit: int = 500) -> list[dict]:
        """Open tasks past due and not marked yet, up to ``limit``. Per open status one
        range of the ``overdue_scan`` index, the shape SecantusDB serves exactly (an
        equality on each field, then one bounded range): the range starts at the earliest
        date, since an open ``$lt`` also walks every task without a due date (null sorts
        before dates), and ``deleted`` is not in the query, since a field outside the
        index makes it read every match of the prefix. Either way it read every unmarked
        task, holding its one lock (19 s among 5,000 bulk tasks in bench/load.py, each
        sweep). A deleted task found is marked here, with no event, not to be read again."""
        found: list[dict] = []
        for status in domain.OPEN_STATUSES:
            if len(found) < limit:
                found += self.tasks.find({"overdue_at": None, "status": status,
                                          "due_at": {"$gte": EARLIEST, "$lt": at}}
                                         ).limit(limit - len(found))
        gone = [t["_id"] for t in found if t.get("deleted")]
        if gone:
            self.tasks.update_many({"_id": {"$in": gone}}, {"$set": {"overdue_at": at}})
        return [t for t in found if not t.get("deleted")]

    def mark_overdue(self, task_id: str, at: datetime) -> dict | None:
        """Marks once: only the first marker gets the task back."""
        if write_at_version(self.tasks, task_id, {"overdue_at": at}, overdue_at=None) is None:
            return None
        return self.tasks.find_one({"_id": task_id})

    # --- stats, leaderboard -------------------------------------------------------
    def stats(self, org_id: str, team_id: str | None, assignee_id: str | None, at: datetime) -> dict:
        match = {"org_id": org_id, "deleted": False}
        if team_id:
            match["team_id"] = team_id
        if assignee_id:
            match["assignee_id"] = assignee_id
        groups = list(self.tasks.aggregate([
            {"$match": match},
            {"$group": {"_id": {"team": "$team_id", "assignee": "$assignee_id", "status": "$status"},
                        "n": {"$sum": 1}}}]))
        overdue = self.tasks.count_documents({**match, "status": {"$in": list(domain.OPEN_STATUSES)},
                                              "due_at": {"$lt": at}})
        week = self.tasks.count_documents({**match, "status": "done",
                                           "completed_at": {"$gte": domain.week_start(at)}})
        return {"groups": [{**g["_id"], "n": g["n"]} for g in groups], "overdue": overdue,
                "completed_this_week": week}

    def completions(self, org_id: str) -> list[tuple[str, int]]:
        rows = self.tasks.aggregate([
            {"$match": {"org_id": org_id, "status": "done", "deleted": False,
                        "assignee_id": {"$ne": None}}},
            {"$group": {"_id": "$assignee_id", "n": {"$sum": 1}}}])
        return [(r["_id"], r["n"]) for r in rows]

    # --- history, comments, attachments -------------------------------------------
    def add_history(self, task: dict, changes: list[tuple[str, object, object]], actor: str | None,
                    reason: str | None = None) -> None:
        if changes:
            self.db.history.insert_many(history_entries(task, changes, actor, reason, utcnow()))

    @staticmethod
    def with_created_history(tasks: list[dict], actor: str | None) -> list[dict]:
        """The tasks, each with its ``created`` entry pending in it (``HISTORY_PENDING``):
        inserted with the task in the task's own write, so a create (one task, a bulk
        chunk, an import) writes its tasks and their history in one insert, not two
        (10,000 history documents less per 10,000-task job). The entry reaches the
        history collection at the task's first change (``update`` copies it before its
        own write replaces it) or history read (``flush_history``)."""
        for t in tasks:
            t[HISTORY_PENDING] = [created_entry(t, actor)]
        return tasks

    def history(self, task_id: str, limit: int, after: tuple | None) -> list[dict]:
        """Oldest first, past the sort key ``after`` (at, _id): ids are not in time
        order (another process's ObjectIds, deterministic ids such as
        ``team-removed-...``), so entries are ordered by (at, _id)."""
        query: dict = {"task_id": task_id}
        if after:
            at, after_id = after
            query["$or"] = [{"at": {"$gt": at}}, {"at": at, "_id": {"$gt": after_id}}]
        return list(self.db.history.find(query).sort([("at", A), ("_id", A)]).limit(limit))

    def search_export(self, org_id: str | None, ids: list[str] | None, after: str | None,
                      limit: int) -> list[dict]:
        """Live tasks for the search service's index: those of ``ids`` (in ``org_id``),
        or a page in ``_id`` order (of one org, or of every org for a full rebuild),
        each with the text of its latest comments (``comments``)."""
        query: dict = {"deleted": False}
        if org_id is not None:
            query["org_id"] = org_id
        if ids is not None:
            docs = find_by_ids(self.tasks, ids, **query)
        else:
            if after:
                query["_id"] = {"$gt": after}
            docs = list(self.tasks.find(query).sort("_id", A).limit(limit))
        texts: dict[str, list[str]] = {}
        for part in id_slices([d["_id"] for d in docs]):
            for c in self.db.comments.find({"task_id": {"$in": part}}, {"task_id": 1, "body": 1}
                                           ).sort("_id", D).limit(SEARCH_COMMENTS * len(part)):
                if len(texts.setdefault(c["task_id"], [])) < SEARCH_COMMENTS:
                    texts[c["task_id"]].append(c.get("body", ""))
        return [{**d, "comments": texts.get(d["_id"], [])} for d in docs]

    def add_comment(self, doc: dict, events: list[dict]) -> dict:
        """Insert the comment carrying its ``events`` (``shared.mongo.carrying``)."""
        self.insert_in_time(self.db.comments, {**doc, **carrying(events, utcnow(), new=True)})
        return doc

    def comments(self, task_id: str, limit: int, after: str | None) -> list[dict]:
        query: dict = {"task_id": task_id}
        if after:
            query["_id"] = {"$gt": after}
        return list(self.db.comments.find(query).sort("_id", A).limit(limit))

    def commenters(self, task_id: str) -> list[str]:
        return sorted({c["author_user_id"] for c in self.db.comments.find(
            {"task_id": task_id}, {"author_user_id": 1}).limit(500)})

    def add_attachment(self, doc: dict) -> dict:
        self.db.attachments.insert_one(doc)
        return doc

    def attachments(self, task_id: str) -> list[dict]:
        return list(self.db.attachments.find({"task_id": task_id}).sort("_id", A).limit(500))

    def attachment(self, org_id: str, task_id: str, attachment_id: str) -> dict | None:
        return find_by_id(self.db.attachments, attachment_id, task_id=task_id, org_id=org_id)

    def delete_attachment(self, org_id: str, task_id: str, attachment_id: str) -> dict | None:
        """Removes it once: a second delete (or a concurrent one) gets None."""
        return self.db.attachments.find_one_and_delete({"_id": attachment_id, "task_id": task_id,
                                                        "org_id": org_id})

    def bulk_update_team_removed(self, org_id: str, team_id: str, task_ids: list[str],
                                 actor: str | None) -> None:
        """The team is gone: its tasks stay, without a team, each with history.
        Conditional on the team still being set, so a re-run writes nothing twice."""
        at = utcnow()
        result = self.tasks.bulk_write([UpdateOne(
            {"_id": task_id, "org_id": org_id, "team_id": team_id},
            {"$set": {"team_id": None, "updated_at": at}, "$inc": {"version": 1}})
            for task_id in task_ids], ordered=False)
        if result.modified_count:
            self.insert_ignoring_duplicates(self.db.history, [
                {"_id": f"team-removed-{task_id}-{team_id}", "task_id": task_id, "org_id": org_id,
                 "field": "team_id", "old": team_id, "new": None, "actor": actor,
                 "reason": "team.deleted", "at": at} for task_id in task_ids])

    # --- parents and subtasks -----------------------------------------------------
    def briefs(self, org_id: str, ids: list[str]) -> dict[str, dict]:
        """``{id: {_id, title, status, parent_id}}`` of the org's live tasks among ``ids``."""
        return {d["_id"]: d for d in find_by_ids(self.tasks, ids, BRIEF, org_id=org_id,
                                                 deleted=False)}

    def ancestors(self, org_id: str, task_id: str, limit: int) -> list[str]:
        """The chain above ``task_id``, nearest first, at most ``limit`` long."""
        chain: list[str] = []
        current = find_by_id(self.tasks, task_id, {"parent_id": 1}, org_id=org_id)
        while current and current.get("parent_id") and len(chain) < limit:
            chain.append(current["parent_id"])
            current = find_by_id(self.tasks, current["parent_id"], {"parent_id": 1},
                                 org_id=org_id)
        return chain

    def children_of(self, org_id: str, parent_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {p: [] for p in parent_ids}
        for part in id_slices(list(parent_ids)):
            for d in self.tasks.find({"org_id": org_id, "parent_id": {"$in": part}, "deleted": False},
                                     {"_id": 1, "parent_id": 1}):
                out[d["parent_id"]].append(d["_id"])
        return out

    def subtasks(self, org_id: str, parent_id: str, limit: int, after: str | None) -> list[dict]:
        query: dict = {"org_id": org_id, "parent_id": parent_id, "deleted": False}
        if after:
            query["_id"] = {"$gt": after}
        return list(self.tasks.find(query).sort("_id", A).limit(limit))

    def set_progress(self, org_id: str, parent_id: str) -> dict | None:
        """Recount the parent's ``subtasks`` from its children; a write (and a new
        version, so ETags change) only when the figures moved."""
        children = self.tasks.find({"org_id": org_id, "parent_id": parent_id, "deleted": False},
                                   {"status": 1, "deleted": 1})
        figures = domain.subtask_progress(children)
        return self.tasks.find_one_and_update(
            {"_id": parent_id, "org_id": org_id, "deleted": False, "subtasks": {"$ne": figures}},
            {"$set": {"subtasks": figures, "updated_at": utcnow()}, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER)

    def orphan_children(self, org_id: str, parent_id: str) -> list[str]:
        """A deleted task's subtasks become top-level tasks."""
        ids = [d["_id"] for d in self.tasks.find(
            {"org_id": org_id, "parent_id": parent_id, "deleted": False}, {"_id": 1})]
        if ids:
            self.tasks.update_many({"org_id": org_id, "parent_id": parent_id},
                                   {"$set": {"parent_id": None, "updated_at": utcnow()},
                                    "$inc": {"version": 1}})
        return ids

    # --- blocks / blocked_by -------------------------------------------------------
    def add_link(self, org_id: str, blocker: str, blocked: str, user_id: str) -> bool:
        """True if the edge is new (a repeat is the same document)."""
        result = self.db.links.update_one(
            {"_id": domain.edge_id(blocker, blocked)},
            {"$setOnInsert": {"org_id": org_id, "blocker_id": blocker, "blocked_id": blocked,
                              "created_by_user_id": user_id, "created_at": utcnow()}},
            upsert=True)
        return result.upserted_id is not None

    def remove_link_between(self, org_id: str, a: str, b: str) -> dict | None:
        """The edge between ``a`` and ``b`` in whichever direction, removed once."""
        for blocker, blocked in ((a, b), (b, a)):
            doc = self.db.links.find_one_and_delete({"_id": domain.edge_id(blocker, blocked),
                                                     "org_id": org_id})
            if doc:
                return doc
        return None

    def links_of(self, org_id: str, task_id: str, blocks: bool = True) -> tuple[list[str], list[str]]:
        """``(ids it blocks, ids blocking it)``; ``blocks=False``: the first not read (empty)."""
        ids = [d["blocked_id"] for d in self.db.links.find(
            {"org_id": org_id, "blocker_id": task_id}).sort("_id", A).limit(MAX_LINKS)] if blocks else []
        blocked_by = [d["blocker_id"] for d in self.db.links.find(
            {"org_id": org_id, "blocked_id": task_id}).sort("_id", A).limit(MAX_LINKS)]
        return ids, blocked_by

    def blocked_of(self, org_id: str, blockers: list[str]) -> dict[str, list[str]]:
        """The ``blocks`` edges out of each of ``blockers`` (the cycle walk)."""
        out: dict[str, list[str]] = {b: [] for b in blockers}
        for part in id_slices(list(blockers)):
            for d in self.db.links.find({"org_id": org_id, "blocker_id": {"$in": part}},
                                        {"blocker_id": 1, "blocked_id": 1}):
                out[d["blocker_id"]].append(d["blocked_id"])
        return out

    def drop_links_of(self, org_id: str, task_id: str) -> None:
        self.db.links.delete_many({"org_id": org_id, "blocker_id": task_id})
        self.db.links.delete_many({"org_id": org_id, "blocked_id": task_id})

    # --- estimates and time tracking ------------------------------------------------
    @staticmethod
    def entry_document(entry_id: str, task: dict, membership: dict, minutes: int,
                       started_at: datetime, note: str, source: str) -> dict:
        return {"_id": entry_id, "org_id": task["org_id"], "task_id": task["_id"],
                "team_id": task.get("team_id"), "employee_id": membership.get("employee_id"),
                "user_id": membership["user_id"], "minutes": minutes, "started_at": started_at,
                "note": note, "source": source, "created_at": utcnow()}

    @staticmethod
    def timer_document(task: dict, membership: dict) -> dict:
        return {"_id": domain.timer_id(task["_id"], membership["user_id"]),
                "org_id": task["org_id"], "task_id": task["_id"], "user_id": membership["user_id"],
                "employee_id": membership.get("employee_id"), "started_at": utcnow()}

    def add_entry(self, entry: dict) -> bool:
        """Write the entry and add its minutes to the task's total: False (and nothing
        added) when an entry with its id exists already."""
        try:
            self.db.time_entries.insert_one(entry)
        except DuplicateKeyError:
            return False
        self.tasks.update_one({"_id": entry["task_id"]},  # read from its org by the caller
                              {"$inc": {"time_spent_minutes": entry["minutes"], "version": 1},
                               "$set": {"updated_at": utcnow()}})
        return True

    def entries(self, task_id: str, limit: int, after: str | None) -> list[dict]:
        query: dict = {"task_id": task_id}
        if after:
            query["_id"] = {"$gt": after}
        return list(self.db.time_entries.find(query).sort("_id", A).limit(limit))

    def start_timer(self, timer: dict) -> bool:
        """False when this person's timer on the task is running already (any replica)."""
        try:
            self.db.timers.insert_one(timer)
        except DuplicateKeyError:
            return False
        return True

    def stop_timer(self, task_id: str, user_id: str) -> dict | None:
        """Removes the running timer once: a second stop (any replica) gets None."""
        return self.db.timers.find_one_and_delete({"_id": domain.timer_id(task_id, user_id)})

    def running_timers(self, task_id: str) -> list[dict]:
        return list(self.db.timers.find({"task_id": task_id}).limit(200))

    def time_totals(self, org_id: str, team_id: str | None, assignee_id: str | None) -> dict:
        match: dict = {"org_id": org_id}
        if team_id:
            match["team_id"] = team_id
        if assignee_id:
            match["employee_id"] = assignee_id
        groups = [{**g["_id"], "minutes": g["minutes"]} for g in self.db.time_entries.aggregate([
            {"$match": match},
            {"$group": {"_id": {"task": "$task_id", "employee": "$employee_id", "team": "$team_id"},
                        "minutes": {"$sum": "$minutes"}}}])]
        task_match: dict = {"org_id": org_id, "deleted": False}
        if team_id:
            task_match["team_id"] = team_id
        if assignee_id:
            task_match["assignee_id"] = assignee_id
        estimate = list(self.tasks.aggregate([
            {"$match": {**task_match, "estimate_minutes": {"$gt": 0}}},
            {"$group": {"_id": None, "n": {"$sum": "$estimate_minutes"}}}]))
        return {"groups": groups, "estimate": estimate[0]["n"] if estimate else 0}

    # --- watchers ------------------------------------------------------------------
    def add_watchers(self, org_id: str, task_id: str, user_ids: list[str],
                     seed: list[str] | None = None) -> None:
        """Add to the task's watchers. ``seed``: the set a task stored before watchers
        existed starts from (its creator, assignee, commenters), so nobody drops out."""
        users = [u for u in user_ids if u]
        if not users:
            return
        self._seed_watchers(task_id, seed)
        self.tasks.update_one({"_id": task_id},
                              {"$addToSet": {"watcher_user_ids": {"$each": users}}})

    def remove_watcher(self, org_id: str, task_id: str, user_id: str,
                       seed: list[str] | None = None) -> None:
        self._seed_watchers(task_id, seed)
        self.tasks.update_one({"_id": task_id}, {"$pull": {"watcher_user_ids": user_id}})

    def _seed_watchers(self, task_id: str, seed: list[str] | None) -> None:
        """Writes by ``_id`` alone (the caller read the task from its org): the one
        filter SecantusDB serves from its primary key (``shared.mongo.find_by_id``)."""
        if seed is not None:  # only where the task has no list yet
            self.tasks.update_one({"_id": task_id}, [{"$set": {"watcher_user_ids": {
                "$ifNull": ["$watcher_user_ids", {"$literal": sorted(set(seed))}]}}}])

    def forget_watcher(self, org_id: str, user_id: str) -> None:
        """Someone left the org: they watch none of its tasks."""
        self.tasks.update_many({"org_id": org_id, "watcher_user_ids": user_id},
                               {"$pull": {"watcher_user_ids": user_id}})

    # --- saved views ----------------------------------------------------------------
    def insert_view(self, doc: dict) -> dict:
        try:
            self.db.views.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("You have a view of that name already.") from None
        return doc

    def view(self, org_id: str, view_id: str) -> dict | None:
        return find_by_id(self.db.views, str(view_id), org_id=org_id)

    def visible_views(self, org_id: str, user_id: str, teams: list[str], after: str | None,
                      n: int) -> list[dict]:
        """Own views, the org's and those of ``teams`` (index ``org_views``)."""
        query: dict = {"org_id": org_id, "$or": [
            {"owner_user_id": user_id}, {"visibility": "org"},
            {"visibility": "team", "team_id": {"$in": teams}}]}
        if after:
            query["_id"] = {"$gt": after}
        return list(self.db.views.find(query).sort("_id", A).limit(n))

    def update_view(self, org_id: str, view_id: str, changes: dict) -> dict | None:
        try:
            return self.db.views.find_one_and_update(
                {"_id": view_id, "org_id": org_id}, {"$set": {**changes, "updated_at": utcnow()}},
                return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            raise Conflict("You have a view of that name already.") from None

    def delete_view(self, org_id: str, view_id: str) -> bool:
        return self.db.views.delete_one({"_id": view_id, "org_id": org_id}).deleted_count == 1
