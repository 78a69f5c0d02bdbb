"""The tasks service's entrypoints for subtasks, dependencies and watchers: a
mixin of :class:`task_svc.service.TaskService` (entrypoints only, as service.py;
the steps are in ``links_flows``, the rules in ``links``)."""
from __future__ import annotations

from shared.pagination import PageArgsSchema, decode_cursor, page, whole
from shared.rpc import rpc
from shared.tenancy import require_member
from task_svc import domain, link_schemas, schemas
from task_svc.links_flows import LinkFlows


class LinkEntrypoints:
    @property
    def links(self) -> LinkFlows:
        return LinkFlows(self)

    # --- subtasks -------------------------------------------------------------------
    @rpc
    def list_subtasks(self, user_id: str, org_id: str, task_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        args = PageArgsSchema().load(args)
        self.links.task(org_id, task_id)
        docs = self.store.subtasks(org_id, task_id, args["limit"] + 1, decode_cursor(args["cursor"]))
        return page(docs, args["limit"], schemas.dump_task)

    # --- blocks / blocked_by ---------------------------------------------------------
    @rpc
    def get_links(self, user_id: str, org_id: str, task_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        task = self.links.task(org_id, task_id)
        return link_schemas.dump_links(task_id, *self.links.links_answer(task))

    @rpc
    def add_link(self, user_id: str, org_id: str, task_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        data = link_schemas.LinkCreateSchema().load(body)
        task = self.links.task(org_id, task_id)
        domain.require_update(me, task, self.links.team(org_id, task.get("team_id")))
        if self.links.link(task, data["type"], data["task_id"], user_id):
            self.store.add_history(task, [(data["type"], None, data["task_id"])], user_id)
            self.links.publish(task, "task.link.added", {
                "type": data["type"], "other_task_id": data["task_id"]}, user_id)
        return link_schemas.dump_links(task_id, *self.links.links_answer(task))

    @rpc
    def remove_link(self, user_id: str, org_id: str, task_id: str, other_id: str) -> None:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        task = self.links.task(org_id, task_id)
        domain.require_update(me, task, self.links.team(org_id, task.get("team_id")))
        doc = self.links.unlink(task, other_id)
        link_type = "blocks" if doc["blocker_id"] == task_id else "blocked_by"
        self.store.add_history(task, [(link_type, str(other_id), None)], user_id)
        self.links.publish(task, "task.link.removed", {"type": link_type,
                                                       "other_task_id": str(other_id)}, user_id)

    # --- watchers ----------------------------------------------------------------------
    @rpc
    def list_watchers(self, user_id: str, org_id: str, task_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        task = self.links.task(org_id, task_id)
        return whole(map(link_schemas.dump_watcher, sorted(self.links.watchers(task))))

    @rpc
    def watch_task(self, user_id: str, org_id: str, task_id: str) -> dict:
        """Anyone who may read the task may watch it (idempotent)."""
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        self.links.watch(self.links.task(org_id, task_id), user_id)
        task = self.links.task(org_id, task_id)
        return link_schemas.dump_watching(task_id, user_id, self.links.watchers(task))

    @rpc
    def unwatch_task(self, user_id: str, org_id: str, task_id: str) -> None:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        self.links.unwatch(self.links.task(org_id, task_id), user_id)
