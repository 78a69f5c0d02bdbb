"""Gateway routes for saved task views (docs/tasks.md): a member's named list
filters, private or shared with the org or a team. The tasks service authorizes
and validates (a view the caller cannot see is a 404); nothing here is cached,
since who sees a view depends on the caller."""
from __future__ import annotations

from gateway_svc.http import api, json_object
from shared.pagination import PageArgsSchema
from task_svc.schemas import ViewOutSchema, ViewPageSchema, ViewSchema, ViewUpdateSchema

VIEWS = "/orgs/<org_id>/tasks/views"
VIEW = f"{VIEWS}/<view_id>"


class TaskViewRoutes:
    @api("POST", VIEWS, body=ViewSchema, response=ViewOutSchema, status=201, errors=(403, 404, 409))
    def create_view(self, request, org_id):
        """Save a list filter under a name; apply it with ``GET .../tasks?view=<view_id>``."""
        return 201, self.rpc_tasks.create_view(request.user_id, org_id, json_object(request))

    @api("GET", VIEWS, query=PageArgsSchema, response=ViewPageSchema, errors=(404,))
    def list_views(self, request, org_id):
        """The views the caller sees: their own, the org's, and their teams'."""
        return self.rpc_tasks.list_views(request.user_id, org_id, request.args.to_dict())

    @api("GET", VIEW, response=ViewOutSchema, errors=(404,))
    def get_view(self, request, org_id, view_id):
        return self.rpc_tasks.get_view(request.user_id, org_id, view_id)

    @api("PATCH", VIEW, body=ViewUpdateSchema, response=ViewOutSchema,
         errors=(403, 404, 409))
    def update_view(self, request, org_id, view_id):
        """Its owner, or a manager and up for a shared view."""
        return self.rpc_tasks.update_view(request.user_id, org_id, view_id, json_object(request))

    @api("DELETE", VIEW, status=204, errors=(403, 404))
    def delete_view(self, request, org_id, view_id):
        """Its owner, or a manager and up for a shared view."""
        self.rpc_tasks.delete_view(request.user_id, org_id, view_id)
        return 204, None
