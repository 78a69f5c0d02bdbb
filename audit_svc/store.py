"""The audit service's MongoDB collections, indexes beside the queries.

``records``: one document per audited event, append-only. ``_id`` is
``domain.record_id(org_id, seq)``, so the chain position is the primary key
(two writers of one seq: one gets a duplicate key and tries the next) and one
org's records sort by seq on the ``_id`` index; ``event_id`` is unique, so an
event is recorded once however often it arrives, by however many replicas.

``chains``: one document per org (``_id`` = org id, "" for events without
one): ``head_seq``/``head_hash`` (the newest record appended, so deleting the
newest records shows) and, once retention has swept, ``anchor_seq``/
``anchor_prev_hash`` (where the kept chain starts)."""
from __future__ import annotations

import zlib
from datetime import datetime
from typing import Iterator

import eventlet
from eventlet.semaphore import Semaphore
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import BulkWriteError, DuplicateKeyError

from audit_svc import domain
from shared.errors import Unavailable
from shared.mongo import DUPLICATE_KEY, BaseStore, utcnow

APPEND_ATTEMPTS = 100
# appends to one org wait for each other within a process (striped by org: bounded
# memory), so a process's own workers do not race for a seq; replicas still may
LOCK_STRIPES = 64


def chain_key(org_id: str | None) -> str:
    return org_id or ""


def _in_chain(org_id: str | None, low: int = 0, high: int = domain.MAX_SEQ) -> dict:
    """The ``_id`` range of one org's records with ``low <= seq <= high``."""
    return {"$gte": domain.record_id(org_id, low), "$lte": domain.record_id(org_id, high)}


class AuditStore(BaseStore):
    INDEXES = {
        "records": [
            IndexModel("event_id", unique=True, name="event"),
            IndexModel([("org_id", ASCENDING), ("actor_id", ASCENDING), ("_id", DESCENDING)],
                       name="actor"),
            IndexModel([("org_id", ASCENDING), ("object_type", ASCENDING),
                        ("object_id", ASCENDING), ("_id", DESCENDING)], name="object"),
            IndexModel([("org_id", ASCENDING), ("event_type", ASCENDING), ("_id", DESCENDING)],
                       name="event_type"),
            IndexModel([("org_id", ASCENDING), ("at", DESCENDING)], name="at"),
            # the retention sweep
            IndexModel([("recorded_at", ASCENDING)], name="age"),
        ],
    }

    def __init__(self, db):
        super().__init__(db)
        self._stripes = [Semaphore() for _ in range(LOCK_STRIPES)]

    @property
    def records(self):
        return self.db.records

    @property
    def chains(self):
        return self.db.chains

    # --- appending -----------------------------------------------------------
    def append(self, entry: dict) -> dict | None:
        """``append_many`` of one entry: its record, or None if its event is
        recorded already."""
        return next(iter(self.append_many([entry])), None)

    def append_many(self, entries: list[dict]) -> list[dict]:
        """Put the entries at the end of their orgs' chains, in order; returns the
        records written (an event recorded already is left out). Concurrent
        appenders (workers, replicas) race for the next seqs on the ``_id``; a loser
        reads the new tip and tries again (within one process they take turns per
        org first: fewer lost races)."""
        by_org: dict[str | None, list[dict]] = {}
        for entry in entries:
            by_org.setdefault(entry["org_id"], []).append(entry)
        written: list[dict] = []
        for org_id, mine in by_org.items():
            with self._stripes[zlib.crc32(chain_key(org_id).encode()) % LOCK_STRIPES]:
                written += self._append(org_id, mine)
        return written

    def _append(self, org_id: str | None, entries: list[dict]) -> list[dict]:
        left = list({e["event_id"]: e for e in entries}.values())  # each event once, in order
        written: list[dict] = []
        for attempt in range(APPEND_ATTEMPTS):
            # the head the chain document remembers is the tip, unless a crash came between
            # an insert and its head update: then the insert collides, and the next attempt
            # also reads the newest record
            last = self.last_record(org_id) if attempt else None
            seq, prev_hash = domain.tip(last, self.chain(org_id))
            records = []
            for entry in left:
                records.append(domain.seal(entry, seq + 1, prev_hash))
                seq, prev_hash = records[-1]["seq"], records[-1]["hash"]
            try:  # in order: what precedes a collision is in the chain, nothing after it
                self.records.insert_many(records, ordered=True)
                inserted = len(records)
            except BulkWriteError as exc:
                if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                    raise
                inserted = int(exc.details.get("nInserted", 0))
            if inserted:
                self._advance_head(org_id, records[inserted - 1]["seq"],
                                   records[inserted - 1]["hash"])
                written += records[:inserted]
            left = left[inserted:]
            if not left:
                return written
            # the first one left collided: its event is recorded already, or its seq taken
            if self.records.find_one({"event_id": left[0]["event_id"]}, {"_id": 1}):
                left = left[1:]
                if not left:
                    return written
            else:
                eventlet.sleep(0)  # let the winner finish its head update
        raise Unavailable(f"Could not append to the audit chain of {org_id!r}: "
                          f"{APPEND_ATTEMPTS} concurrent writers got there first.")

    def last_record(self, org_id: str | None) -> dict | None:
        return self.records.find_one({"_id": _in_chain(org_id)}, sort=[("_id", DESCENDING)])

    def chain(self, org_id: str | None) -> dict | None:
        return self.chains.find_one({"_id": chain_key(org_id)})

    def _advance_head(self, org_id: str | None, seq: int, hash_: str) -> None:
        key = chain_key(org_id)
        try:
            self.chains.update_one({"_id": key, "$or": [{"head_seq": {"$lt": seq}},
                                                        {"head_seq": {"$exists": False}}]},
                                   {"$set": {"head_seq": seq, "head_hash": hash_}}, upsert=True)
        except DuplicateKeyError:
            pass  # a later record's head is there already

    # --- reading -------------------------------------------------------------
    def list_records(self, org_id: str, filters: dict, limit: int,
                     before: str | None) -> list[dict]:
        """Newest first, ``limit + 1`` (shared.pagination), after the cursor."""
        ids = _in_chain(org_id)
        if before:
            ids = {"$gte": ids["$gte"], "$lt": before}
        query: dict = {"_id": ids, "org_id": org_id}
        for name, field in (("actor", "actor_id"), ("object_type", "object_type"),
                            ("object_id", "object_id"), ("event_type", "event_type")):
            if filters.get(name):
                query[field] = filters[name]
        when = {op: filters[name] for name, op in (("since", "$gte"), ("until", "$lt"))
                if filters.get(name)}
        if when:
            query["at"] = when
        return list(self.records.find(query).sort("_id", DESCENDING).limit(limit + 1))

    def chain_records(self, org_id: str | None, from_seq: int = 1) -> Iterator[dict]:
        """One org's records oldest first from ``from_seq`` (by ``_id`` alone: a
        record whose ``org_id`` or ``seq`` fields were edited is still visited)."""
        return self.records.find({"_id": _in_chain(org_id, max(1, from_seq))}).sort(
            "_id", ASCENDING).batch_size(1000)

    # --- retention -----------------------------------------------------------
    def chains_with_records_before(self, cutoff: datetime) -> list[str | None]:
        return list(self.records.distinct("org_id", {"recorded_at": {"$lt": cutoff}}))

    def sweep(self, org_id: str | None, cutoff: datetime) -> int:
        """Delete the org's records up to the newest recorded before ``cutoff``
        (a prefix of the chain), anchoring the chain on the first one kept first."""
        last = self.records.find_one({"_id": _in_chain(org_id), "recorded_at": {"$lt": cutoff}},
                                     sort=[("_id", DESCENDING)])
        if last is None:
            return 0
        key, anchor = chain_key(org_id), last["seq"] + 1
        try:
            self.chains.update_one(
                {"_id": key, "$or": [{"anchor_seq": {"$lt": anchor}},
                                     {"anchor_seq": {"$exists": False}}]},
                {"$set": {"anchor_seq": anchor, "anchor_prev_hash": last["hash"],
                          "swept_at": utcnow()}}, upsert=True)
        except DuplicateKeyError:
            pass  # anchored further already (another sweep)
        return self.records.delete_many({"_id": _in_chain(org_id, 1, last["seq"])}).deleted_count
