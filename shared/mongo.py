"""MongoDB for a service: one client per container, the service's own database.

Each service's ``store.py`` defines a :class:`BaseStore` subclass that declares
its indexes next to its queries; ``Mongo(StoreClass)`` builds the client in
``setup()``, creates the indexes idempotently at start, and hands every worker
the same store (pymongo clients are thread- and greenlet-safe).
"""
from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, overload

import pymongo
from eventlet.event import Event
from nameko.extensions import DependencyProvider
from pymongo import IndexModel, UpdateMany, UpdateOne, _csot
from pymongo.errors import (
    BulkWriteError,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
)

from shared.errors import Timeout, Unavailable

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
HANDLED_EVENTS_TTL = 7 * 24 * 3600
OUTBOX_SENT_TTL = 24 * 3600
# before every date: the start of a date range a query bounds on both sides. SecantusDB
# walks an open ``$lt``/``$lte`` from the index's first entry, the documents without
# the date (null sorts before dates) included
EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


def utcnow() -> datetime:
    """Now, at the millisecond precision MongoDB stores: a time written and read
    back is equal to itself, so an id derived from it is the same on a re-run."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# SecantusDB matches every candidate document against the whole ``$in`` list, so
# one query of n ids costs n * n comparisons: n ids go as n / IN_SLICE queries
IN_SLICE = 50


@overload
def aware(at: datetime) -> datetime: ...
@overload
def aware(at: None) -> None: ...
def aware(at: datetime | None) -> datetime | None:
    """A stored date as UTC (a client without ``tz_aware`` reads it naive)."""
    return at.replace(tzinfo=timezone.utc) if at is not None and at.tzinfo is None else at


def id_slices(ids, size: int = IN_SLICE) -> list[list]:
    """``ids`` in lists of at most ``size``, for ``$in`` queries (see ``IN_SLICE``)."""
    ids = list(ids)
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def claim_ids(collection, ids: list, still: dict, fields: dict) -> list[dict]:
    """Take the documents ``ids`` that still match ``still`` for this caller: one
    conditional update per slice of ids setting ``fields`` and a claim id of its own
    (``_id`` first: SecantusDB plans by the first clause it can index, and another
    index would hand it every document of its prefix to match), then a read of those
    that carry the claim id, in the order of ``ids``: a claimer racing for the same
    ones gets only those it wrote. For queues of due work (deliveries, retries)."""
    claim = uuid.uuid4().hex
    parts = id_slices(ids)
    collection.bulk_write([UpdateMany({"_id": {"$in": part}, **still},
                                      {"$set": {**fields, "claim": claim}}) for part in parts],
                          ordered=False)
    order = {_id: n for n, _id in enumerate(ids)}
    return sorted((d for part in parts for d in collection.find({"_id": {"$in": part},
                                                                  "claim": claim})),
                  key=lambda d: order[d["_id"]])


def holds(doc: dict, conditions: dict) -> bool:
    """Whether ``doc`` has these field values, as a query would say: scalars (None
    matches a missing field), ``{"$in": [...]}`` or ``{"$ne": value}``."""
    for name, want in conditions.items():
        have = doc.get(name)
        if isinstance(want, dict):
            if set(want) == {"$in"}:
                if have not in want["$in"]:
                    return False
            elif set(want) == {"$ne"}:
                if have == want["$ne"]:
                    return False
            else:
                raise ValueError(f"only equality, $in and $ne are compared here, not {want}")
        elif have != want:
            return False
    return True


def find_by_id(collection, _id, projection: dict | None = None, **equal) -> dict | None:
    """The document ``_id`` if it :func:`holds` ``equal``, else None.

    Read by ``_id`` alone and compared here: SecantusDB takes its primary key
    only for a filter that is ``{"_id": value}`` and nothing more. Any other
    field beside it sends the query to an index that field leads (every
    document of the org) or to a scan of the collection: 5x the server's CPU
    for one task among 400, growing with the collection (docs/stack.md)."""
    if projection is not None and equal:
        projection = {**projection, **{name: 1 for name in equal}}
    doc = collection.find_one({"_id": _id}, projection)
    return doc if doc is not None and holds(doc, equal) else None


def find_by_ids(collection, ids, projection: dict | None = None, **equal) -> list[dict]:
    """The documents among ``ids`` that :func:`holds` ``equal``, in ``_id`` order: read
    by ``{"_id": {"$in": ids}}`` alone (in :data:`IN_SLICE` lists), for the reason
    :func:`find_by_id` gives; with another field beside it SecantusDB reads every
    document of the org."""
    if projection is not None and equal:
        projection = {**projection, **{name: 1 for name in equal}}
    found = [doc for part in id_slices(dict.fromkeys(ids))
             for doc in collection.find({"_id": {"$in": part}}, projection)]
    return sorted((doc for doc in found if holds(doc, equal)), key=lambda doc: doc["_id"])


# reads and writes of one change that concurrent changes may undo: each round has a
# winner, so n writers of one document need at most n rounds (and a caller's
# deadline bounds them too)
WRITE_ATTEMPTS = 100


@dataclass(frozen=True)
class Expr:
    """A field's new value in :func:`write_at_version` given as an aggregation
    expression of the stored document (not a literal)."""
    expression: dict


# Events a document's write carries (``carrying``): recorded with the change itself, so
# the call's reply needs no other write after it lands. Sent after the call and taken
# out (``BaseStore.carried_sent``); the relay sends what a crash left (``carried_pending``).
CARRIED = "outbox_pending"
CARRIED_AT = "outbox_at"  # when the oldest of them was written (a sparse index: the relay's)


def carrying(envelopes: list[dict], at: datetime, new: bool = False) -> dict:
    """The fields for :func:`write_at_version` that add ``envelopes`` to the document's
    (``new``: those of a document about to be inserted)."""
    if not envelopes:
        return {}
    if new:
        return {CARRIED: envelopes, CARRIED_AT: at}
    return {CARRIED: Expr({"$concatArrays": [{"$ifNull": [f"${CARRIED}", []]},
                                             {"$literal": envelopes}]}),
            CARRIED_AT: Expr({"$ifNull": [f"${CARRIED_AT}", {"$literal": at}]})}


def set_while(condition: dict, fields: dict) -> dict:
    """An update pipeline stage that sets ``fields`` (values, or :class:`Expr`) only
    while ``condition`` (an expression of the stored document) holds: with a filter of
    ``{"_id": x}`` alone, the conditional write SecantusDB serves from its primary key."""
    return {"$set": {name: {"$cond": [condition, value.expression if isinstance(value, Expr)
                                      else {"$literal": value}, f"${name}"]}
                     for name, value in fields.items()}}


def at_version(before: dict, fields: dict, version: str = "version") -> dict:
    """The update pipeline stage of :func:`write_at_version`: ``fields`` and the next
    ``version``, set only while the version is ``before``'s (also for ``bulk_write``
    of ``UpdateOne({"_id": ...}, [stage])``: its ``modified_count`` says how many landed)."""
    stored = {"$ifNull": [f"${version}", 0]}
    same = {"$eq": [stored, before.get(version) or 0]}
    return set_while(same, {**fields, version: Expr({"$add": [stored, 1]})})


def write_at_version(collection, _id, fields: dict | Callable[[dict], dict],
                     current: dict | None = None, **equal) -> dict | None:
    """Set ``fields`` on the document ``_id`` if it :func:`holds` ``equal``, and bump
    its ``version`` (a missing one counts as 0); returns the document as it was
    just before (None: there is none, or it does not hold ``equal``). ``fields``
    may be a function of that document (what to set, given what is there).
    ``current``: the document as the caller just read it, tried first instead of
    reading it again (if it is stale, the version check fails and it is read).
    A field's value may be an :class:`Expr` of the stored document.

    What ``find_one_and_update({"_id": _id, **equal}, {"$set": fields, "$inc":
    {"version": 1}})`` does, in shapes SecantusDB serves from its primary key: a
    findAndModify always scans the whole collection there (57 ms of its CPU among
    5,000 documents), and so does an update whose filter has more than the id.
    So: read by id (:func:`find_by_id`), then an update pipeline on ``{"_id": _id}``
    alone whose every field changes only while the version is the one read; a
    concurrent change in between (the version moved) reads again. Under an RPC
    caller's deadline (``CALL_DEADLINE``) the server refuses it once that has
    passed (``Timeout``), however long the write waited to be executed."""
    for _attempt in range(WRITE_ATTEMPTS):
        before = current if current is not None and holds(current, equal) else \
            find_by_id(collection, _id, **equal)
        current = None
        if before is None:
            return None
        stage = at_version(before, fields(before) if callable(fields) else fields)
        on_time = _on_time()
        with _refused_late():
            changed = _update_known(collection, {"_id": _id}, [*([on_time] if on_time else []), stage],
                                    _id, version=(before.get("version") or 0) + 1)
        if changed == 1:
            _landed()
            return before
    raise Unavailable("This is being changed by others right now; try again.",
                      headers={"Retry-After": "1"})


# Writes a caller may have given up on: the deadline (epoch seconds) of the RPC call
# this green thread serves, set by ``shared.rpc.CallDeadline``. The call's writes go
# through ``write_at_version`` / ``BaseStore.insert_in_time``, which the server refuses
# once it has passed, however long the write waited to be executed.
CALL_DEADLINE: ContextVar[float | None] = ContextVar("call_deadline", default=None)
# Once one of them has landed, what else the call does must finish and its reply
# reach the caller, which waits ``shared.rpc.DEADLINE_MARGIN`` (1 s) longer than the
# deadline: the call's MongoDB operations get half of it more.
AFTER_LANDING_S = 0.5
NOT_A_DOCUMENT = 40228  # a $replaceWith that is not a document: a late write (_on_time)


def _on_time() -> dict | None:
    """The first stage of a write's update pipeline under the caller's deadline: the
    document unchanged while the server's clock is before it when the server starts
    the command, else a string, which the server refuses (``NOT_A_DOCUMENT``); None
    outside a call with a deadline. ``$$NOW`` is compared as epoch ms: compared as a
    date, SecantusDB's ``$$NOW`` is time-zone aware and a date of the command naive,
    and nothing matches. Not in the query: an ``$expr`` there makes SecantusDB scan
    the collection instead of looking the ``_id`` up."""
    deadline = CALL_DEADLINE.get()
    if deadline is None:
        return None
    before = {"$lt": [{"$toLong": "$$NOW"}, int(deadline * 1000)]}
    return {"$replaceWith": {"$cond": [before, "$$ROOT", "late"]}}


def _late() -> Timeout:
    return Timeout("The caller's deadline passed before this write; nothing was written.")


@contextmanager
def _refused_late() -> Iterator[None]:
    """The server's refusals of a write under the caller's deadline as a 504."""
    try:
        yield
    except ExecutionTimeout:  # maxTimeMS: applied too long after the server started it
        raise _late() from None
    except OperationFailure as exc:
        if exc.code == NOT_A_DOCUMENT:  # started after the deadline (``_on_time``)
            raise _late() from None
        raise


def _update_known(collection, query: dict, pipeline: list, _id, upsert: bool = False,
                  **landed) -> int:
    """``update_one`` (under the caller's deadline) and how many it modified, also when
    its answer came too late. pymongo stops waiting at the deadline, but the server
    may have applied the write just before it: its answer then reaches a busy process
    after the timer fired (eventlet's hub runs timers before it reads sockets). Then a
    read of ``_id``, with ``AFTER_LANDING_S`` more, says whether it was applied (the
    document exists and holds ``landed``); if not, the server refuses it from then on
    (``_on_time``, and the ``maxTimeMS`` it checks once the write has waited for the
    document, between pipeline stages)."""
    try:
        result = collection.update_one(query, pipeline, upsert=upsert)
        return result.modified_count + (result.upserted_id is not None)
    except NetworkTimeout:
        if CALL_DEADLINE.get() is None:
            raise
        _more_time()
        if find_by_id(collection, _id, {"_id": 1}, **landed) is not None:
            return 1
        raise _late() from None


def _landed() -> None:
    """The call's write landed: its other operations are not fenced any more, and
    get ``AFTER_LANDING_S`` beyond the deadline."""
    _more_time()
    CALL_DEADLINE.set(None)


def _more_time() -> None:
    """The call's MongoDB operations get ``AFTER_LANDING_S`` beyond its deadline
    (``pymongo.timeout``'s own context variable; ``CallDeadline`` restores it when
    the call ends)."""
    deadline = CALL_DEADLINE.get()
    if deadline is not None and _csot.get_timeout() is not None:
        until = time.monotonic() + deadline - time.time() + AFTER_LANDING_S
        _csot.DEADLINE.set(max(_csot.get_deadline(), until))


def database_name(config: dict, service_name: str) -> str:
    return f"{config.get('MONGODB_DB_PREFIX', 'workforce')}_{service_name}"


class GroupWrites:
    """One write for what many green threads ask at the same moment (group commit).

    ``group(item)`` waits for its item's result. The first caller while nothing is
    being written writes at once, itself and whatever is waiting; whoever arrives
    meanwhile waits for the next round, which the first of them writes (every caller
    writes at most one round, and nothing waits for a round to fill). ``write``
    takes the round's items and returns their results in order; if it raises, every
    caller of that round gets the exception."""

    def __init__(self, write: Callable[[list], list]):
        self.write = write
        self.waiting: list[tuple[Any, Event]] = []
        self.busy = False

    def __call__(self, item: Any) -> Any:
        mine = Event()
        self.waiting.append((item, mine))
        if self.busy:
            try:
                role, value = mine.wait()
            except BaseException:  # killed while waiting: the round it was to write goes on
                self._abandon(mine)
                raise
            if role == "error":
                raise value
            if role == "result":
                return value
        self.busy = True  # ours is the round to write ("lead", or no round was running)
        round_, self.waiting = self.waiting, []
        try:
            results = self.write([item for item, _ in round_])
        except BaseException as exc:  # no caller of the round is left waiting
            error = exc if isinstance(exc, Exception) else Unavailable("Try again.")
            for _, event in round_:
                if event is not mine:
                    event.send(("error", error))
            raise
        else:
            for (_, event), result in zip(round_, results, strict=True):
                if event is mine:
                    value = result
                else:
                    event.send(("result", result))
            return value
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        if self.waiting:
            self.waiting[0][1].send(("lead", None))
        else:
            self.busy = False

    def _abandon(self, mine: Event) -> None:
        self.waiting = [entry for entry in self.waiting if entry[1] is not mine]
        if mine.ready() and mine.wait()[0] == "lead":  # it was to write the next round
            self._hand_over()


class BaseStore:
    """A service's collections. Subclasses list ``INDEXES`` as
    ``{collection: [IndexModel, ...]}`` beside the queries that need them."""

    INDEXES: dict[str, list[IndexModel]] = {
        # ids of events each handler has handled (see shared.events)
        "handled_events": [IndexModel("at", expireAfterSeconds=HANDLED_EVENTS_TTL)],
        # events waiting to be published (shared.events.EventBus); sent ones expire
        "outbox": [IndexModel([("state", 1), ("created_at", 1)]),
                   IndexModel("sent_at", expireAfterSeconds=OUTBOX_SENT_TTL)],
    }

    # Versioned, idempotent data migrations run at start after the indexes:
    # [("0001_what_it_does", function(db)), ...], applied once each, in order,
    # and recorded in the service's ``migrations`` collection.
    MIGRATIONS: list[tuple[str, Callable[[pymongo.database.Database], None]]] = []

    def __init__(self, db: pymongo.database.Database):
        self.db = db

    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded; returns the ids applied now.
        A migration another instance is applying is left to it."""
        applied = []
        for migration_id, function in self.MIGRATIONS:
            try:
                self.db.migrations.insert_one({"_id": migration_id, "state": "running",
                                               "started_at": datetime.now(timezone.utc)})
            except DuplicateKeyError:
                continue
            try:
                function(self.db)
            except Exception:
                self.db.migrations.delete_one({"_id": migration_id})  # retried at next start
                raise
            self.db.migrations.update_one({"_id": migration_id}, {"$set": {
                "state": "done", "finished_at": datetime.now(timezone.utc)}})
            applied.append(migration_id)
        return applied

    def applied_migrations(self) -> list[dict]:
        return list(self.db.migrations.find({}, {"_id": 1, "state": 1, "finished_at": 1}).sort("_id"))

    def ensure_indexes(self) -> None:
        for collection, indexes in self.all_indexes().items():
            if indexes:
                self.db[collection].create_indexes(indexes)

    @classmethod
    def all_indexes(cls) -> dict[str, list[IndexModel]]:
        merged: dict[str, list[IndexModel]] = {}
        for klass in reversed(cls.__mro__):
            for collection, indexes in getattr(klass, "INDEXES", {}).items():
                merged.setdefault(collection, []).extend(indexes)
        return merged

    # Idempotent event handling (shared.events): a handler claims an event id
    # before running, with a lease so a crashed worker's claim expires. The claims
    # (and the finishes) of all the process's handlers that wait at the same moment
    # are one write (``GroupWrites``): under a fan-out, a handful per round trip.
    def claim_event(self, handler: str, event_id: str, lease_ms: int) -> tuple[str, int]:
        """``("claimed", 0)``, ``("done", 0)`` or ``("busy", ms left on the lease)``."""
        return self._grouped("_claims", self._claim_keys)((f"{handler}:{event_id}", lease_ms))

    def claim_events(self, handler: str, event_ids: list[str],
                     lease_ms: int) -> dict[str, tuple[str, int]]:
        """``claim_event`` for a batch in one write: ``{event id: (state, ms left)}``."""
        ids = list(dict.fromkeys(event_ids))
        states = self._claim_keys([(f"{handler}:{event_id}", lease_ms) for event_id in ids])
        return dict(zip(ids, states, strict=True))

    def _claim_keys(self, claims: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """The claims of ``(handler:event id, lease ms)`` in one insert; only keys seen
        before cost a look-up of their own."""
        now = datetime.now(timezone.utc)
        until = {key: now + timedelta(milliseconds=lease_ms) for key, lease_ms in claims}
        docs = {key: {"_id": key, "state": "processing", "at": now, "lease_until": at}
                for key, at in until.items()}
        states = {key: ("claimed", 0) for key in docs}
        if not docs:
            return []
        try:
            self.db.handled_events.insert_many(list(docs.values()), ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            for key in {list(docs)[e["index"]] for e in errors}:
                states[key] = self._claim_existing(key, now, until[key])
        answers, seen = [], set()
        for key, lease_ms in claims:  # the same event twice in a round: the second waits
            answers.append(states[key] if key not in seen else ("busy", lease_ms))
            seen.add(key)
        return answers

    def _claim_existing(self, key: str, now: datetime, until: datetime) -> tuple[str, int]:
        """The claim of an event id recorded before: an expired lease is taken over
        (a write by ``_id`` alone if the lease is still the expired one read)."""
        events = self.db.handled_events
        doc = events.find_one({"_id": key}) or {}
        if doc.get("state") == "done":
            return "done", 0
        lease = aware(doc.get("lease_until"))
        if lease is None or lease < now:
            expired = {"$and": [{"$eq": ["$state", "processing"]},
                                {"$eq": ["$lease_until", lease]}]}
            if events.update_one({"_id": key}, [set_while(expired, {"lease_until": until})]
                                 ).modified_count:
                return "claimed", 0
            doc = events.find_one({"_id": key}) or {}
            if doc.get("state") == "done":
                return "done", 0
            lease = aware(doc.get("lease_until"))
        left = (lease - now).total_seconds() * 1000 if lease else 0
        return "busy", max(1, int(left))

    def finish_event(self, handler: str, event_id: str) -> None:
        self._grouped("_finishes", self._finish_keys)(f"{handler}:{event_id}")

    def finish_events(self, handler: str, event_ids: list[str]) -> None:
        """``finish_event`` for a batch, in one write."""
        self._finish_keys([f"{handler}:{event_id}" for event_id in event_ids])

    def _finish_keys(self, keys: list[str]) -> list[None]:
        at = datetime.now(timezone.utc)
        if keys:
            self.db.handled_events.bulk_write([UpdateOne(
                {"_id": key}, {"$set": {"state": "done", "at": at}, "$unset": {"lease_until": ""}},
                upsert=True) for key in dict.fromkeys(keys)], ordered=False)
        return [None] * len(keys)

    def _grouped(self, name: str, write: Callable[[list], list]) -> "GroupWrites":
        group = self.__dict__.get(name)
        if group is None:
            group = self.__dict__[name] = GroupWrites(write)
        return group

    def release_event(self, handler: str, event_id: str) -> None:
        """Give up a claim: its lease ends now, so the event's next delivery takes it
        over (``_claim_existing``); a finished one stays done. A write by ``_id`` alone:
        a delete filtered on the state too made SecantusDB scan the whole ledger (1-6 s
        each under load, while a failed batch released each of its events)."""
        self.db.handled_events.update_one({"_id": f"{handler}:{event_id}"}, [set_while(
            {"$eq": ["$state", "processing"]}, {"lease_until": datetime.now(timezone.utc)})])

    def run_transaction(self, write: Callable):
        """Run ``write(session)`` in a MongoDB transaction and return its result.
        Pass the session to every write in it, and to ``events.publish(...,
        session=...)``, so state and events commit together. A transient
        conflict with a concurrent writer re-runs ``write`` (pymongo's
        ``with_transaction``), so ``write`` must only touch the database.

        Not once the caller's deadline (``shared.rpc.CallDeadline``) has passed:
        ``with_transaction`` retries for 120 s whatever the deadline, and with
        the time already spent each attempt fails before any I/O, so it spun
        without yielding and starved the whole process."""
        def attempt(session):
            left = _csot.remaining()
            if left is not None and left <= 0:
                raise ExecutionTimeout("The caller's deadline passed.", 50)
            return write(session)

        with self.db.client.start_session() as session:
            return session.with_transaction(attempt)

    # The outbox (shared.events)
    def outbox_add(self, envelopes: list[dict], session=None) -> None:
        now = datetime.now(timezone.utc)
        try:
            self.db.outbox.insert_many(
                [{"_id": e["event_id"], "state": "pending", "created_at": now, "envelope": e}
                 for e in envelopes], ordered=False, session=session)
        except BulkWriteError as exc:
            # an id published again (a re-run handler's deterministic ids) is sent again
            if any(err.get("code") != DUPLICATE_KEY for err in exc.details.get("writeErrors", [])):
                raise

    def outbox_pending(self, event_ids: list[str]) -> set[str]:
        if not event_ids:
            return set()
        return {d["_id"] for d in find_by_ids(self.db.outbox, event_ids, {"_id": 1},
                                              state="pending")}

    def outbox_mark_sent(self, event_ids: list[str]) -> None:
        if not event_ids:
            return
        at = datetime.now(timezone.utc)
        self.db.outbox.bulk_write([UpdateMany({"_id": {"$in": ids}},
                                              {"$set": {"state": "sent", "sent_at": at}})
                                   for ids in id_slices(event_ids)], ordered=False)

    def outbox_claim_pending(self, older_than_s: float, limit: int) -> list[dict]:
        """Pending entries older than ``older_than_s``, claimed for a while so two
        relays rarely send the same one (consumers dedupe if they do)."""
        now = datetime.now(timezone.utc)
        cutoff = now - timedelta(seconds=older_than_s)
        claimed = []
        still = {"$and": [{"$eq": ["$state", "pending"]}, {"$lt": ["$created_at", cutoff]}]}
        for doc in self.db.outbox.find({"state": "pending", "created_at": {"$lt": cutoff}},
                                       {"envelope": 1}).sort("created_at", 1).limit(limit):
            # re-arms the grace period (the claim) if no other relay did since the read:
            # by ``_id`` alone (a findAndModify scans the whole outbox on SecantusDB)
            if self.db.outbox.update_one({"_id": doc["_id"]},
                                         [set_while(still, {"created_at": now})]).modified_count:
                claimed.append(doc["envelope"])
        return claimed

    # collections whose documents carry their changes' events (``carrying``); each has
    # a sparse index on ``CARRIED_AT``
    CARRYING: tuple[str, ...] = ()

    def carried_sent(self, collection: str, _id, event_ids: list[str]) -> None:
        """Take events that went out from the document that carried them (by ``_id``
        alone; ``CARRIED_AT`` goes with the last)."""
        left = {"$filter": {"input": {"$ifNull": [f"${CARRIED}", []]},
                            "cond": {"$not": [{"$in": ["$$this.event_id", event_ids]}]}}}
        self.db[collection].update_one({"_id": _id}, [
            {"$set": {CARRIED: left}},
            {"$set": {CARRIED_AT: {"$cond": [{"$eq": [{"$size": f"${CARRIED}"}, 0]},
                                             "$$REMOVE", f"${CARRIED_AT}"]}}}])

    def carried_pending(self, older_than_s: float, limit: int) -> list[tuple[str, object, list]]:
        """``(collection, _id, envelopes)`` of documents whose events have waited longer
        than ``older_than_s``, claimed as ``outbox_claim_pending`` claims its entries."""
        now = datetime.now(timezone.utc)
        cutoff = now - timedelta(seconds=older_than_s)
        claimed = []
        for name in self.CARRYING:
            collection = self.db[name]
            for doc in collection.find({CARRIED_AT: {"$lt": cutoff}}, {CARRIED: 1, CARRIED_AT: 1}
                                       ).sort(CARRIED_AT, 1).limit(limit):
                same = {"$eq": [f"${CARRIED_AT}", doc[CARRIED_AT]]}
                if doc.get(CARRIED) and collection.update_one(
                        {"_id": doc["_id"]}, [set_while(same, {CARRIED_AT: now})]).modified_count:
                    claimed.append((name, doc["_id"], doc[CARRIED]))
        return claimed

    def outbox_backlog(self) -> dict:
        """Events recorded and not yet sent: how many, and how old the oldest is (s)."""
        pending = self.db.outbox.count_documents({"state": "pending"})
        oldest = [doc["created_at"] for doc in self.db.outbox.find(
            {"state": "pending"}, {"created_at": 1}).sort("created_at", 1).limit(1)]
        for name in self.CARRYING:  # and those documents carry (their index: the relay's)
            docs = list(self.db[name].find({CARRIED_AT: {"$lt": datetime.max}},
                                           {CARRIED: 1, CARRIED_AT: 1}))
            pending += sum(len(doc.get(CARRIED) or []) for doc in docs)
            oldest += [doc[CARRIED_AT] for doc in docs]
        age = None
        if oldest:
            created = min(aware(at) for at in oldest)
            age = round((datetime.now(timezone.utc) - created).total_seconds(), 1)
        return {"pending": pending, "oldest_s": age}

    @staticmethod
    def insert_ignoring_duplicates(collection, docs: list[dict]) -> set[str]:
        """Insert in one write; documents whose _id exists already are skipped
        (deterministic ids: a re-run inserts nothing twice). Returns the new ids."""
        if not docs:
            return set()
        ids = {d["_id"] for d in docs}
        try:
            collection.insert_many(docs, ordered=False)
            return ids
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return ids - {docs[e["index"]]["_id"] for e in errors}

    # Writes under the caller's deadline (``CALL_DEADLINE``). pymongo sends it as
    # ``maxTimeMS`` (``pymongo.timeout``), but a server counts that from when it
    # starts the command, not from when it was sent, and SecantusDB checks it only
    # every 64 polls of a scan: a write queued behind others, or waiting for a
    # document another transaction holds (the server retries it until that ends),
    # landed after the caller had answered 504. So the write is an update pipeline
    # that (1) starts with a stage the server fails when its clock is past the
    # deadline as it starts the command, and (2) SecantusDB checks ``maxTimeMS``
    # before each stage each time it applies it, also after waiting for a lock.
    # Outside a call with a deadline it is the plain write. (``write_at_version``,
    # the one conditional change of a document, is fenced the same way.)
    @staticmethod
    def insert_in_time(collection, doc: dict) -> None:
        """``insert_one``, refused (``Timeout``) once the caller's deadline has passed:
        an upsert of ``doc`` by its ``_id`` matching no document (one with that
        ``_id`` is a ``DuplicateKeyError``, as with ``insert_one``)."""
        on_time = _on_time()
        if on_time is None:
            collection.insert_one(doc)
            return
        with _refused_late():
            _update_known(collection, {"_id": doc["_id"], "_never": {"$exists": True}},
                          [on_time, {"$replaceWith": {"$literal": doc}}], doc["_id"], upsert=True)
        _landed()

    def ping(self) -> float:
        started = time.perf_counter()
        self.db.client.admin.command("ping")
        return (time.perf_counter() - started) * 1000


def concerns(config: dict) -> dict:
    """Write and read concerns from config: ``w=majority`` by default, so a write
    (and the outbox entry of the events it publishes) that was acknowledged
    survives the loss of the primary of a replica set; reads ``local``."""
    write = str(config.get("MONGODB_WRITE_CONCERN") or "majority")
    return {"w": int(write) if write.isdigit() else write,
            "readConcernLevel": str(config.get("MONGODB_READ_CONCERN") or "local")}


class Mongo(DependencyProvider):
    def __init__(self, store_cls: type[BaseStore] = BaseStore):
        self.store_cls = store_cls
        self.client: pymongo.MongoClient | None = None
        self.store: BaseStore  # made by setup()

    def setup(self) -> None:
        config = self.container.config
        self.client = pymongo.MongoClient(
            config["MONGODB_URI"],
            serverSelectionTimeoutMS=int(config.get("MONGODB_TIMEOUT_MS", 3000)),
            # the heartbeat's timeout too (pymongo): shorter, and a heartbeat stuck behind a
            # busy SecantusDB cancels every operation in flight ("operation cancelled")
            connectTimeoutMS=int(config.get("MONGODB_CONNECT_TIMEOUT_MS", 15000)),
            tz_aware=True,
            **concerns(config),
        )
        db = self.client[database_name(config, self.container.service_name)]
        self.store = self.store_cls(db)

    def start(self) -> None:
        try:
            self.store.ensure_indexes()
            applied = self.store.migrate()
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
        except PyMongoError as exc:  # health shows it; the service still starts
            log.error("could not create indexes or migrate: %s", exc)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    kill = stop

    def get_dependency(self, worker_ctx) -> BaseStore:
        return self.store

