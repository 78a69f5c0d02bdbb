"""Wire shapes of the analytics service: the query strings it takes (validated
here) and the answers it gives (the gateway's OpenAPI document names these)."""
from __future__ import annotations

from datetime import timedelta

from marshmallow import Schema, fields, validate, validates_schema
from marshmallow import ValidationError as MarshmallowError

from analytics_svc import domain
from shared import examples as ex

PERIOD = fields.String(load_default="week", validate=validate.OneOf(domain.PERIODS),
                       metadata={"example": "week", "description": "day, week or month, "
                                 "in the org's time zone (weeks start on its week_start)"})


class RangeArgsSchema(Schema):
    """``period``, ``from`` and ``to`` (local dates of the org, both included,
    widened to whole periods; ``to`` defaults to today, ``from`` to 30 days,
    12 weeks or 12 months before it)."""

    period = PERIOD
    from_ = fields.Date(load_default=None, data_key="from",
                        metadata={"example": "2026-09-07", "description": "first local day"})
    to = fields.Date(load_default=None, metadata={"example": "2026-11-29",
                                                  "description": "last local day"})

    @validates_schema
    def _order(self, data, **kwargs):
        if data.get("from_") and data.get("to") and data["from_"] > data["to"]:
            raise MarshmallowError("from is after to.", field_name="from")


class ThroughputArgsSchema(RangeArgsSchema):
    by = fields.String(load_default="team", validate=validate.OneOf(("team", "assignee")),
                       metadata={"example": "assignee", "description": "team or assignee"})


# --- answers ---------------------------------------------------------------------------
class _RangeOut(Schema):
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    timezone = fields.String(metadata={"example": "Europe/London"})
    period = fields.String(metadata={"example": "week"})
    from_ = fields.String(data_key="from", metadata={"example": "2026-11-16",
                                                     "description": "the first local day"})
    to = fields.String(metadata={"example": "2026-11-29", "description": "the last local day"})


class SummaryPeriodSchema(Schema):
    start = fields.String(metadata={"example": "2026-11-23", "description": "first local day"})
    end = fields.String(metadata={"example": "2026-11-30",
                                  "description": "the next period's first day (excluded)"})
    created = fields.Integer(metadata={"example": 12})
    completed = fields.Integer(metadata={"example": 9})
    overdue = fields.Integer(metadata={"example": 2, "description": "due in the period, the due "
                                       "time passed, not done by then"})


class SummaryTotalsSchema(Schema):
    created = fields.Integer(metadata={"example": 20})
    completed = fields.Integer(metadata={"example": 15})
    overdue = fields.Integer(metadata={"example": 3})


class SummarySchema(_RangeOut):
    periods = fields.List(fields.Nested(SummaryPeriodSchema))
    totals = fields.Nested(SummaryTotalsSchema)


class DistributionSchema(Schema):
    count = fields.Integer(metadata={"example": 9})
    mean = fields.Float(allow_none=True, metadata={"example": 151200.0})
    p50 = fields.Float(allow_none=True, metadata={"example": 86400.0})
    p75 = fields.Float(allow_none=True, metadata={"example": 172800.0})
    p90 = fields.Float(allow_none=True, metadata={"example": 345600.0})
    p95 = fields.Float(allow_none=True, metadata={"example": 432000.0})


class TimesPeriodSchema(Schema):
    start = fields.String(metadata={"example": "2026-11-23"})
    end = fields.String(metadata={"example": "2026-11-30"})
    lead_time = fields.Nested(DistributionSchema)
    cycle_time = fields.Nested(DistributionSchema)


class TimesSchema(_RangeOut):
    lead_time = fields.Nested(DistributionSchema, metadata={
        "description": "created -> done, seconds, of the tasks completed in the range"})
    cycle_time = fields.Nested(DistributionSchema, metadata={
        "description": "first in_progress -> done, seconds"})
    periods = fields.List(fields.Nested(TimesPeriodSchema))


class ThroughputRowSchema(Schema):
    id = fields.String(allow_none=True, metadata={
        "example": ex.EMPLOYEE_ID, "description": "team or employee id; null: no team, unassigned"})
    completed = fields.Integer(metadata={"example": 7})
    per_period = fields.List(fields.Integer(), metadata={"example": [3, 4],
                                                         "description": "one count per period"})


class ThroughputSchema(_RangeOut):
    by = fields.String(metadata={"example": "assignee"})
    periods = fields.List(fields.String(), metadata={"example": ["2026-11-16", "2026-11-23"],
                                                     "description": "each period's first day"})
    items = fields.List(fields.Nested(ThroughputRowSchema))


class LoadSchema(Schema):
    open = fields.Integer(metadata={"example": 5})
    todo = fields.Integer(metadata={"example": 3})
    in_progress = fields.Integer(metadata={"example": 2})
    overdue = fields.Integer(metadata={"example": 1})


class WorkloadRowSchema(LoadSchema):
    employee_id = fields.String(metadata={"example": ex.EMPLOYEE_ID})


class WorkloadSchema(Schema):
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    as_of = fields.String(metadata={"example": ex.UPDATED_AT})
    items = fields.List(fields.Nested(WorkloadRowSchema))
    unassigned = fields.Nested(LoadSchema)


# --- documents and figures become answers here only ----------------------------------------
def iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _range(org_id: str, tz_name: str, r: domain.Range) -> dict:
    return {"org_id": org_id, "timezone": tz_name, "period": r.period,
            "from": r.first.isoformat(), "to": (r.end - timedelta(days=1)).isoformat()}


def dump_summary(org_id: str, tz_name: str, r: domain.Range, rows: list[dict]) -> dict:
    totals = {name: sum(row[name] for row in rows) for name in ("created", "completed", "overdue")}
    return {**_range(org_id, tz_name, r), "periods": rows, "totals": totals}


def dump_times(org_id: str, tz_name: str, r: domain.Range, overall: dict, rows: list[dict]) -> dict:
    return {**_range(org_id, tz_name, r), **overall, "periods": rows}


def dump_throughput(org_id: str, tz_name: str, r: domain.Range, by: str, rows: list[dict]) -> dict:
    return {**_range(org_id, tz_name, r), "by": by,
            "periods": [s.isoformat() for s in r.starts], "items": rows}


def dump_workload(org_id: str, at, rows: list[dict], nobody: dict) -> dict:
    return {"org_id": org_id, "as_of": iso(at), "items": rows, "unassigned": nobody}
