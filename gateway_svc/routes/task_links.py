"""Gateway routes for subtasks, dependencies (blocks / blocked_by) and watchers
of a task (docs/tasks.md). Thin, as routes/tasks.py: one RPC each; the tasks
service validates, decides tenancy and permissions."""
from __future__ import annotations

from gateway_svc.http import api, json_object
from gateway_svc.routes.tasks import TASK
from shared.pagination import PageArgsSchema
from task_svc.schemas import (
    LinkCreateSchema,
    TaskLinksSchema,
    TaskPageSchema,
    WatcherPageSchema,
    WatchingSchema,
)


class TaskLinkRoutes:
    @api("GET", f"{TASK}/subtasks", query=PageArgsSchema, response=TaskPageSchema,
         errors=(403, 404))
    def list_subtasks(self, request, org_id, task_id):
        """The task's subtasks, oldest first (`parent_id` on create or PATCH makes one).

        The task's own `subtasks` field counts them: `{total, done}`."""
        return self.rpc_tasks.list_subtasks(request.user_id, org_id, task_id, request.args.to_dict())

    @api("GET", f"{TASK}/links", response=TaskLinksSchema, errors=(403, 404))
    def list_task_links(self, request, org_id, task_id):
        """The tasks it blocks and the tasks blocking it."""
        return self.rpc_tasks.get_links(request.user_id, org_id, task_id)

    @api("POST", f"{TASK}/links", body=LinkCreateSchema, response=TaskLinksSchema, status=201,
         errors=(403, 404, 409))
    def add_task_link(self, request, org_id, task_id):
        """Link another task of the org: `blocks` it or `blocked_by` it.

        The update rule on this task; 409 naming the `cycle` when the link would close
        one; a repeat changes nothing."""
        return 201, self.rpc_tasks.add_link(request.user_id, org_id, task_id, json_object(request))

    @api("DELETE", f"{TASK}/links/<other_task_id>", status=204, errors=(403, 404))
    def remove_task_link(self, request, org_id, task_id, other_task_id):
        """The link between the two tasks, whichever way it points."""
        self.rpc_tasks.remove_link(request.user_id, org_id, task_id, other_task_id)
        return 204, None

    @api("GET", f"{TASK}/watchers", response=WatcherPageSchema, errors=(403, 404))
    def list_task_watchers(self, request, org_id, task_id):
        """Who is notified of the task's status changes and comments."""
        return self.rpc_tasks.list_watchers(request.user_id, org_id, task_id)

    @api("PUT", f"{TASK}/watchers/me", response=WatchingSchema, errors=(403, 404))
    def watch_task(self, request, org_id, task_id):
        """Watch the task (anyone who may read it); a repeat changes nothing."""
        return self.rpc_tasks.watch_task(request.user_id, org_id, task_id)

    @api("DELETE", f"{TASK}/watchers/me", status=204, errors=(403, 404))
    def unwatch_task(self, request, org_id, task_id):
        """Stop watching (a comment of yours, or being assigned, watches it again)."""
        self.rpc_tasks.unwatch_task(request.user_id, org_id, task_id)
        return 204, None
