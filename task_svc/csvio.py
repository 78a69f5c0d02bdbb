"""Tasks as CSV: the export's columns, and the import (a CSV file of tasks
created through a bulk job, with per-row errors, or checked only: a dry run).

One module, in the service's layers (docs/developing.md), kept apart from the
task files other work changes: the rules (parsing and checking rows), the wire
shapes, and the entrypoints ``TaskService`` takes in as a mixin. The export is
the gateway's: it streams ``list_tasks`` pages through ``export_text``.

A row of the import has the columns of ``IMPORT_COLUMNS`` (``title`` required,
the others optional, in any order; other columns, such as an export's
``task_id`` or ``status``, are ignored), so an export imports again."""
from __future__ import annotations

import csv
import io

from marshmallow import Schema, ValidationError, fields

from shared import csvtext
from shared.errors import PayloadTooLarge, ValidationFailed
from shared.events import handles
from shared.mongo import utcnow
from shared.rpc import rpc
from shared.tenancy import require_member
from task_svc import domain, schemas
from task_svc.store import new_id

EXPORT_COLUMNS = ("task_id", "title", "description", "status", "priority", "assignee_id", "team_id",
                  "due_at", "labels", "overdue", "creator_user_id", "created_at", "updated_at",
                  "completed_at", "job_id")
IMPORT_COLUMNS = ("title", "description", "priority", "due_at", "labels", "team_id", "assignee_id")
MAX_EXPORT_ROWS = 100_000  # one CSV export; narrow the filters for more
IMPORT_MAX_BYTES = 1024 * 1024
MAX_ROW_ERRORS = 1000  # per-row errors a job or a dry run lists (it counts them all)


# --- the export ----------------------------------------------------------------------
def _cell(item: dict, column: str) -> object:
    value = item.get(column)
    if column == "labels":
        return ",".join(value or [])
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def export_text(items: list[dict], header: bool = False) -> str:
    """Tasks (answers of ``dump_task``) as CSV text, with the header line if asked."""
    return csvtext.csv_text(([_cell(item, c) for c in EXPORT_COLUMNS] for item in items),
                            header=EXPORT_COLUMNS if header else None)


# --- the import: rules ------------------------------------------------------------------
def _unquote(text: str) -> str:
    """A cell as an export wrote it: the ``'`` before a formula character goes again."""
    text = text.strip()
    return text[1:] if text[:1] == "'" and text[1:2] in csvtext.FORMULA_STARTS else text


def parse_rows(text: str, max_rows: int = domain.MAX_BULK) -> list[tuple[int, dict]]:
    """``(line number, {column: cell})`` per data row (the header is line 1); empty
    cells are left out (the field's default applies), blank lines skipped.
    ValidationFailed (422, ``errors.file``) for a file that is not such a CSV."""
    def refuse(message: str) -> ValidationFailed:
        return ValidationFailed(message, errors={"file": [message]})
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        if "title" not in header:
            raise refuse("The first line names the columns, title among them.")
        if len(set(header)) != len(header):
            raise refuse("A column is named twice.")
        rows = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(rows) >= max_rows:
                raise refuse(f"At most {max_rows} rows per file.")
            row = {name: _unquote(cell) for name, cell in zip(header, cells, strict=False)
                   if name in IMPORT_COLUMNS and cell.strip()}
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise refuse(f"Not a CSV file: {exc}") from None
    return rows


def check_rows(rows: list[tuple[int, dict]]) -> tuple[list[dict], list[dict]]:
    """Each row through the create route's own schema (``TaskCreateSchema``):
    ``(valid, errors)``, valid as ``{row, task: {...fields}}``, errors as
    ``{row, error, fields: {field: [messages]}}``."""
    valid, errors = [], []
    for line, row in rows:
        if "labels" in row:
            row = {**row, "labels": [x.strip() for x in row["labels"].split(",") if x.strip()]}
        try:
            valid.append({"row": line, "task": schemas.TaskCreateSchema().load(row)})
        except ValidationError as exc:
            errors.append(row_error(line, exc.normalized_messages()))
    return valid, errors


def row_error(line: int, messages: dict) -> dict:
    return {"row": line, "error": "; ".join(f"{k}: {' '.join(map(str, v))}" if isinstance(v, list)
                                            else f"{k}: {v}" for k, v in messages.items()),
            "fields": messages}


def refer(valid: list[dict], teams: dict[str, dict | None],
          employees: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    """The rows whose team is the org's and whose assignee an active employee of it."""
    kept, errors = [], []
    for item in valid:
        task, problems = item["task"], {}
        if task.get("team_id") and teams.get(task["team_id"]) is None:
            problems["team_id"] = ["No such team in this organization."]
        person = employees.get(task.get("assignee_id") or "")
        if task.get("assignee_id") and (person is None or person.get("status") != "active"):
            problems["assignee_id"] = ["Not an active employee of this organization."]
        if problems:
            errors.append(row_error(item["row"], problems))
        else:
            kept.append(item)
    return kept, errors


def import_task_id(job_id: str, row: int) -> str:
    """Deterministic, so a redelivered chunk creates nothing twice."""
    return f"{job_id}-r{row}"


# --- wire shapes ----------------------------------------------------------------------
class ImportArgsSchema(Schema):
    csv = fields.String(required=True)
    dry_run = fields.Boolean(load_default=False)


class ImportQuerySchema(Schema):
    dry_run = fields.Boolean(load_default=False, metadata={
        "description": "true: check every row and answer the errors and the count that "
                       "would be created; nothing is created", "example": True})


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
        "description": f"the first {MAX_ROW_ERRORS}"})


# --- entrypoints (TaskService takes these in) -----------------------------------------
class CsvEntrypoints:
    @rpc
    def export_tasks_page(self, user_id: str, org_id: str, args: dict) -> dict:
        """One page of the CSV export: ``list_tasks`` (the same filters, sort and ``view``)
        read past the list cache, so an export of 100,000 tasks does not fill Redis."""
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        f = schemas.ListArgsSchema().load(self.view_args(user_id, org_id, me, args))
        return self.flows.list_page({"org_id": org_id}, f)

    @rpc
    def import_tasks(self, user_id: str, org_id: str, body: dict) -> dict:
        """Check a CSV file's rows; unless ``dry_run``, create the valid ones through a
        bulk job (``task.import.created`` chunks), the invalid ones its errors."""
        me = require_member(self.redis, self.employees, org_id, user_id, "task.bulk_create")
        args = ImportArgsSchema().load(body)
        limit = int(self.config.get("TASK_IMPORT_MAX_BYTES", IMPORT_MAX_BYTES))
        if len(args["csv"].encode()) > limit:
            raise PayloadTooLarge(f"An import is limited to {limit} bytes.")
        rows = parse_rows(args["csv"])
        valid, errors = check_rows(rows)
        teams = {t: self.flows.team(org_id, t) for t in {v["task"]["team_id"] for v in valid} - {None}}
        people = {e["employee_id"]: e for e in self.flows.employees_in(
            org_id, sorted({v["task"]["assignee_id"] for v in valid} - {None}))}
        valid, refused = refer(valid, teams, people)
        errors = sorted(errors + refused, key=lambda e: e["row"])
        if args["dry_run"]:
            return {"dry_run": True, "rows": len(rows), "would_create": len(valid),
                    "failed": len(errors), "errors": errors[:MAX_ROW_ERRORS]}
        return self._start_import(me, user_id, org_id, rows, valid, errors)

    def _start_import(self, me: dict, user_id: str, org_id: str, rows: list, valid: list[dict],
                      errors: list[dict]) -> dict:
        parts = domain.chunks(valid, int(self.config.get("TASK_BULK_CHUNK", 500)))
        at = utcnow()
        job = {"_id": new_id(), "org_id": org_id, "kind": "import",
               "status": "running" if parts else "done", "total": len(rows), "done": 0,
               "failed": len(errors), "errors": errors[:MAX_ROW_ERRORS], "chunks_total": len(parts),
               "chunks_done": [], "created_by_user_id": user_id, "created_at": at,
               "finished_at": None if parts else at}
        self.store.create_job(job)
        for n, part in enumerate(parts):
            self.events.publish("task.import.created", {
                "org_id": org_id, "job_id": job["_id"], "chunk": n,
                "rows": [{"row": p["row"], "task": schemas.TaskCreateSchema().dump(p["task"])}
                         for p in part],
                "creator_id": me.get("employee_id"), "creator_user_id": user_id},
                org_id=org_id, actor_id=user_id)
        return {**schemas.dump_job(job), "status_url": self.flows.job_url(org_id, job["_id"])}

    @handles("tasks", "task.import.created")
    def on_import_chunk(self, event: dict) -> None:
        d = event["data"]
        items = [{"row": r["row"], "task": schemas.TaskCreateSchema().load(r["task"])} for r in d["rows"]]
        people = {e["employee_id"]: e for e in self.flows.employees_in(
            d["org_id"], sorted({i["task"]["assignee_id"] for i in items} - {None}))}
        # the teams were checked when the file came; an assignee who left the org since is
        # this row's error now
        items, errors = refer(items, {i["task"]["team_id"]: {} for i in items}, people)
        creator = {"employee_id": d.get("creator_id"), "user_id": d["creator_user_id"]}
        docs = [self.store.task_document(d["org_id"], i["task"], creator,
                                         people.get(i["task"].get("assignee_id") or ""),
                                         job_id=d["job_id"], task_id=import_task_id(d["job_id"], i["row"]))
                for i in items]
        self.store.insert_many_idempotent(docs)
        self.store.add_created_history(docs, d["creator_user_id"])
        for doc in docs:  # every one, new or not: derived event ids make a re-run safe
            self.flows.publish_created(doc, d["creator_user_id"], derived_ids=True)
        self.store.record_chunk(d["job_id"], d["chunk"], len(docs), errors)
