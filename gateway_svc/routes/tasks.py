"""Gateway routes for tasks (api.md). Entrypoints stay thin: validate,
one RPC, shape the answer. The tasks service validates every field (with
the schemas named here, which document the route) and decides tenancy
(404 outside the org, 403 without the permission) before it does."""
from __future__ import annotations

import base64

from werkzeug.wrappers import Response

from gateway_svc import etags
from gateway_svc.cache import CachedRoute
from gateway_svc.http import api, json_object
from shared.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from shared.pagination import PageArgsSchema
from task_svc.domain import content_disposition
from task_svc.schemas import (
    AssignSchema,
    AttachmentOutSchema,
    AttachmentPageSchema,
    AttachmentUploadSchema,
    BulkJobSchema,
    BulkSchema,
    CommentOutSchema,
    CommentPageSchema,
    CommentSchema,
    HistoryPageSchema,
    LeaderboardSchema,
    ListQuerySchema,
    StatsArgsSchema,
    StatusSchema,
    TaskCreateSchema,
    TaskListQuerySchema,
    TaskOutSchema,
    TaskPageSchema,
    TaskStatsSchema,
    TaskUpdateSchema,
    TimeEntryOutSchema,
    TimeEntryPageSchema,
    TimeLogSchema,
    TimerOutSchema,
)

ORG = "/orgs/<org_id>"
TASK = f"{ORG}/tasks/<task_id>"
TASK_LISTS = CachedRoute("tasks:list", "tasks", ttl=60)
UPLOAD_MAX_PARTS = 4  # the file, and room for a client that adds a field or two
# werkzeug 2.3's parser applies max_form_memory_size to its whole read buffer (it reads
# 64 KiB at a time, file parts included), not to text fields alone as 3.0.6 does: this
# bounds that buffer, so a part that never ends cannot grow it, while files stream on
UPLOAD_MAX_BUFFER_BYTES = 1024 * 1024
# uploads cross RPC base64-encoded (4/3 of the size): RabbitMQ refuses messages over
# 128 MiB (its max_message_size), which would be a 500; past this, a 413 instead
RPC_FILE_CEILING = 90 * 1024 * 1024


def uploaded_file(request) -> dict:
    """The ``file`` part of a multipart upload, as the tasks service takes it."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("Upload the file as multipart/form-data (field 'file').")
    # werkzeug 2.3 (nameko 2 pins < 3) misses CVE-2024-49767's fix: few parts, a
    # bounded parse buffer; the route's body limit bounds the rest (docs/security.md)
    request.max_form_parts = UPLOAD_MAX_PARTS
    request.max_form_memory_size = UPLOAD_MAX_BUFFER_BYTES
    try:
        upload = request.files.get("file")
    except Exception as exc:  # werkzeug refuses a body over max_content_length
        if getattr(exc, "code", None) == 413:
            raise PayloadTooLarge("The upload is too large.") from None
        raise
    if upload is None:
        raise ValidationFailed("No file.", errors={"file": ["Missing data for required field."]})
    data = upload.read()
    if len(data) > RPC_FILE_CEILING:
        raise PayloadTooLarge(f"Attachments are limited to {RPC_FILE_CEILING} bytes.")
    return {"filename": upload.filename or "", "data_b64": base64.b64encode(data).decode(),
            "content_type": upload.mimetype or "application/octet-stream"}


def download(attachment: dict) -> Response:
    """A redirect to the presigned URL of the object store (S3: the bytes never cross
    the mesh), or the bytes themselves (the local store)."""
    if attachment.get("url"):
        return Response(status=302, headers={"Location": attachment["url"],
                                             "Cache-Control": "private, no-store"})
    return Response(base64.b64decode(attachment["data_b64"]), content_type=attachment["content_type"],
                    headers={"Content-Disposition": content_disposition(attachment["filename"]),
                             "Cache-Control": "private, no-store"})


class TaskRoutes:
    @api("POST", f"{ORG}/tasks", body=TaskCreateSchema, response=TaskOutSchema, status=201,
         errors=(403, 404))
    def create_task(self, request, org_id):
        return 201, self.rpc_tasks.create_task(request.user_id, org_id, json_object(request))

    @api("GET", f"{ORG}/tasks", query=TaskListQuerySchema, response=TaskPageSchema,
         errors=(403, 404), cached=TASK_LISTS)
    def list_tasks(self, request, org_id):
        """List, filter, search, or apply a saved view (``view``; explicit parameters
        replace the view's). Answered from the gateway's cache, with no RPC, until a task
        of the org changes (every task event bumps the org's version); never with ``view``."""
        args = request.args.to_dict()
        if args.get("view"):  # who may see a view depends on the caller: never cached here
            return self.rpc_tasks.list_tasks(request.user_id, org_id, args)
        return TASK_LISTS.response(self.redis, request, org_id,
                                   lambda: self.rpc_tasks.list_tasks(request.user_id, org_id, args))

    @api("GET", "/me/tasks", query=ListQuerySchema, response=TaskPageSchema)
    def my_tasks(self, request):
        """The caller's tasks across every organization."""
        return self.rpc_tasks.my_tasks(request.user_id, request.args.to_dict())

    @api("POST", f"{ORG}/tasks/bulk", limit="bulk", max_body="BULK_MAX_BODY_BYTES",
         body=BulkSchema, response=BulkJobSchema, status=202, errors=(403, 404),
         response_headers={"Location": "The job's URL (GET it for progress)"})
    def create_bulk_tasks(self, request, org_id):
        """One task per assignee, created asynchronously: poll the job for progress."""
        job = self.rpc_tasks.create_bulk(request.user_id, org_id, json_object(request))
        return 202, {"Location": job["status_url"]}, job

    @api("GET", f"{ORG}/tasks/bulk/<job_id>", response=BulkJobSchema, errors=(403, 404))
    def get_bulk_job(self, request, org_id, job_id):
        return self.rpc_tasks.get_bulk_job(request.user_id, org_id, job_id)

    @api("GET", f"{ORG}/tasks/stats", query=StatsArgsSchema, response=TaskStatsSchema,
         errors=(403, 404))
    def task_stats(self, request, org_id):
        """Counts by status, overdue, completion rate; per team and per assignee; minutes
        logged and estimated (``time``: per task, assignee and team)."""
        return self.rpc_tasks.stats(request.user_id, org_id, request.args.to_dict())

    @api("GET", f"{ORG}/leaderboard", query=PageArgsSchema(only=("limit",)),
         response=LeaderboardSchema, errors=(403, 404))
    def leaderboard(self, request, org_id):
        """Most tasks completed."""
        return self.rpc_tasks.leaderboard(request.user_id, org_id, request.args.to_dict())

    @api("GET", TASK, response=TaskOutSchema, errors=(403, 404), etag=True)
    def get_task(self, request, org_id, task_id):
        return etags.answer(request, self.rpc_tasks.get_task(request.user_id, org_id, task_id))

    @api("PATCH", TASK, body=TaskUpdateSchema, response=TaskOutSchema, errors=(403, 404),
         etag=True)
    def update_task(self, request, org_id, task_id):
        version = etags.if_match_version(request)
        return etags.answer(request, self.rpc_tasks.update_task(
            request.user_id, org_id, task_id, json_object(request), if_version=version))

    @api("DELETE", TASK, status=204, errors=(403, 404), etag=True)
    def delete_task(self, request, org_id, task_id):
        self.rpc_tasks.delete_task(request.user_id, org_id, task_id,
                                   if_version=etags.if_match_version(request))
        return 204, None

    @api("POST", f"{TASK}/assign", body=AssignSchema, response=TaskOutSchema, status=200,
         errors=(403, 404, 409))
    def assign_task(self, request, org_id, task_id):
        """Assign, reassign, or unassign (``assignee_id: null``)."""
        return self.rpc_tasks.assign_task(request.user_id, org_id, task_id, json_object(request))

    @api("POST", f"{TASK}/status", body=StatusSchema, response=TaskOutSchema, status=200,
         errors=(403, 404, 409))
    def change_task_status(self, request, org_id, task_id):
        """``todo`` → ``in_progress`` → ``done`` and back one step; 409 names the allowed moves."""
        return self.rpc_tasks.change_status(request.user_id, org_id, task_id, json_object(request))

    @api("POST", f"{TASK}/comments", body=CommentSchema, response=CommentOutSchema, status=201,
         errors=(403, 404))
    def add_task_comment(self, request, org_id, task_id):
        return 201, self.rpc_tasks.add_comment(request.user_id, org_id, task_id, json_object(request))

    @api("GET", f"{TASK}/comments", query=PageArgsSchema, response=CommentPageSchema,
         errors=(403, 404))
    def list_task_comments(self, request, org_id, task_id):
        return self.rpc_tasks.list_comments(request.user_id, org_id, task_id, request.args.to_dict())

    @api("POST", f"{TASK}/attachments", max_body="ATTACHMENT_MAX_BODY_BYTES",
         body=AttachmentUploadSchema, body_media="multipart/form-data",
         response=AttachmentOutSchema, status=201, errors=(403, 404, 413, 415))
    def add_task_attachment(self, request, org_id, task_id):
        """Upload a file as multipart/form-data, in the part named ``file``."""
        return 201, self.rpc_tasks.add_attachment(request.user_id, org_id, task_id,
                                                  uploaded_file(request))

    @api("GET", f"{TASK}/attachments", response=AttachmentPageSchema, errors=(403, 404))
    def list_task_attachments(self, request, org_id, task_id):
        return self.rpc_tasks.list_attachments(request.user_id, org_id, task_id)

    @api("GET", f"{TASK}/attachments/<attachment_id>", response_media="application/octet-stream",
         errors=(403, 404),
         response_headers={"Content-Disposition": "attachment, with the uploaded file name",
                           "Location": "with S3 storage: 302 to a presigned URL of the file "
                                       "(valid TASK_FILES_URL_TTL s)"})
    def download_task_attachment(self, request, org_id, task_id, attachment_id):
        """The file's bytes, with the content type it was uploaded with; with S3 storage a
        302 redirect to a short-lived presigned URL that answers the same way."""
        return download(self.rpc_tasks.get_attachment(request.user_id, org_id, task_id, attachment_id))

    @api("DELETE", f"{TASK}/attachments/<attachment_id>", status=204, errors=(403, 404))
    def delete_task_attachment(self, request, org_id, task_id, attachment_id):
        """Who uploaded it, or who may change the task; the stored bytes go too."""
        self.rpc_tasks.delete_attachment(request.user_id, org_id, task_id, attachment_id)
        return 204, None

    @api("GET", f"{TASK}/history", query=PageArgsSchema, response=HistoryPageSchema,
         errors=(403, 404))
    def task_history(self, request, org_id, task_id):
        """Every change, who and when, oldest first."""
        return self.rpc_tasks.task_history(request.user_id, org_id, task_id, request.args.to_dict())

    # --- estimates and time tracking (docs/tasks.md) ----------------------------------
    @api("POST", f"{TASK}/time", body=TimeLogSchema, response=TimeEntryOutSchema, status=201,
         errors=(403, 404))
    def log_task_time(self, request, org_id, task_id):
        """Log minutes worked on the task (who may change the task may log time on it)."""
        return 201, self.rpc_tasks.log_time(request.user_id, org_id, task_id, json_object(request))

    @api("GET", f"{TASK}/time", query=PageArgsSchema, response=TimeEntryPageSchema,
         errors=(403, 404))
    def list_task_time(self, request, org_id, task_id):
        """The task's time entries, oldest first; the total is the task's ``time_spent_minutes``."""
        return self.rpc_tasks.list_time(request.user_id, org_id, task_id, request.args.to_dict())

    @api("POST", f"{TASK}/time/start", response=TimerOutSchema, status=201, errors=(403, 404, 409))
    def start_task_timer(self, request, org_id, task_id):
        """Start the caller's timer on the task; 409 if it is running already."""
        return 201, self.rpc_tasks.start_timer(request.user_id, org_id, task_id)

    @api("POST", f"{TASK}/time/stop", response=TimeEntryOutSchema, status=200,
         errors=(403, 404, 409))
    def stop_task_timer(self, request, org_id, task_id):
        """Stop the caller's timer: the minutes it ran (rounded up, at most a day) become
        an entry; 409 when no timer of theirs is running."""
        return self.rpc_tasks.stop_timer(request.user_id, org_id, task_id)
