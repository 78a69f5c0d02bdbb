"""Audit rules, no I/O: what an event becomes as an audit record, the hash
chain that makes an org's records tamper-evident, and how a chain is checked.

Each org has one chain (events without an org, a user's sign-ins say, share
the chain of ``org_id`` None). Record ``seq`` n carries ``prev_hash``, the
``hash`` of record n - 1 (``GENESIS`` for the first), and its own ``hash``:
SHA-256 of the canonical JSON of every field in ``HASHED``. Changing, removing
or inserting a record breaks the chain at that point; :func:`verify` walks a
chain oldest first and names the first break.

Retention removes the oldest records; the chain then starts at an anchor (the
seq of the oldest kept record and the hash it must follow), so a chain whose
oldest records were swept still verifies, and one whose records were deleted
past the anchor does not.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from shared.telemetry import SCRUBBED, scrub

GENESIS = "0" * 64
SEQ_DIGITS = 12
MAX_SEQ = 10 ** SEQ_DIGITS - 1
# the fields a record's hash covers (everything but its _id and the hash itself)
HASHED = ("org_id", "seq", "event_id", "event_type", "producer", "at", "recorded_at", "actor_id",
          "object_type", "object_id", "correlation_id", "client_ip", "data", "prev_hash")
# the word of an event's name -> the data field naming its object, where not "<word>_id"
ID_FIELD = {"organization": "org_id"}


def record_id(org_id: str | None, seq: int) -> str:
    """A record's ``_id``: the chain (a digest of the org id) then the zero-padded
    seq, so one org's records sort by seq and one chain position is one id (a
    second writer of the same seq gets a duplicate key)."""
    chain = hashlib.sha256((org_id or "").encode()).hexdigest()[:20]
    return f"{chain}{seq:0{SEQ_DIGITS}d}"


def to_ms(value: datetime) -> datetime:
    """UTC, at the millisecond precision MongoDB stores (so a time hashed before
    the insert is the one read back)."""
    value = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def iso(value: datetime) -> str:
    value = to_ms(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(text: Any, default: datetime) -> datetime:
    """An envelope's ``occurred_at`` (``...Z``), or ``default`` when it is missing or bad."""
    if not isinstance(text, str):
        return to_ms(default)
    try:
        return to_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return to_ms(default)


def object_of(event_type: str, data: dict, field_order: Iterable[str] = ()) -> tuple[str | None,
                                                                                    str | None]:
    """Which object an event is about: ``(type, id)``.

    The first word of the event name names it when the data carries its id
    (``task.*`` -> ``task_id``, ``organization.*`` -> ``org_id``); else the first
    other ``*_id`` field (in the catalogue's order, then the data's), its name
    without ``_id`` as the type (``employee.invited`` -> invitation,
    ``task.bulk.assigned`` -> job, ``notification.read.all`` -> user); else the
    organization itself."""
    word = event_type.split(".", 1)[0]
    own = ID_FIELD.get(word, f"{word}_id")
    if data.get(own):
        return word, str(data[own])
    for name in [*field_order, *data]:
        if name.endswith("_id") and name != "org_id" and isinstance(data.get(name), str) \
                and data[name]:
            return name[:-3], data[name]
    if data.get("org_id"):
        return "organization", str(data["org_id"])
    return None, None


# sealed links (shared.sealed) open only with the sealing keys, but are links to secrets all
# the same: the log keeps that there was one, not the link
_SEALED = re.compile(r"sealed", re.I)


def _unsealed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: SCRUBBED if isinstance(k, str) and _SEALED.search(k) and v else _unsealed(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_unsealed(v) for v in value]
    return value


def canonical_data(data: Any) -> str:
    """The event's data as stored and hashed: secret-looking values masked
    (shared.telemetry.scrub: tokens, passwords, codes; and sealed links),
    canonical JSON text."""
    masked = scrub(_unsealed(data if isinstance(data, dict) else {}))
    return json.dumps(masked, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def entry(event: dict, now: datetime, field_order: Iterable[str] = ()) -> dict:
    """An envelope as an audit record, before it has its place in the chain."""
    raw = event.get("data")
    data: dict = raw if isinstance(raw, dict) else {}
    object_type, object_id = object_of(str(event.get("event_type")), data, field_order)
    return {
        "org_id": event.get("org_id") or None,
        "event_id": str(event["event_id"]),
        "event_type": str(event.get("event_type")),
        "producer": event.get("producer"),
        "at": parse_time(event.get("occurred_at"), now),
        "recorded_at": to_ms(now),
        "actor_id": event.get("actor_id"),
        "object_type": object_type,
        "object_id": object_id,
        "correlation_id": event.get("correlation_id"),
        "client_ip": event.get("client_ip"),
        "data": canonical_data(data),
    }


def _plain(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def chain_hash(record: dict) -> str:
    """SHA-256 over the canonical JSON of the record's ``HASHED`` fields."""
    body = {name: _plain(record.get(name)) for name in HASHED}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(entry_: dict, seq: int, prev_hash: str) -> dict:
    """The record at ``seq`` of its chain, following ``prev_hash``."""
    if not 1 <= seq <= MAX_SEQ:
        raise ValueError(f"seq {seq} is outside 1..{MAX_SEQ}")
    record = {**entry_, "seq": seq, "prev_hash": prev_hash}
    record["hash"] = chain_hash(record)
    record["_id"] = record_id(entry_["org_id"], seq)
    return record


def tip(last: dict | None, chain: dict | None) -> tuple[int, str]:
    """Where the next record goes: ``(seq of the last record, its hash)``.

    The furthest of the newest record, the head the chain document remembers
    (so records deleted from the end leave a gap rather than being written over)
    and the retention anchor (every record swept)."""
    chain = chain or {}
    candidates = [(0, GENESIS)]
    if last:
        candidates.append((int(last["seq"]), last["hash"]))
    if chain.get("head_seq"):
        candidates.append((int(chain["head_seq"]), chain["head_hash"]))
    if chain.get("anchor_seq"):
        candidates.append((int(chain["anchor_seq"]) - 1, chain["anchor_prev_hash"]))
    return max(candidates, key=lambda c: c[0])


def retention_cutoff(now: datetime, days: float) -> datetime | None:
    """Records older than this go; None: keep everything (0 days)."""
    return to_ms(now - timedelta(days=days)) if days > 0 else None


def _brk(record: dict | None, seq: int, reason: str, detail: str) -> dict:
    return {"seq": seq, "reason": reason, "detail": detail,
            "record_id": record.get("_id") if record else None,
            "event_id": record.get("event_id") if record else None}


def verify(records: Iterable[dict], chain: dict | None = None) -> dict:
    """Check one chain, ``records`` oldest first from its anchor on. Returns
    ``{"ok", "checked", "first_seq", "last_seq", "head_hash", "break"}``;
    ``break`` names the first record where the chain fails and why:
    ``altered`` (its content does not match its hash), ``missing`` (records
    before it are gone), ``link`` (it does not follow the record before it:
    that one or this one was rewritten), ``truncated`` (the newest records are
    gone: the chain's head is further than its last record)."""
    chain = chain or {}
    expected_seq = int(chain.get("anchor_seq") or 1)
    expected_prev = chain.get("anchor_prev_hash") or GENESIS
    checked, first, last_hash = 0, None, None
    for record in records:
        seq = record.get("seq")
        if chain_hash(record) != record.get("hash"):
            return _result(False, checked, first, expected_seq - 1, last_hash,
                           _brk(record, seq if isinstance(seq, int) else expected_seq, "altered",
                                "the record's content does not match its hash"))
        if seq != expected_seq:
            what = (f"records {expected_seq}..{seq - 1} are missing" if isinstance(seq, int)
                    and seq > expected_seq else f"seq {seq} where {expected_seq} was expected")
            return _result(False, checked, first, expected_seq - 1, last_hash,
                           _brk(record, expected_seq, "missing", what))
        if record.get("prev_hash") != expected_prev:
            return _result(False, checked, first, expected_seq - 1, last_hash,
                           _brk(record, seq, "link", f"record {seq} does not follow record "
                                f"{seq - 1}: one of them was rewritten"))
        checked += 1
        first = seq if first is None else first
        expected_seq, expected_prev, last_hash = seq + 1, record["hash"], record["hash"]
    head_seq = int(chain.get("head_seq") or 0)
    if head_seq >= expected_seq:
        return _result(False, checked, first, expected_seq - 1, last_hash,
                       _brk(None, expected_seq, "truncated",
                            f"records {expected_seq}..{head_seq} are missing"))
    if head_seq and head_seq == expected_seq - 1 and chain.get("head_hash") != expected_prev:
        return _result(False, checked, first, expected_seq - 1, last_hash,
                       _brk(None, head_seq, "link",
                            f"record {head_seq} is not the one the chain's head recorded"))
    return _result(True, checked, first, expected_seq - 1, last_hash, None)


def _result(ok: bool, checked: int, first: int | None, last: int, head_hash: str | None,
            brk: dict | None) -> dict:
    return {"ok": ok, "checked": checked, "first_seq": first, "last_seq": last if checked else None,
            "head_hash": head_hash, "break": brk}
