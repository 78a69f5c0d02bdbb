"""Wire shapes of subtasks, dependencies and watchers (the part of
:mod:`task_svc.schemas` these routes add, kept in its own module): what comes in,
what goes out; the ``dump_*`` functions build the answers."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from shared import examples as ex
from shared.pagination import page_schema
from task_svc import domain, links
from task_svc.schemas import ID

OTHER_TASK_ID = "69a55640a1b2c3d4e5f60777"


class LinkCreateSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(links.LINK_TYPES), metadata={
        "example": "blocks", "description": "`blocks`: this task blocks `task_id`; "
                                            "`blocked_by`: `task_id` blocks this task"})
    task_id = fields.String(required=True, validate=ID, metadata={
        "example": OTHER_TASK_ID, "description": "another task of the organization"})


class TaskBriefSchema(Schema):
    task_id = fields.String(metadata={"example": OTHER_TASK_ID})
    title = fields.String(metadata={"example": "Freeze the API"})
    status = fields.String(metadata={"enum": list(domain.STATUSES), "example": "in_progress"})


class TaskLinksSchema(Schema):
    task_id = fields.String(metadata={"example": ex.TASK_ID})
    blocks = fields.List(fields.Nested(TaskBriefSchema), metadata={
        "description": "tasks this one blocks"})
    blocked_by = fields.List(fields.Nested(TaskBriefSchema), metadata={
        "description": "tasks blocking this one; it cannot be done while one is open"})


class WatcherSchema(Schema):
    user_id = fields.String(metadata={"example": ex.USER_ID})


WatcherPageSchema = page_schema("WatcherPage", WatcherSchema)


class WatchingSchema(Schema):
    task_id = fields.String(metadata={"example": ex.TASK_ID})
    watching = fields.Boolean(metadata={"example": True})
    watchers = fields.Integer(metadata={"description": "how many watch it", "example": 3})


def dump_brief(t: dict) -> dict:
    return {"task_id": t["_id"], "title": t["title"], "status": t["status"]}


def dump_links(task_id: str, blocks: list[dict], blocked_by: list[dict]) -> dict:
    return {"task_id": task_id, "blocks": [dump_brief(t) for t in blocks],
            "blocked_by": [dump_brief(t) for t in blocked_by]}


def dump_watcher(user_id: str) -> dict:
    return {"user_id": user_id}


def dump_watching(task_id: str, user_id: str, watchers: set[str]) -> dict:
    return {"task_id": task_id, "watching": user_id in watchers, "watchers": len(watchers)}
