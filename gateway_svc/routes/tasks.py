"""Gateway routes for tasks (api.md). Entrypoints stay thin: validate,
one RPC, shape the answer. The tasks service validates every field and
decides tenancy (404 outside the org, 403 without the permission)."""
from __future__ import annotations

import base64
import json
from urllib.parse import quote

from werkzeug.wrappers import Response

from gateway_svc.cache import ResponseCache
from gateway_svc.http import api
from gateway_svc.routes.teams import json_object
from shared.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from shared.redis import org_version_key

ORG = "/orgs/<org_id>"
TASK = f"{ORG}/tasks/<task_id>"
LIST_CACHE_TTL = 60


def uploaded_file(request) -> dict:
    """The ``file`` part of a multipart upload, as the tasks service takes it."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("Upload the file as multipart/form-data (field 'file').")
    try:
        upload = request.files.get("file")
    except Exception as exc:  # werkzeug refuses a body over max_content_length
        if getattr(exc, "code", None) == 413:
            raise PayloadTooLarge("The upload is too large.") from None
        raise
    if upload is None:
        raise ValidationFailed("No file.", errors={"file": ["Missing data for required field."]})
    return {"filename": upload.filename or "", "data_b64": base64.b64encode(upload.read()).decode(),
            "content_type": upload.mimetype or "application/octet-stream"}


def download(attachment: dict) -> Response:
    name = quote(attachment["filename"], safe="")
    return Response(base64.b64decode(attachment["data_b64"]), content_type=attachment["content_type"],
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}",
                             "Cache-Control": "private, no-store"})


class TaskRoutes:
    @api("POST", f"{ORG}/tasks")
    def create_task(self, request, org_id):
        return 201, self.rpc_tasks.create_task(request.user_id, org_id, json_object(request))

    @api("GET", f"{ORG}/tasks")
    def list_tasks(self, request, org_id):
        """List, filter, search. Answered from the gateway's cache, with no RPC, until
        a task of the org changes (every task event bumps the org's version)."""
        args = request.args.to_dict()
        return ResponseCache(self.redis).get_or_compute(
            f"tasks:list:{org_id}:{json.dumps(args, sort_keys=True)}",
            [org_version_key("tasks", org_id)],
            lambda: self.rpc_tasks.list_tasks(request.user_id, org_id, args), ttl=LIST_CACHE_TTL)

    @api("GET", "/me/tasks")
    def my_tasks(self, request):
        return self.rpc_tasks.my_tasks(request.user_id, request.args.to_dict())

    @api("POST", f"{ORG}/tasks/bulk", limit="bulk", max_body="BULK_MAX_BODY_BYTES")
    def create_bulk_tasks(self, request, org_id):
        job = self.rpc_tasks.create_bulk(request.user_id, org_id, json_object(request))
        return 202, {"Location": job["status_url"]}, job

    @api("GET", f"{ORG}/tasks/bulk/<job_id>")
    def get_bulk_job(self, request, org_id, job_id):
        return self.rpc_tasks.get_bulk_job(request.user_id, org_id, job_id)

    @api("GET", f"{ORG}/tasks/stats")
    def task_stats(self, request, org_id):
        return self.rpc_tasks.stats(request.user_id, org_id, request.args.to_dict())

    @api("GET", f"{ORG}/leaderboard")
    def leaderboard(self, request, org_id):
        return self.rpc_tasks.leaderboard(request.user_id, org_id, request.args.to_dict())

    @api("GET", TASK)
    def get_task(self, request, org_id, task_id):
        return self.rpc_tasks.get_task(request.user_id, org_id, task_id)

    @api("PATCH", TASK)
    def update_task(self, request, org_id, task_id):
        return self.rpc_tasks.update_task(request.user_id, org_id, task_id, json_object(request))

    @api("DELETE", TASK)
    def delete_task(self, request, org_id, task_id):
        self.rpc_tasks.delete_task(request.user_id, org_id, task_id)
        return 204, None

    @api("POST", f"{TASK}/assign")
    def assign_task(self, request, org_id, task_id):
        return self.rpc_tasks.assign_task(request.user_id, org_id, task_id, json_object(request))

    @api("POST", f"{TASK}/status")
    def change_task_status(self, request, org_id, task_id):
        return self.rpc_tasks.change_status(request.user_id, org_id, task_id, json_object(request))

    @api("POST", f"{TASK}/comments")
    def add_task_comment(self, request, org_id, task_id):
        return 201, self.rpc_tasks.add_comment(request.user_id, org_id, task_id, json_object(request))

    @api("GET", f"{TASK}/comments")
    def list_task_comments(self, request, org_id, task_id):
        return self.rpc_tasks.list_comments(request.user_id, org_id, task_id, request.args.to_dict())

    @api("POST", f"{TASK}/attachments", max_body="ATTACHMENT_MAX_BODY_BYTES")
    def add_task_attachment(self, request, org_id, task_id):
        return 201, self.rpc_tasks.add_attachment(request.user_id, org_id, task_id,
                                                  uploaded_file(request))

    @api("GET", f"{TASK}/attachments")
    def list_task_attachments(self, request, org_id, task_id):
        return self.rpc_tasks.list_attachments(request.user_id, org_id, task_id)

    @api("GET", f"{TASK}/attachments/<attachment_id>")
    def download_task_attachment(self, request, org_id, task_id, attachment_id):
        return download(self.rpc_tasks.get_attachment(request.user_id, org_id, task_id, attachment_id))

    @api("GET", f"{TASK}/history")
    def task_history(self, request, org_id, task_id):
        return self.rpc_tasks.task_history(request.user_id, org_id, task_id, request.args.to_dict())
