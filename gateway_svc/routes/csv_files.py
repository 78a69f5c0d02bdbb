"""Gateway routes for CSV files (docs/tasks.md): tasks (the list's filters, or
a saved view) and employees exported as streamed CSV (``gateway_svc.csvstream``,
as the audit export), and tasks imported from CSV through a bulk job, or only
checked (``?dry_run=true``). The services authorize and validate."""
from __future__ import annotations

import base64

from employee_svc import schemas as employee_schemas
from employee_svc.schemas import EmployeeQuerySchema
from gateway_svc.csvstream import export_args, stream_csv
from gateway_svc.http import api
from gateway_svc.routes.tasks import uploaded_file
from shared.errors import BadRequest
from task_svc import schemas as task_schemas
from task_svc.schemas import (
    AttachmentUploadSchema,
    BulkJobSchema,
    ImportCheckSchema,
    ImportQuerySchema,
    TaskListQuerySchema,
)

ORG = "/orgs/<org_id>"


def csv_upload(request) -> str:
    """The ``file`` part of a multipart upload (as an attachment is sent) as CSV text:
    UTF-8, a byte order mark allowed."""
    try:
        return base64.b64decode(uploaded_file(request)["data_b64"]).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("The file is not UTF-8 text.") from None


def with_cursor(args: dict, cursor: str | None) -> dict:
    return {**args, "cursor": cursor} if cursor else args


class CsvRoutes:
    @api("GET", f"{ORG}/tasks.csv", query=TaskListQuerySchema, response_media="text/csv",
         errors=(403, 404),
         response_headers={"Content-Disposition": "attachment; filename=tasks-<org_id>.csv"})
    def export_tasks(self, request, org_id):
        """The list (its filters and sort, or a saved view's) as a streamed CSV file (at
        most 100,000 rows); cells a spreadsheet would run as formulas start with ``'``."""
        args, user_id = export_args(request.args.to_dict()), request.user_id
        return stream_csv(
            lambda cursor: self.rpc_tasks.export_tasks_page(user_id, org_id,
                                                           with_cursor(args, cursor)),
            task_schemas.csv_text, task_schemas.MAX_EXPORT_ROWS, f"tasks-{org_id}.csv",
            f"tasks of {org_id}")

    @api("GET", f"{ORG}/employees.csv", query=EmployeeQuerySchema, response_media="text/csv",
         errors=(404,),
         response_headers={"Content-Disposition": "attachment; filename=employees-<org_id>.csv"})
    def export_employees(self, request, org_id):
        """The employee list (its filters) as a streamed CSV file (at most 100,000 rows)."""
        args, user_id = export_args(request.args.to_dict()), request.user_id
        return stream_csv(
            lambda cursor: self.rpc_employees.list_employees(user_id, org_id,
                                                             with_cursor(args, cursor)),
            employee_schemas.csv_text, employee_schemas.MAX_EXPORT_ROWS,
            f"employees-{org_id}.csv", f"employees of {org_id}")

    @api("POST", f"{ORG}/tasks/import", limit="bulk", max_body="TASK_IMPORT_MAX_BYTES",
         query=ImportQuerySchema, body=AttachmentUploadSchema, body_media="multipart/form-data",
         response=BulkJobSchema, status=202, also={200: ImportCheckSchema},
         errors=(403, 404, 413, 415),
         response_headers={"Location": "The job's URL (GET it for progress)"})
    def import_tasks(self, request, org_id):
        """Create tasks from a CSV file, uploaded as multipart/form-data in the part named
        ``file`` (UTF-8; columns title, description, priority, due_at,
        labels, team_id, assignee_id; title required): a bulk job whose errors name each
        refused row. ``?dry_run=true`` answers 200 with the errors and the count that
        would be created, and creates nothing."""
        body = {"csv": csv_upload(request), "dry_run": request.args.get("dry_run", "false")}
        result = self.rpc_tasks.import_tasks(request.user_id, org_id, body)
        if result.get("dry_run"):
            return 200, result
        return 202, {"Location": result["status_url"]}, result
