"""The audit rules: what an event becomes, the hash chain, and a check that
names the first break of a chain, also after retention swept its start."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest

from audit_svc import domain, schemas
from audit_svc.service import FIELD_ORDER, AuditService
from shared.event_catalogue import CATALOGUE
from shared.events import make_envelope

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def _event(event_type="task.created", org="org1", n=0, **data):
    return make_envelope(event_type, {"org_id": org, "task_id": f"t{n}", "title": "x", **data},
                         producer="tasks", org_id=org, actor_id="u1", correlation_id=f"req-{n}",
                         client_ip="203.0.113.7")


def _chain(n: int, org="org1") -> list[dict]:
    records, prev = [], domain.GENESIS
    for i in range(n):
        record = domain.seal(domain.entry(_event(org=org, n=i), NOW + timedelta(seconds=i)),
                             i + 1, prev)
        records.append(record)
        prev = record["hash"]
    return records


def test_an_event_becomes_a_record_with_who_what_which_object_when_and_which_request():
    event = _event(sealed_link="v1.secret-stuff", n=7)
    entry = domain.entry(event, NOW)
    assert entry["org_id"] == "org1" and entry["actor_id"] == "u1"
    assert (entry["object_type"], entry["object_id"]) == ("task", "t7")
    assert entry["event_type"] == "task.created" and entry["event_id"] == event["event_id"]
    assert entry["correlation_id"] == "req-7" and entry["client_ip"] == "203.0.113.7"
    assert entry["at"] == domain.parse_time(event["occurred_at"], NOW)
    assert entry["recorded_at"] == NOW.replace(microsecond=123000)
    assert "secret-stuff" not in entry["data"] and '"sealed_link"' in entry["data"]


@pytest.mark.parametrize("event_type, data, expected", [
    ("task.comment.added", {"org_id": "o", "task_id": "t", "comment_id": "c"}, ("task", "t")),
    ("organization.updated", {"org_id": "o", "name": "n"}, ("organization", "o")),
    ("employee.invited", {"org_id": "o", "invitation_id": "i", "email": "e"}, ("invitation", "i")),
    ("employee.invitation.expired", {"org_id": "o", "invitation_id": "i"}, ("invitation", "i")),
    ("task.bulk.assigned", {"org_id": "o", "job_id": "j", "tasks": []}, ("job", "j")),
    ("notification.read.all", {"user_id": "u", "count": 3}, ("user", "u")),
    ("user.login", {"user_id": "u", "session_id": "s"}, ("user", "u")),
    ("webhook.endpoint.disabled", {"org_id": "o", "webhook_id": "w"}, ("webhook", "w")),
    ("team.member.added", {"org_id": "o", "team_id": "t", "employee_id": "e"}, ("team", "t")),
    ("project.archived", {"org_id": "o", "project_id": "p"}, ("project", "p")),  # a new event
    ("thing.happened", {"org_id": "o"}, ("organization", "o")),
    ("thing.happened", {}, (None, None)),
])
def test_the_object_is_derived_from_the_event_name_and_its_data(event_type, data, expected):
    assert domain.object_of(event_type, data, FIELD_ORDER.get(event_type, ())) == expected


def test_every_catalogued_event_names_an_object():
    for spec in CATALOGUE:
        data = {name: f"v-{name}" for name in spec.schema().fields}
        kind, object_id = domain.object_of(spec.name, data, FIELD_ORDER[spec.name])
        assert kind and object_id, spec.name


def test_every_event_of_the_catalogue_has_an_audit_handler():
    from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

    handled = {ep.event_type: ep.source_service for member in vars(AuditService).values()
               for ep in getattr(member, ENTRYPOINT_EXTENSIONS_ATTR, ())
               if hasattr(ep, "event_type")}
    assert handled == {spec.name: spec.producer for spec in CATALOGUE}


def test_records_chain_by_hash_and_the_chain_verifies():
    records = _chain(5)
    assert records[0]["prev_hash"] == domain.GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(records, records[1:], strict=False))
    assert [r["_id"] for r in records] == sorted(r["_id"] for r in records)
    result = domain.verify(records, {"head_seq": 5, "head_hash": records[-1]["hash"]})
    assert result == {"ok": True, "checked": 5, "first_seq": 1, "last_seq": 5,
                      "head_hash": records[-1]["hash"], "break": None}


def test_the_hash_covers_every_field_and_survives_a_store_round_trip():
    record = _chain(1)[0]
    for name in domain.HASHED:
        changed = {**record, name: "something else"}
        assert domain.chain_hash(changed) != record["hash"], name
    # what MongoDB gives back: the same times (ms), another dict order
    back = dict(reversed(list(record.items())))
    assert domain.chain_hash(back) == record["hash"]


def test_verify_names_the_first_altered_record():
    records = _chain(6)
    records[2] = {**records[2], "actor_id": "someone-else"}
    records[4] = {**records[4], "actor_id": "someone-else"}
    result = domain.verify(records)
    assert not result["ok"] and result["checked"] == 2
    assert result["break"]["seq"] == 3 and result["break"]["reason"] == "altered"
    assert result["break"]["event_id"] == records[2]["event_id"]


def test_verify_finds_a_deleted_record_a_rewritten_one_and_a_cut_off_end():
    records = _chain(6)
    gone = records[:3] + records[4:]
    assert domain.verify(gone)["break"] == {
        "seq": 4, "reason": "missing", "detail": "records 4..4 are missing",
        "record_id": records[4]["_id"], "event_id": records[4]["event_id"]}
    # rewritten and re-hashed: the next record no longer follows it
    forged = domain.seal({**records[2], "actor_id": "mallory"}, 3, records[1]["hash"])
    result = domain.verify(records[:2] + [forged] + records[3:])
    assert result["break"]["seq"] == 4 and result["break"]["reason"] == "link"
    # the newest records deleted: the head the chain remembers is further
    result = domain.verify(records[:4], {"head_seq": 6, "head_hash": records[5]["hash"]})
    assert result["break"]["reason"] == "truncated" and result["break"]["seq"] == 5
    # the oldest deleted, though retention did not sweep them
    assert domain.verify(records[2:])["break"]["reason"] == "missing"


def test_a_chain_swept_by_retention_verifies_from_its_anchor_only():
    records = _chain(6)
    anchor = {"anchor_seq": 3, "anchor_prev_hash": records[1]["hash"], "head_seq": 6,
              "head_hash": records[5]["hash"]}
    assert domain.verify(records[2:], anchor)["ok"]
    assert domain.verify(records[3:], anchor)["break"]["reason"] == "missing"
    every_one_swept = {"anchor_seq": 7, "anchor_prev_hash": records[5]["hash"], "head_seq": 6,
                       "head_hash": records[5]["hash"]}
    assert domain.verify([], every_one_swept)["ok"]
    # the next record continues the chain where the swept ones ended
    assert domain.tip(None, every_one_swept) == (6, records[5]["hash"])


def test_the_tip_is_the_furthest_of_last_record_head_and_anchor():
    records = _chain(3)
    assert domain.tip(None, None) == (0, domain.GENESIS)
    assert domain.tip(records[2], {"head_seq": 2, "head_hash": records[1]["hash"]}) == \
        (3, records[2]["hash"])  # the head update after an insert was lost
    assert domain.tip(records[1], {"head_seq": 3, "head_hash": records[2]["hash"]}) == \
        (3, records[2]["hash"])  # the newest record was deleted: leave the gap


def test_retention_cutoff():
    assert domain.retention_cutoff(NOW, 0) is None
    assert domain.retention_cutoff(NOW, 30) == (NOW - timedelta(days=30)).replace(microsecond=123000)


def test_list_filters_refuse_a_reversed_time_range_and_bad_limits():
    from marshmallow import ValidationError

    with pytest.raises(ValidationError) as refused:
        schemas.ListArgsSchema().load({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"})
    assert "to" in refused.value.messages
    for bad in ({"limit": "0"}, {"limit": "201"}, {"from": "yesterday"}, {"from": "2026-03-02T00:00:00"}):
        with pytest.raises(ValidationError):
            schemas.ListArgsSchema().load(bad)


def test_csv_rows_parse_back_and_cannot_run_as_formulas():
    record = _chain(1)[0]
    item = schemas.dump_record({**record, "actor_id": "=HYPERLINK(\"http://evil\")"})
    text = schemas.csv_text([item], header=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(schemas.CSV_COLUMNS)
    assert rows[0]["object_id"] == "t0" and rows[0]["seq"] == "1"
    assert rows[0]["actor_id"].startswith("'=")
    assert rows[0]["hash"] == record["hash"]
