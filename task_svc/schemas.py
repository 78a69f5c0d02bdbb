"""Wire shapes of the tasks service (marshmallow): what comes in over RPC,
what goes out, and the data of the events it publishes. The ``dump_*``
functions build the answers; the ``*OutSchema``/``*PageSchema`` classes
describe them for the gateway's OpenAPI document (tests/unit/test_openapi.py
checks the two agree)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from marshmallow import (
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates,
    validates_schema,
)

from shared import csvtext
from shared import examples as ex
from shared.mongo import utcnow
from shared.pagination import PageArgsSchema, page_schema
from task_svc import domain, recurrence

ID = validate.Length(min=1, max=64)
Estimate = validate.Range(min=0, max=domain.MAX_ESTIMATE_MINUTES)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None


class Due(fields.AwareDateTime):
    def __init__(self, **kw):
        super().__init__(format="iso", default_timezone=timezone.utc, **kw)


class Labels(fields.List):
    def __init__(self, **kw):
        super().__init__(fields.String(validate=validate.Regexp(r"^[\w.:-]{1,40}$")),
                         validate=validate.Length(max=20), **kw)


TITLE = "Write the release notes"
DESCRIPTION = "Summarise the changes since 2.3 for the changelog and the blog post."
LABELS = ["docs", "release"]
COMMENT = "Draft is in the shared folder; could you review the API section?"
OTHER_TASK_ID = "69a55640a1b2c3d4e5f60777"  # the other end of a link


# --- recurring tasks (the rules: task_svc/recurrence.py) -----------------------------
def _valid_rule(value: str) -> None:
    recurrence.parse_rule(value)


class RecurrenceSchema(Schema):
    rule = fields.String(required=True, validate=[validate.Length(max=recurrence.MAX_RULE_LENGTH),
                                                  _valid_rule],
                         metadata={"example": "FREQ=WEEKLY;BYDAY=MO",
                                   "description": "an RFC 5545 RRULE (FREQ DAILY, WEEKLY, MONTHLY "
                                   "or YEARLY), in the org's time zone from the due date"})


class RecurrenceOutSchema(Schema):
    rule = fields.String(metadata={"example": "FREQ=WEEKLY;BYDAY=MO"})
    timezone = fields.String(metadata={"example": "Europe/London",
                                       "description": "the org's time zone when the rule was set"})
    series_id = fields.String(metadata={"example": "65f1c0ffee0000000000000a",
                                        "description": "the first occurrence's task id"})
    index = fields.Integer(metadata={"example": 3, "description": "0 for the first occurrence"})
    previous_task_id = fields.String(allow_none=True, metadata={"example": None})
    next_task_id = fields.String(allow_none=True, metadata={
        "example": None, "description": "set once the next occurrence exists"})


class TaskFieldsSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200),
                          metadata={"example": TITLE})
    description = fields.String(load_default="", validate=validate.Length(max=10_000),
                                metadata={"example": DESCRIPTION})
    team_id = fields.String(load_default=None, allow_none=True, validate=ID,
                            metadata={"example": ex.TEAM_ID})
    priority = fields.String(load_default="medium", validate=validate.OneOf(domain.PRIORITIES),
                             metadata={"example": "high"})
    due_at = Due(load_default=None, allow_none=True, metadata={"example": ex.DUE_AT})
    labels = Labels(load_default=list, metadata={"example": LABELS})


class TaskCreateSchema(TaskFieldsSchema):
    assignee_id = fields.String(load_default=None, allow_none=True, validate=ID,
                                metadata={"example": ex.EMPLOYEE_ID})
    parent_id = fields.String(load_default=None, allow_none=True, validate=ID,
                              metadata={"example": None, "description": "makes it a subtask "
                                        "of this task (same org; TASK_SUBTASK_DEPTH levels)"})
    recurrence = fields.Nested(RecurrenceSchema, allow_none=True)  # docs/tasks.md
    estimate_minutes = fields.Integer(allow_none=True, strict=True, validate=Estimate,
                                      metadata={"example": 120})


class TaskUpdateSchema(Schema):
    title = fields.String(validate=validate.Length(min=1, max=200),
                          metadata={"example": "Write and publish the release notes"})
    description = fields.String(validate=validate.Length(max=10_000),
                                metadata={"example": DESCRIPTION})
    team_id = fields.String(allow_none=True, validate=ID, metadata={"example": ex.TEAM_ID})
    priority = fields.String(validate=validate.OneOf(domain.PRIORITIES),
                             metadata={"example": "urgent"})
    due_at = Due(allow_none=True, metadata={"example": "2026-03-12T12:00:00Z"})
    labels = Labels(metadata={"example": [*LABELS, "blog"]})
    parent_id = fields.String(allow_none=True, validate=ID, metadata={
        "example": ex.TASK_ID, "description": "move under this task; null: a top-level task"})
    recurrence = fields.Nested(RecurrenceSchema, allow_none=True,
                               metadata={"description": "null stops the series"})
    estimate_minutes = fields.Integer(allow_none=True, strict=True, validate=Estimate,
                                      metadata={"example": 180})


class BulkSchema(Schema):
    assignee_ids = fields.List(fields.String(validate=ID), required=True,
                               validate=validate.Length(min=1, max=domain.MAX_BULK),
                               metadata={"example": [ex.EMPLOYEE_ID, ex.OTHER_EMPLOYEE_ID],
                                         "description": "employee ids; one task each"})
    task = fields.Nested(TaskFieldsSchema, required=True)


class StatusSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(domain.STATUSES),
                           metadata={"example": "in_progress"})


class AssignSchema(Schema):
    assignee_id = fields.String(required=True, allow_none=True, validate=ID,
                                metadata={"example": ex.OTHER_EMPLOYEE_ID,
                                          "description": "an employee id; null unassigns"})


class CommentSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=5000),
                         metadata={"example": COMMENT})
    mentions = fields.List(fields.String(validate=ID), load_default=list,
                           validate=validate.Length(max=50),
                           metadata={"example": [ex.OTHER_EMPLOYEE_ID],
                                     "description": "employee ids to notify"})


class AttachmentSchema(Schema):
    filename = fields.String(required=True, validate=validate.Length(min=1, max=255))
    content_type = fields.String(load_default="application/octet-stream",
                                 validate=validate.Regexp(r"^[\w.+-]+/[\w.+-]+$"))
    data_b64 = fields.String(required=True)

    @validates("filename")
    def _plain_name(self, value: str, **_) -> None:
        if "/" in value or "\\" in value or "\x00" in value or value in (".", ".."):
            raise ValidationError("A file name, not a path: no '/', '\\' or '..'.")


class LinkCreateSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(domain.LINK_TYPES), metadata={
        "example": "blocks", "description": "`blocks`: this task blocks `task_id`; "
                                            "`blocked_by`: `task_id` blocks this task"})
    task_id = fields.String(required=True, validate=ID, metadata={
        "example": OTHER_TASK_ID, "description": "another task of the organization"})


class TimeLogSchema(Schema):
    minutes = fields.Integer(required=True, strict=True,
                             validate=validate.Range(min=1, max=domain.MAX_ENTRY_MINUTES),
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


class ListArgsSchema(PageArgsSchema):
    assignee_id = fields.String(validate=ID)
    team_id = fields.String(validate=ID)
    status = fields.String(validate=validate.OneOf(domain.STATUSES))
    priority = fields.String(validate=validate.OneOf(domain.PRIORITIES))
    labels: fields.Field = Labels()  # ListQuerySchema takes it as one string
    due_before = Due()
    due_after = Due()
    overdue = fields.Boolean()
    q = fields.String(validate=validate.Length(max=200))
    sort = fields.String(load_default="created", validate=validate.OneOf(tuple(domain.SORTS)))

    @pre_load
    def _split_labels(self, data, **_):
        if isinstance(data.get("labels"), str):
            data = {**data, "labels": [x for x in data["labels"].split(",") if x]}
        return data


class StatsArgsSchema(Schema):
    team_id = fields.String(validate=ID)
    assignee_id = fields.String(validate=ID)


class ListQuerySchema(ListArgsSchema):
    """``ListArgsSchema`` as it appears in a URL: ``labels`` is one comma-separated value."""
    labels = fields.String(metadata={"description": "comma-separated; tasks with all of them",
                                     "example": "docs,release"})


# --- saved views ------------------------------------------------------------------
# A view's filter is validated with the list route's own schema (ListArgsSchema) when
# it is saved, and again with the explicit parameters when it is applied: one schema
# for both.
PAGE_KEYS = ("limit", "cursor")  # how a list is paged is the request's, never the view's
VIEW_ID = "6650a1f2c3d4e5f6a7b8c9d0"
VIEW_FILTER = {"status": "todo", "labels": ["release"], "sort": "due"}


def load_filter(raw: object) -> dict:
    """A view's filter as stored: what ``ListArgsSchema`` accepts (paging aside),
    in its wire form (labels a list, dates ISO 8601). ValidationError otherwise."""
    if not isinstance(raw, dict):
        raise ValidationError("An object of list parameters.")
    paging = [k for k in (*PAGE_KEYS, "view") if k in raw]
    if paging:
        raise ValidationError({k: ["Not part of a view: a request pages itself."] for k in paging})
    loaded = ListArgsSchema().load(raw)
    return ListArgsSchema(only=[k for k in raw]).dump(loaded) if raw else {}


def check_view_team(data: dict) -> None:
    """A team view names its team, and only a team view does."""
    if data.get("visibility") == "team" and not data.get("team_id"):
        raise ValidationError({"team_id": ["A team view names its team."]})
    if data.get("visibility") != "team" and data.get("team_id"):
        raise ValidationError({"team_id": ["Only a team view names a team."]})


class ViewSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100),
                         metadata={"example": "My open release work"})
    filter = fields.Dict(load_default=dict, metadata={
        "example": VIEW_FILTER,
        "description": "any query parameter of GET /orgs/{org_id}/tasks but limit and cursor "
                       "(labels as a list or comma-separated)"})
    visibility = fields.String(load_default="private", validate=validate.OneOf(domain.VISIBILITIES),
                               metadata={"example": "team", "description": "private (you), "
                                         "team (its members) or org (every member)"})
    team_id = fields.String(load_default=None, allow_none=True, validate=ID,
                            metadata={"example": ex.TEAM_ID, "description": "with visibility team"})

    @validates("filter")
    def _filter(self, value: dict, **_) -> None:
        load_filter(value)

    @validates_schema
    def _team(self, data: dict, partial=None, **_) -> None:
        if partial:
            return  # an update: checked on the view as it would become
        check_view_team(data)

    @post_load
    def _normal(self, data: dict, **_) -> dict:
        if "filter" in data:
            data["filter"] = load_filter(data["filter"])
        return data


class ViewUpdateSchema(ViewSchema):
    """A change of a view: any of its fields (loaded with ``partial=True``)."""

    name = fields.String(validate=validate.Length(min=1, max=100),
                         metadata={"example": "Release work, due first"})


class TaskListQuerySchema(ListQuerySchema):
    """The org's task list in a URL: the filters, or a saved view and what overrides it."""
    view = fields.String(validate=ID, metadata={
        "example": VIEW_ID, "description": "a saved view's id: its filter and sort apply; a "
        "parameter given here as well replaces the view's (docs/tasks.md)"})


# --- the CSV import (POST /orgs/{org_id}/tasks/import) ------------------------------
class ImportArgsSchema(Schema):
    csv = fields.String(required=True)
    dry_run = fields.Boolean(load_default=False)


class ImportQuerySchema(Schema):
    dry_run = fields.Boolean(load_default=False, metadata={
        "description": "true: check every row and answer the errors and the count that "
                       "would be created; nothing is created", "example": True})


def check_rows(rows: list[tuple[int, dict]]) -> tuple[list[dict], list[dict]]:
    """Each row of ``domain.parse_rows`` through the create route's own schema
    (``TaskCreateSchema``): ``(valid, errors)``, valid as ``{row, task: {...fields}}``,
    errors as ``{row, error, fields: {field: [messages]}}``."""
    valid, errors = [], []
    for line, row in rows:
        if "labels" in row:
            row = {**row, "labels": [x.strip() for x in row["labels"].split(",") if x.strip()]}
        try:
            valid.append({"row": line, "task": TaskCreateSchema().load(row)})
        except ValidationError as exc:
            errors.append(domain.row_error(line, exc.normalized_messages()))
    return valid, errors


# --- answers (what the dump_* functions below return) ------------------------------
class SubtaskProgressSchema(Schema):
    total = fields.Integer(metadata={"example": 3})
    done = fields.Integer(metadata={"example": 1})


class TaskOutSchema(Schema):
    task_id = fields.String(metadata={"example": ex.TASK_ID})
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    title = fields.String(metadata={"example": TITLE})
    description = fields.String(metadata={"example": DESCRIPTION})
    assignee_id = fields.String(allow_none=True, metadata={"example": ex.EMPLOYEE_ID})
    team_id = fields.String(allow_none=True, metadata={"example": ex.TEAM_ID})
    priority = fields.String(metadata={"enum": list(domain.PRIORITIES), "example": "high"})
    status = fields.String(metadata={"enum": list(domain.STATUSES), "example": "in_progress"})
    due_at = fields.DateTime(allow_none=True, metadata={"example": ex.DUE_AT})
    labels = fields.List(fields.String(), metadata={"example": LABELS})
    creator_user_id = fields.String(allow_none=True, metadata={"example": ex.USER_ID})
    created_at = fields.DateTime(metadata={"example": ex.CREATED_AT})
    updated_at = fields.DateTime(metadata={"example": ex.UPDATED_AT})
    completed_at = fields.DateTime(allow_none=True, metadata={"example": None})
    overdue = fields.Boolean(metadata={"example": False})
    job_id = fields.String(allow_none=True, metadata={"description": "the bulk job that made it",
                                                      "example": None})
    version = fields.Integer(metadata={"description": "bumped by every change; the ETag "
                                                      "derives from it", "example": 3})
    parent_id = fields.String(allow_none=True, metadata={"example": None})
    subtasks = fields.Nested(SubtaskProgressSchema, metadata={
        "description": "progress of its live subtasks"})
    recurrence = fields.Nested(RecurrenceOutSchema, allow_none=True)
    estimate_minutes = fields.Integer(allow_none=True, metadata={"example": 120})
    time_spent_minutes = fields.Integer(metadata={"example": 90})
    time_remaining_minutes = fields.Integer(allow_none=True, metadata={"example": 30})


TaskPageSchema = page_schema("TaskPage", TaskOutSchema)


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


class BulkErrorSchema(Schema):
    assignee_id = fields.String(metadata={"example": "0cc175b9c0f14a6ba1b2c3d4e5f6a7b8"})
    error = fields.String(metadata={"example": "not an active employee"})
    # a CSV import's errors (domain.row_error) name the file's line and each field's messages
    row = fields.Integer(metadata={"description": "CSV import: the line (the header is 1)",
                                   "example": 3})
    fields_ = fields.Dict(data_key="fields", metadata={"description": "CSV import: per field",
                                                       "example": {"priority": ["Not valid."]}})


class BulkJobSchema(Schema):
    job_id = fields.String(metadata={"example": ex.JOB_ID})
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    status = fields.String(metadata={"enum": ["running", "done"], "example": "done"})
    total = fields.Integer(metadata={"example": 3})
    done = fields.Integer(metadata={"example": 2})
    failed = fields.Integer(metadata={"example": 1})
    errors = fields.List(fields.Nested(BulkErrorSchema))
    created_at = fields.DateTime(metadata={"example": ex.CREATED_AT})
    finished_at = fields.DateTime(allow_none=True, metadata={"example": "2026-03-02T09:15:02Z"})
    status_url = fields.String(metadata={"description": "where to poll this job",
                                         "example": f"/api/v1/orgs/{ex.ORG_ID}/tasks/bulk/{ex.JOB_ID}"})


class CommentOutSchema(Schema):
    comment_id = fields.String(metadata={"example": ex.COMMENT_ID})
    task_id = fields.String(metadata={"example": ex.TASK_ID})
    author_user_id = fields.String(metadata={"example": ex.USER_ID})
    body = fields.String(metadata={"example": COMMENT})
    mentions = fields.List(fields.String(), metadata={"description": "employee ids",
                                                      "example": [ex.OTHER_EMPLOYEE_ID]})
    created_at = fields.DateTime(metadata={"example": ex.UPDATED_AT})


CommentPageSchema = page_schema("CommentPage", CommentOutSchema)


class AttachmentUploadSchema(Schema):
    """The multipart/form-data body of an upload."""
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class AttachmentOutSchema(Schema):
    attachment_id = fields.String(metadata={"example": ex.ATTACHMENT_ID})
    task_id = fields.String(metadata={"example": ex.TASK_ID})
    filename = fields.String(metadata={"example": "release-notes-draft.pdf"})
    content_type = fields.String(metadata={"example": "application/pdf"})
    size = fields.Integer(metadata={"description": "bytes", "example": 48213})
    uploaded_by_user_id = fields.String(metadata={"example": ex.USER_ID})
    created_at = fields.DateTime(metadata={"example": ex.UPDATED_AT})


AttachmentPageSchema = page_schema("AttachmentPage", AttachmentOutSchema)


class HistoryEntrySchema(Schema):
    history_id = fields.String(metadata={"example": ex.HISTORY_ID})
    field = fields.String(metadata={
        "example": "status", "description": "a task field, or `created`: the first entry, whose "
        "`new` holds what the task started with (assignee_id, team_id, priority, due_at, ...)"})
    old = fields.Raw(allow_none=True, metadata={"example": "todo"})
    new = fields.Raw(allow_none=True, metadata={"example": "in_progress"})
    actor = fields.String(allow_none=True, metadata={"description": "user id; null for the system",
                                                     "example": ex.USER_ID})
    reason = fields.String(allow_none=True, metadata={"example": None})
    at = fields.DateTime(metadata={"example": ex.UPDATED_AT})


HistoryPageSchema = page_schema("HistoryPage", HistoryEntrySchema)


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


class CompletionRowSchema(Schema):
    total = fields.Integer(metadata={"example": 8})
    done = fields.Integer(metadata={"example": 4})
    completion_rate = fields.Float(metadata={"example": 0.5})


class TeamCompletionSchema(CompletionRowSchema):
    team_id = fields.String(metadata={"example": ex.TEAM_ID})


class AssigneeCompletionSchema(CompletionRowSchema):
    assignee_id = fields.String(metadata={"example": ex.EMPLOYEE_ID})


class TaskStatsSchema(Schema):
    total = fields.Integer(metadata={"example": 8})
    by_status = fields.Dict(keys=fields.String(), values=fields.Integer(),
                            metadata={"example": {"todo": 3, "in_progress": 1, "done": 4}})
    overdue = fields.Integer(metadata={"example": 1})
    completed_this_week = fields.Integer(metadata={"example": 2})
    completion_rate = fields.Float(metadata={"example": 0.5})
    per_team = fields.List(fields.Nested(TeamCompletionSchema))
    per_assignee = fields.List(fields.Nested(AssigneeCompletionSchema))
    time = fields.Nested(TimeTotalsSchema)


class LeaderboardRowSchema(Schema):
    rank = fields.Integer(metadata={"example": 1})
    employee_id = fields.String(metadata={"example": ex.EMPLOYEE_ID})
    name = fields.String(allow_none=True, metadata={"example": ex.NAME})
    completed = fields.Integer(metadata={"example": 12})


class LeaderboardSchema(Schema):
    items = fields.List(fields.Nested(LeaderboardRowSchema))
    source = fields.String(metadata={"enum": ["redis", "mongodb"], "example": "redis"})


class ViewOutSchema(Schema):
    view_id = fields.String(metadata={"example": VIEW_ID})
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    name = fields.String(metadata={"example": "My open release work"})
    filter = fields.Dict(metadata={"example": VIEW_FILTER})
    visibility = fields.String(metadata={"enum": list(domain.VISIBILITIES), "example": "team"})
    team_id = fields.String(allow_none=True, metadata={"example": ex.TEAM_ID})
    owner_user_id = fields.String(metadata={"example": ex.USER_ID})
    created_at = fields.DateTime(metadata={"example": ex.CREATED_AT})
    updated_at = fields.DateTime(metadata={"example": ex.UPDATED_AT})


ViewPageSchema = page_schema("ViewPage", ViewOutSchema)


class RowErrorSchema(Schema):
    row = fields.Integer(metadata={"description": "the line of the file (the header is 1)",
                                   "example": 3})
    error = fields.String(metadata={"example": "priority: Must be one of: low, medium, high, urgent."})
    fields_ = fields.Dict(data_key="fields", metadata={
        "example": {"priority": ["Must be one of: low, medium, high, urgent."]}})


class ImportCheckSchema(Schema):
    dry_run = fields.Boolean(metadata={"example": True})
    rows = fields.Integer(metadata={"description": "data rows in the file", "example": 3})
    would_create = fields.Integer(metadata={"example": 2})
    failed = fields.Integer(metadata={"example": 1})
    errors = fields.List(fields.Nested(RowErrorSchema), metadata={
        "description": f"the first {domain.MAX_ROW_ERRORS}"})


def dump_task(t: dict) -> dict:
    return {"task_id": t["_id"], "org_id": t["org_id"], "title": t["title"],
            "description": t.get("description", ""), "assignee_id": t.get("assignee_id"),
            "team_id": t.get("team_id"), "priority": t["priority"], "status": t["status"],
            "due_at": iso(t.get("due_at")), "labels": t.get("labels", []),
            "creator_user_id": t.get("creator_user_id"), "created_at": iso(t.get("created_at")),
            "updated_at": iso(t.get("updated_at")), "completed_at": iso(t.get("completed_at")),
            "overdue": t.get("overdue_at") is not None, "job_id": t.get("job_id"),
            "version": t.get("version") or 0, "parent_id": t.get("parent_id"),
            "subtasks": t.get("subtasks") or {"total": 0, "done": 0},
            "recurrence": dump_recurrence(t.get("recurrence")), **task_with_time(t)}


def dump_recurrence(r: dict | None) -> dict | None:
    if not r:
        return None
    return {k: r.get(k) for k in ("rule", "timezone", "series_id", "index",
                                  "previous_task_id", "next_task_id")}


def task_with_time(task: dict) -> dict:
    """The task's answer fields for estimates and time (``dump_task`` adds them)."""
    spent = int(task.get("time_spent_minutes") or 0)
    return {"estimate_minutes": task.get("estimate_minutes"), "time_spent_minutes": spent,
            "time_remaining_minutes": domain.remaining(task.get("estimate_minutes"), spent)}


def dump_search_document(t: dict) -> dict:
    """A task as the search service indexes it (its text, and what a hit shows)."""
    return {"task_id": t["_id"], "org_id": t["org_id"], "title": t["title"],
            "description": t.get("description", ""), "comments": list(t.get("comments", [])),
            "status": t["status"], "priority": t["priority"], "assignee_id": t.get("assignee_id"),
            "team_id": t.get("team_id"), "updated_at": iso(t.get("updated_at"))}


def bulk_assigned(chunk: dict, docs: list[dict]) -> dict:
    """``task.bulk.assigned``: one bulk chunk's tasks, which share every field but
    their id and assignee (one event instead of a ``task.assigned`` per task)."""
    first = docs[0]
    return {"org_id": chunk["org_id"], "job_id": chunk["job_id"], "chunk": chunk["chunk"],
            "title": first["title"], "assigned_by_user_id": chunk["creator_user_id"],
            "due_at": iso(first.get("due_at")), "priority": first["priority"],
            "team_id": first.get("team_id"),
            "tasks": [{"task_id": d["_id"], "assignee_id": d["assignee_id"],
                       "assignee_user_id": d["assignee_user_id"]} for d in docs]}


def dump_job(j: dict) -> dict:
    return {"job_id": j["_id"], "org_id": j["org_id"], "status": j["status"], "total": j["total"],
            "done": j["done"], "failed": j["failed"], "errors": j.get("errors", [])[:1000],
            "created_at": iso(j.get("created_at")), "finished_at": iso(j.get("finished_at"))}


def dump_history(h: dict) -> dict:
    def plain(v):  # a "created" entry's value is the dict of the fields it started with
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return iso(v) if isinstance(v, datetime) else v
    return {"history_id": h["_id"], "field": h["field"], "old": plain(h["old"]),
            "new": plain(h["new"]), "actor": h.get("actor"), "reason": h.get("reason"),
            "at": iso(h["at"])}


def dump_comment(c: dict) -> dict:
    return {"comment_id": c["_id"], "task_id": c["task_id"], "author_user_id": c["author_user_id"],
            "body": c["body"], "mentions": c.get("mentions", []), "created_at": iso(c["created_at"])}


def dump_attachment(a: dict) -> dict:
    return {"attachment_id": a["_id"], "task_id": a["task_id"], "filename": a["filename"],
            "content_type": a["content_type"], "size": a["size"],
            "uploaded_by_user_id": a["uploaded_by_user_id"], "created_at": iso(a["created_at"])}


def dump_brief(t: dict) -> dict:
    return {"task_id": t["_id"], "title": t["title"], "status": t["status"]}


def dump_links(task_id: str, blocks: list[dict], blocked_by: list[dict]) -> dict:
    return {"task_id": task_id, "blocks": [dump_brief(t) for t in blocks],
            "blocked_by": [dump_brief(t) for t in blocked_by]}


def dump_watcher(user_id: str) -> dict:
    return {"user_id": user_id}


def dump_watching(task_id: str, user_id: str, watchers: set[str]) -> dict:
    return {"task_id": task_id, "watching": user_id in watchers, "watchers": len(watchers)}


def dump_view(v: dict) -> dict:
    return {"view_id": v["_id"], "org_id": v["org_id"], "name": v["name"], "filter": v["filter"],
            "visibility": v["visibility"], "team_id": v.get("team_id"),
            "owner_user_id": v["owner_user_id"], "created_at": iso(v["created_at"]),
            "updated_at": iso(v["updated_at"])}


# --- the CSV export (GET /orgs/{org_id}/tasks.csv): the gateway streams list_tasks pages
# (export_tasks_page) through csv_text ----------------------------------------------------
CSV_COLUMNS = ("task_id", "title", "description", "status", "priority", "assignee_id", "team_id",
               "due_at", "labels", "overdue", "creator_user_id", "created_at", "updated_at",
               "completed_at", "job_id")
MAX_EXPORT_ROWS = 100_000  # one CSV export; narrow the filters for more


def _csv_value(item: dict, column: str) -> object:
    value = item.get(column)
    if column == "labels":
        return ",".join(value or [])
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def csv_text(items: list[dict], header: bool = False) -> str:
    """Tasks (answers of ``dump_task``) as CSV text (``shared.csvtext``: cells a
    spreadsheet would run as formulas are quoted), with the header line if asked."""
    return csvtext.csv_text(([_csv_value(item, c) for c in CSV_COLUMNS] for item in items),
                            header=CSV_COLUMNS if header else None)


def dump_entry(e: dict) -> dict:
    return {"entry_id": e["_id"], "task_id": e["task_id"], "employee_id": e.get("employee_id"),
            "user_id": e["user_id"], "minutes": e["minutes"], "started_at": iso(e["started_at"]),
            "note": e.get("note", ""), "source": e["source"], "created_at": iso(e["created_at"])}


def dump_timer(t: dict) -> dict:
    return {"task_id": t["task_id"], "user_id": t["user_id"], "employee_id": t.get("employee_id"),
            "started_at": iso(t["started_at"])}
