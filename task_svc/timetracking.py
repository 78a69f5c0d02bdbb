"""Estimates and time tracking: minutes logged against a task, by hand or with a
start/stop timer, and their totals per task, assignee and team (the stats).

Documents: ``time_entries`` (one per logged stretch: who, which task and team, how
many minutes) and ``timers`` (one running timer per person and task; its ``_id`` is
``{task_id}:{user_id}``, so a second start is a 409 on every replica). A task keeps the
sum of its entries in ``time_spent_minutes`` (added when an entry is first written).
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta

from bson import ObjectId
from marshmallow import Schema, ValidationError, fields, validate, validates
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from shared import examples as ex
from shared.errors import Conflict
from shared.mongo import utcnow
from shared.pagination import page_schema
from shared.service import Flows
from task_svc import domain

A = ASCENDING
MAX_ENTRY_MINUTES = 24 * 60  # one entry (or one timer run) counts at most a day
MAX_ESTIMATE_MINUTES = 100_000

INDEXES = {
    "time_entries": [IndexModel([("task_id", A), ("_id", A)], name="task_time"),
                     IndexModel([("org_id", A), ("employee_id", A)], name="org_time")],
    "timers": [],
}


# --- rules --------------------------------------------------------------------------
def timer_id(task_id: str, user_id: str) -> str:
    return f"{task_id}:{user_id}"


def timer_minutes(started_at: datetime, stopped_at: datetime) -> int:
    """Whole minutes a timer ran, rounded up (a started timer counts at least one),
    at most MAX_ENTRY_MINUTES."""
    seconds = max((stopped_at - started_at).total_seconds(), 0)
    return min(max(math.ceil(seconds / 60), 1), MAX_ENTRY_MINUTES)


def remaining(estimate: int | None, spent: int) -> int | None:
    return None if estimate is None else max(estimate - spent, 0)


def fold_totals(groups: list[dict], estimate: int) -> dict:
    """Minutes per task, per assignee (who logged them) and per team, from
    ``{task, employee, team, minutes}`` groups; the largest first, 100 of each."""
    tables: dict[str, dict] = {"task_id": {}, "assignee_id": {}, "team_id": {}}
    for g in groups:
        for name, key in (("task_id", g.get("task")), ("assignee_id", g.get("employee")),
                          ("team_id", g.get("team"))):
            if key is not None:
                tables[name][key] = tables[name].get(key, 0) + g["minutes"]

    def rows(name: str) -> list[dict]:
        return [{name: k, "minutes": v} for k, v in
                sorted(tables[name].items(), key=lambda kv: (-kv[1], kv[0]))[:100]]

    return {"spent_minutes": sum(g["minutes"] for g in groups), "estimate_minutes": estimate,
            "per_task": rows("task_id"), "per_assignee": rows("assignee_id"),
            "per_team": rows("team_id")}


# --- wire shapes ---------------------------------------------------------------------
Estimate = validate.Range(min=0, max=MAX_ESTIMATE_MINUTES)


class TimeLogSchema(Schema):
    minutes = fields.Integer(required=True, strict=True,
                             validate=validate.Range(min=1, max=MAX_ENTRY_MINUTES),
                             metadata={"example": 90})
    started_at = fields.AwareDateTime(load_default=None, allow_none=True, format="iso", metadata={
        "example": "2026-03-02T09:00:00Z", "description": "when the work began; default: "
        "`minutes` before now"})
    note = fields.String(load_default="", validate=validate.Length(max=500),
                         metadata={"example": "Reviewed the API section"})

    @validates("started_at")
    def _not_ahead(self, value: datetime | None, **_) -> None:
        if value is not None and value > utcnow() + timedelta(minutes=5):
            raise ValidationError("Not in the future.")


class TimeEntryOutSchema(Schema):
    entry_id = fields.String(metadata={"example": "65f1c0ffee0000000000000e"})
    task_id = fields.String(metadata={"example": ex.TASK_ID})
    employee_id = fields.String(allow_none=True, metadata={"example": ex.EMPLOYEE_ID})
    user_id = fields.String(metadata={"example": ex.USER_ID})
    minutes = fields.Integer(metadata={"example": 90})
    started_at = fields.DateTime(metadata={"example": "2026-03-02T09:00:00Z"})
    note = fields.String(metadata={"example": "Reviewed the API section"})
    source = fields.String(metadata={"enum": ["logged", "timer"], "example": "logged"})
    created_at = fields.DateTime(metadata={"example": ex.UPDATED_AT})


TimeEntryPageSchema = page_schema("TimeEntryPage", TimeEntryOutSchema)


class TimerOutSchema(Schema):
    task_id = fields.String(metadata={"example": ex.TASK_ID})
    user_id = fields.String(metadata={"example": ex.USER_ID})
    employee_id = fields.String(allow_none=True, metadata={"example": ex.EMPLOYEE_ID})
    started_at = fields.DateTime(metadata={"example": "2026-03-02T09:00:00Z"})


class _Minutes(Schema):
    minutes = fields.Integer(metadata={"example": 240})


class TaskMinutesSchema(_Minutes):
    task_id = fields.String(metadata={"example": ex.TASK_ID})


class AssigneeMinutesSchema(_Minutes):
    assignee_id = fields.String(metadata={"example": ex.EMPLOYEE_ID,
                                          "description": "the employee who logged the time"})


class TeamMinutesSchema(_Minutes):
    team_id = fields.String(metadata={"example": ex.TEAM_ID})


class TimeTotalsSchema(Schema):
    spent_minutes = fields.Integer(metadata={"example": 480})
    estimate_minutes = fields.Integer(metadata={"example": 600,
                                                "description": "sum of the tasks' estimates"})
    per_task = fields.List(fields.Nested(TaskMinutesSchema))
    per_assignee = fields.List(fields.Nested(AssigneeMinutesSchema))
    per_team = fields.List(fields.Nested(TeamMinutesSchema))


def iso(value: datetime | None) -> str | None:
    from task_svc.schemas import iso as task_iso  # one ISO format for every task answer
    return task_iso(value)


def dump_entry(e: dict) -> dict:
    return {"entry_id": e["_id"], "task_id": e["task_id"], "employee_id": e.get("employee_id"),
            "user_id": e["user_id"], "minutes": e["minutes"], "started_at": iso(e["started_at"]),
            "note": e.get("note", ""), "source": e["source"], "created_at": iso(e["created_at"])}


def dump_timer(t: dict) -> dict:
    return {"task_id": t["task_id"], "user_id": t["user_id"], "employee_id": t.get("employee_id"),
            "started_at": iso(t["started_at"])}


# --- queries (mixed into TaskStore) ------------------------------------------------------
class TimeStore:
    db: object

    def add_entry(self, entry: dict) -> bool:
        """Write the entry and add its minutes to the task's total: False (and nothing
        added) when an entry with its id exists already."""
        try:
            self.db.time_entries.insert_one(entry)
        except DuplicateKeyError:
            return False
        self.db.tasks.update_one({"_id": entry["task_id"], "org_id": entry["org_id"]},
                                 {"$inc": {"time_spent_minutes": entry["minutes"], "version": 1},
                                  "$set": {"updated_at": utcnow()}})
        return True

    def entries(self, task_id: str, limit: int, after: str | None) -> list[dict]:
        query: dict = {"task_id": task_id}
        if after:
            query["_id"] = {"$gt": after}
        return list(self.db.time_entries.find(query).sort("_id", A).limit(limit))

    def start_timer(self, timer: dict) -> dict:
        try:
            self.db.timers.insert_one(timer)
        except DuplicateKeyError:
            raise Conflict("Your timer on this task is running already; stop it first.") from None
        return timer

    def stop_timer(self, task_id: str, user_id: str) -> dict | None:
        """Removes the running timer once: a second stop (any replica) gets None."""
        return self.db.timers.find_one_and_delete({"_id": timer_id(task_id, user_id)})

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
        estimate = list(self.db.tasks.aggregate([
            {"$match": {**task_match, "estimate_minutes": {"$gt": 0}}},
            {"$group": {"_id": None, "n": {"$sum": "$estimate_minutes"}}}]))
        return {"groups": groups, "estimate": estimate[0]["n"] if estimate else 0}


def task_with_time(task: dict) -> dict:
    """The task's answer fields for estimates and time (``dump_task`` adds them)."""
    spent = int(task.get("time_spent_minutes") or 0)
    return {"estimate_minutes": task.get("estimate_minutes"), "time_spent_minutes": spent,
            "time_remaining_minutes": remaining(task.get("estimate_minutes"), spent)}


def new_id() -> str:
    return str(ObjectId())


def entry_document(entry_id: str, task: dict, membership: dict, minutes: int, started_at: datetime,
                   note: str, source: str) -> dict:
    return {"_id": entry_id, "org_id": task["org_id"], "task_id": task["_id"],
            "team_id": task.get("team_id"), "employee_id": membership.get("employee_id"),
            "user_id": membership["user_id"], "minutes": minutes, "started_at": started_at,
            "note": note, "source": source, "created_at": utcnow()}


def started(task: dict, membership: dict) -> dict:
    return {"_id": timer_id(task["_id"], membership["user_id"]), "org_id": task["org_id"],
            "task_id": task["_id"], "user_id": membership["user_id"],
            "employee_id": membership.get("employee_id"), "started_at": utcnow()}



# --- I/O ------------------------------------------------------------------------------
class TimeFlows(Flows):
    """Logging, timers and totals on one worker's dependencies; a change publishes
    ``task.time.logged`` through the task flows (which also bumps the org's version,
    so cached task lists show the new total)."""

    uses = ("teams",)

    def __init__(self, svc, task_flows) -> None:
        super().__init__(svc)
        self.task_flows = task_flows

    def workable(self, membership: dict, org_id: str, task_id: str) -> dict:
        """The task, if the caller may log time on it (who may change it)."""
        task = self.task_flows.task(org_id, task_id)
        domain.require_update(membership, task, self.task_flows.team(org_id, task.get("team_id")))
        return task

    def log(self, task: dict, membership: dict, data: dict) -> dict:
        started_at = data["started_at"] or utcnow() - timedelta(minutes=data["minutes"])
        entry = entry_document(new_id(), task, membership, data["minutes"], started_at,
                               data["note"], "logged")
        self._record(task, entry)
        return dump_entry(entry)

    def start(self, task: dict, membership: dict) -> dict:
        return dump_timer(self.store.start_timer(started(task, membership)))

    def stop(self, task: dict, membership: dict) -> dict:
        timer = self.store.stop_timer(task["_id"], membership["user_id"])
        if timer is None:  # 403 for who may not work on it, else 409
            self.workable(membership, task["org_id"], task["_id"])
            raise Conflict("No timer of yours is running on this task.")
        # the timer is gone for everyone else: this stop alone writes its entry
        entry = entry_document(new_id(), task, membership,
                               timer_minutes(timer["started_at"], utcnow()), timer["started_at"],
                               "", "timer")
        self._record(task, entry)
        return dump_entry(entry)

    def _record(self, task: dict, entry: dict) -> None:
        if self.store.add_entry(entry):
            self.task_flows.invalidate(task["org_id"], task.get("assignee_user_id"))
            self.task_flows.publish(task, "task.time.logged", {
                "entry_id": entry["_id"], "employee_id": entry["employee_id"],
                "user_id": entry["user_id"], "team_id": entry["team_id"],
                "minutes": entry["minutes"], "source": entry["source"]}, entry["user_id"],
                event_id=f"task.time.logged:{entry['_id']}")

    def totals(self, org_id: str, team_id: str | None, assignee_id: str | None) -> dict:
        raw = self.store.time_totals(org_id, team_id, assignee_id)
        return fold_totals(raw["groups"], raw["estimate"])
