"""Wire shapes of the search service: the query arguments (validated here) and
the answers (the gateway's OpenAPI document names these too)."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from search_svc.domain import TYPES
from shared import examples as ex
from shared.pagination import CURSOR_MAX, MAX_LIMIT, encode_cursor

TYPES_TEXT = f"comma-separated, of {', '.join(TYPES)} (default: every kind you may read)"


class SearchArgsSchema(Schema):
    q = fields.String(load_default="", validate=validate.Length(max=200),
                      metadata={"example": "biling pipe",
                                "description": "words; a typo is forgiven from 4 letters, the "
                                               "last word matches as a prefix (none: no hits)"})
    types = fields.String(load_default=None, validate=validate.Length(max=100),
                          metadata={"example": "task,team", "description": TYPES_TEXT})
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=min(MAX_LIMIT, 100)))
    cursor = fields.String(load_default=None, validate=validate.Length(max=CURSOR_MAX))


class SuggestArgsSchema(Schema):
    q = fields.String(load_default="", validate=validate.Length(max=100),
                      metadata={"example": "bil", "description": "what has been typed so far"})
    types = fields.String(load_default=None, validate=validate.Length(max=100),
                          metadata={"example": "task", "description": TYPES_TEXT})
    limit = fields.Integer(load_default=8, validate=validate.Range(min=1, max=20))


class HitSchema(Schema):
    type = fields.String(metadata={"example": "task", "description": ", ".join(TYPES)})
    id = fields.String(metadata={"example": ex.TASK_ID,
                                 "description": "task_id, employee_id or team_id"})
    title = fields.String(metadata={"example": "Refactor the billing pipeline",
                                    "description": "task title, employee name or team name"})
    score = fields.Float(metadata={"example": 7.31})
    meta = fields.Dict(metadata={"example": {"status": "todo", "priority": "high"},
                                 "description": "tasks: status, priority, assignee_id, team_id; "
                                                "employees: email, job_title, role, status; "
                                                "teams: member_count"})


class SearchPageSchema(Schema):
    items = fields.List(fields.Nested(HitSchema))
    total = fields.Integer(metadata={"example": 1, "description": "hits in all"})
    next_cursor = fields.String(allow_none=True, metadata={"example": None})


class SuggestionSchema(Schema):
    type = fields.String(metadata={"example": "task"})
    id = fields.String(metadata={"example": ex.TASK_ID})
    title = fields.String(metadata={"example": "Refactor the billing pipeline"})


class SuggestionsSchema(Schema):
    items = fields.List(fields.Nested(SuggestionSchema))


class RebuildSchema(Schema):
    org_id = fields.String(allow_none=True, metadata={"example": ex.ORG_ID})
    indexed = fields.Dict(metadata={"example": {"task": 120, "employee": 8, "team": 2}})


def dump_hit(hit) -> dict:
    return {"type": hit.type, "id": hit.id, "title": hit.title, "score": hit.score,
            "meta": dict(hit.meta)}


def dump_page(hits: list, total: int, offset: int) -> dict:
    following = offset + len(hits)
    return {"items": [dump_hit(h) for h in hits], "total": total,
            "next_cursor": encode_cursor(str(following)) if following < total and hits else None}


def dump_suggestions(hits: list) -> dict:
    return {"items": [{"type": h.type, "id": h.id, "title": h.title} for h in hits]}

