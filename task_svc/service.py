"""The tasks service: entrypoints only. Rules live in ``domain``, queries in
``store``, wire shapes in ``schemas``; the steps several entrypoints share
(look-ups, writes with history, publishing, caching) in ``flows``."""
from __future__ import annotations

import base64
import hashlib
import logging

import redis as redis_lib

from shared import service as base
from shared.errors import Conflict, NotFound, PayloadTooLarge, PreconditionFailed
from shared.events import Events, handles
from shared.mongo import Mongo, utcnow
from shared.pagination import PageArgsSchema, decode_cursor, decode_key, page, whole
from shared.rpc import ServiceRpc, rpc
from shared.tenancy import require_member
from shared.timers import periodic
from shared.versions import STALE, expect_version, require_version
from task_svc import domain, leaderboard, schemas
from task_svc.files import Files
from task_svc.flows import UNCHANGED, TaskFlows
from task_svc.store import TaskStore, new_id

log = logging.getLogger(__name__)


class TaskService(base.ServiceBase):
    name = "tasks"

    store = Mongo(TaskStore)
    # a comment changes no cached answer (lists show no comments): the org's lists stay
    events = Events(unversioned=("task.comment.added",))
    files = Files()
    employees = ServiceRpc("employees", methods=("active_org_ids", "get_employees", "get_membership"))
    teams = ServiceRpc("teams", methods=("get_team_briefs",))
    organizations = ServiceRpc("organizations", methods=("get_org",))  # recurrences' time zone

    @property
    def flows(self) -> TaskFlows:
        return TaskFlows(self)

    # --- one task ----------------------------------------------------------------
    @rpc
    def create_task(self, user_id: str, org_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.create")
        data = schemas.TaskCreateSchema().load(body)
        team = self.flows.body_team(org_id, data["team_id"])
        domain.require_assign(me, team, data["assignee_id"])
        assignee = self.flows.assignee(org_id, data["assignee_id"])
        doc = self.store.task_document(org_id, data, me, assignee)
        doc.update(self.flows.recurrence_changes(org_id, None, data, doc["_id"]),
                   estimate_minutes=data.get("estimate_minutes"))
        self.store.with_created_history([doc], user_id)  # its history in its own insert
        with self.flows.parent_checked(org_id, None, data["parent_id"]):
            task = self.store.insert(doc)
        self.flows.recount(org_id, task["parent_id"])
        self.flows.publish_created(task, user_id)
        return schemas.dump_task(task)

    @rpc
    def get_task(self, user_id: str, org_id: str, task_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        return schemas.dump_task(self.flows.task(org_id, task_id))

    @rpc
    def update_task(self, user_id: str, org_id: str, task_id: str, body: dict,
                    if_version: int | None = None) -> dict:
        """``if_version``: the version the client saw (If-Match); 412 if it moved on."""
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        changes = schemas.TaskUpdateSchema().load(body)
        task = self.flows.task(org_id, task_id)
        domain.require_update(me, task, self.flows.team(org_id, task.get("team_id")))
        require_version(task, if_version)
        if changes.get("team_id"):
            self.flows.body_team(org_id, changes["team_id"])
        changes.update(self.flows.recurrence_changes(org_id, task, changes, task_id))
        if "title" in changes or "description" in changes:
            changes["keywords"] = domain.keywords(changes.get("title", task["title"]),
                                                  changes.get("description", task["description"]))
        old_parent = task.get("parent_id")
        with self.flows.parent_checked(org_id, task_id, changes.get("parent_id", UNCHANGED)):
            updated = self.flows.write(
                task, changes, user_id, expect=expect_version(if_version),
                publish=lambda _, now: self.flows.publish(now, "task.updated", {
                    "changes": self.flows.changes_wire(changes)}, user_id)) if changes else task
        if updated is not None and "parent_id" in changes:
            self.flows.recount(org_id, old_parent, updated.get("parent_id"))
        if updated is None and if_version is not None:
            raise PreconditionFailed(STALE)
        return schemas.dump_task(updated or self.flows.task(org_id, task_id))

    @rpc
    def delete_task(self, user_id: str, org_id: str, task_id: str,
                    if_version: int | None = None) -> None:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        task = self.flows.task(org_id, task_id)
        domain.require_delete(me, task, self.flows.team(org_id, task.get("team_id")))
        require_version(task, if_version)
        deleted = self.flows.write(
            task, {"deleted": True, "deleted_at": utcnow()}, user_id, expect=expect_version(if_version),
            publish=lambda old, _: self.flows.publish(old, "task.deleted", {
                "assignee_id": old.get("assignee_id"), "status": old["status"]}, user_id))
        if deleted is None and if_version is not None:
            raise PreconditionFailed(STALE)
        if deleted:
            self.flows.detach_deleted(task)
            if task["status"] == "done":
                leaderboard.incr(self.redis.cache_client, org_id, task.get("assignee_id"), -1)

    @rpc
    def assign_task(self, user_id: str, org_id: str, task_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        new = schemas.AssignSchema().load(body)["assignee_id"]
        task = self.flows.task(org_id, task_id)
        domain.require_reassign(me, task, self.flows.team(org_id, task.get("team_id")), new)
        assignee = self.flows.assignee(org_id, new)
        updated = self.flows.reassign(task, assignee, user_id, reason="assigned")
        return schemas.dump_task(updated or self.flows.task(org_id, task_id))

    @rpc
    def change_status(self, user_id: str, org_id: str, task_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        new = schemas.StatusSchema().load(body)["status"]
        with self.redis.lock(f"task:{task_id}"):  # one read, under the lock: checked as written
            task = self.flows.task(org_id, task_id)
            domain.require_update(me, task, self.flows.team(org_id, task.get("team_id")))
            domain.check_transition(task["status"], new)
            self.flows.require_unblocked(task, new)
            done = new == "done"
            updated = self.flows.write(task, {"status": new, "completed_at": utcnow() if done else None,
                                         "completed_by_user_id": user_id if done else None}, user_id,
                                  expect={"status": task["status"]},
                                  publish=lambda old, now: self.flows.publish_status(old, now, user_id))
        if updated is None:  # deleted or moved by someone else meanwhile
            raise Conflict("The task changed meanwhile; read it again.")
        self.flows.score(task, updated)
        self.flows.recount(org_id, updated.get("parent_id"))
        if updated["status"] == "done" and self.flows.spawn_next(updated):
            updated = self.flows.task(org_id, task_id)  # with its link to the next occurrence
        return schemas.dump_task(updated)

    # --- lists ---------------------------------------------------------------------
    @rpc
    def list_tasks(self, user_id: str, org_id: str, args: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        f = schemas.ListArgsSchema().load(self.flows.view_args(user_id, org_id, me, args))  # ?view=
        return self.redis.cache.get_or_set(
            f"tasks:list:org:{org_id}:{self.flows.args_key(f)}",
            lambda: self.flows.list_page({"org_id": org_id}, f), ttl=self.flows.list_ttl(),
            tags=[f"org:{org_id}"])

    @rpc
    def my_tasks(self, user_id: str, args: dict) -> dict:
        f = schemas.ListArgsSchema().load(args)
        # only orgs the user is still an active employee of (not left, not deleted); the
        # ids are in the cache key, so leaving an org changes the key at once
        org_ids = self.employees.active_org_ids(user_id)
        return self.redis.cache.get_or_set(
            f"tasks:list:user:{user_id}:{self.flows.args_key({**f, 'org_ids': org_ids})}",
            lambda: self.flows.list_page({"assignee_user_id": user_id, "org_id": {"$in": org_ids}}, f),
            ttl=self.flows.list_ttl(), tags=[f"user:{user_id}"])

    # --- saved views ---------------------------------------------------------------------
    @rpc
    def create_view(self, user_id: str, org_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        data = schemas.ViewSchema().load(body)
        self.flows.check_view_team(me, org_id, data["visibility"], data["team_id"])
        at = utcnow()
        return schemas.dump_view(self.store.insert_view({
            "_id": new_id(), "org_id": org_id, "owner_user_id": user_id, "name": data["name"],
            "filter": data["filter"], "visibility": data["visibility"], "team_id": data["team_id"],
            "created_at": at, "updated_at": at}))

    @rpc
    def list_views(self, user_id: str, org_id: str, args: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        args = PageArgsSchema().load(args)
        docs = self.store.visible_views(org_id, user_id, domain.member_team_ids(me),
                                        decode_cursor(args["cursor"]), args["limit"] + 1)
        return page(docs, args["limit"], schemas.dump_view)

    @rpc
    def get_view(self, user_id: str, org_id: str, view_id: str) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        return schemas.dump_view(self.flows.visible_view(me, user_id, org_id, view_id))

    @rpc
    def update_view(self, user_id: str, org_id: str, view_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        view = self.flows.changeable_view(me, user_id, org_id, view_id)
        changes = schemas.ViewUpdateSchema(partial=True).load(body)
        if "visibility" in changes and changes["visibility"] != "team" and "team_id" not in changes:
            changes["team_id"] = None
        schemas.check_view_team({**view, **changes})
        if "visibility" in changes or "team_id" in changes:
            merged = {**view, **changes}
            self.flows.check_view_team(me, org_id, merged["visibility"], merged.get("team_id"))
        updated = self.store.update_view(org_id, view_id, changes) if changes else view
        if updated is None:
            raise NotFound("View not found.")  # deleted meanwhile
        return schemas.dump_view(updated)

    @rpc
    def delete_view(self, user_id: str, org_id: str, view_id: str) -> None:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        self.flows.changeable_view(me, user_id, org_id, view_id)
        self.store.delete_view(org_id, view_id)

    # --- bulk ------------------------------------------------------------------------
    @rpc
    def create_bulk(self, user_id: str, org_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.bulk_create")
        data = schemas.BulkSchema().load(body)
        self.flows.body_team(org_id, data["task"]["team_id"])
        ids = domain.unique_in_order(data["assignee_ids"])
        parts = domain.chunks(ids, int(self.config.get("TASK_BULK_CHUNK", 500)))
        job: dict = {"_id": new_id(), "org_id": org_id, "status": "running", "total": len(ids), "done": 0,
               "failed": 0, "errors": [], "chunks_total": len(parts), "chunks_done": [],
               "created_by_user_id": user_id, "created_at": utcnow(), "finished_at": None}
        self.store.create_job(job)
        task = schemas.TaskFieldsSchema().dump(data["task"])
        for n, part in enumerate(parts):
            self.events.publish("task.bulk.created", {
                "org_id": org_id, "job_id": job["_id"], "chunk": n, "assignee_ids": part,
                "task": task, "creator_id": me.get("employee_id"), "creator_user_id": user_id},
                org_id=org_id, actor_id=user_id)
        return {**schemas.dump_job(job), "status_url": self.flows.job_url(org_id, job["_id"])}

    @rpc
    def get_bulk_job(self, user_id: str, org_id: str, job_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        job = self.store.get_job(org_id, job_id)
        if job is None:
            raise NotFound("Job not found.")
        return {**schemas.dump_job(job), "status_url": self.flows.job_url(org_id, job_id)}

    @rpc
    def running_jobs(self, limit: int = 50) -> list[dict]:
        """Bulk jobs in progress in every org: an operator RPC (the web console's
        operator pages; no HTTP route reaches it)."""
        return [schemas.dump_job(j) for j in self.store.running_jobs(min(int(limit), 200))]

    @handles("tasks", "task.bulk.created", bulk=True)
    def on_bulk_chunk(self, event: dict) -> None:
        d = event["data"]
        task = schemas.TaskFieldsSchema().load(d["task"])
        found = {e["employee_id"]: e for e in self.employees.get_employees(d["org_id"], d["assignee_ids"])}
        valid, errors = domain.split_assignees(d["assignee_ids"], found)
        creator = {"employee_id": d.get("creator_id"), "user_id": d["creator_user_id"]}
        docs = self.store.with_created_history([
            self.store.task_document(d["org_id"], task, creator, e, job_id=d["job_id"],
                                     task_id=domain.bulk_task_id(d["job_id"], e["employee_id"]))
            for e in valid], d["creator_user_id"])
        self.store.insert_many_idempotent(docs)  # the tasks with their history, one write
        if docs:  # every one, new or not: a deterministic event id makes a re-run safe
            self.events.publish("task.bulk.assigned", schemas.bulk_assigned(d, docs),
                                org_id=d["org_id"], actor_id=d["creator_user_id"],
                                event_id=f"task.bulk.assigned:{d['job_id']}:{d['chunk']}")
        self.store.record_chunk(d["job_id"], d["chunk"], len(docs), errors)
        self.flows.invalidate(d["org_id"], *[doc["assignee_user_id"] for doc in docs])

    # --- CSV export and import ---------------------------------------------------------
    @rpc
    def export_tasks_page(self, user_id: str, org_id: str, args: dict) -> dict:
        """One page of the CSV export: ``list_tasks`` (the same filters, sort and ``view``)
        read past the list cache, so an export of 100,000 tasks does not fill Redis."""
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        f = schemas.ListArgsSchema().load(self.flows.view_args(user_id, org_id, me, args))
        return self.flows.list_page({"org_id": org_id}, f)

    @rpc
    def import_tasks(self, user_id: str, org_id: str, body: dict) -> dict:
        """Check a CSV file's rows; unless ``dry_run``, create the valid ones through a
        bulk job (``task.import.created`` chunks), the invalid ones its errors."""
        me = require_member(self.redis, self.employees, org_id, user_id, "task.bulk_create")
        args = schemas.ImportArgsSchema().load(body)
        limit = int(self.config.get("TASK_IMPORT_MAX_BYTES", domain.IMPORT_MAX_BYTES))
        if len(args["csv"].encode()) > limit:
            raise PayloadTooLarge(f"An import is limited to {limit} bytes.")
        rows = domain.parse_rows(args["csv"])
        valid, errors = self.flows.check_import(org_id, rows)
        if args["dry_run"]:
            return {"dry_run": True, "rows": len(rows), "would_create": len(valid),
                    "failed": len(errors), "errors": errors[:domain.MAX_ROW_ERRORS]}
        return self.flows.start_import(me, user_id, org_id, rows, valid, errors)

    @handles("tasks", "task.import.created", bulk=True)
    def on_import_chunk(self, event: dict) -> None:
        self.flows.import_chunk(event["data"])

    # --- comments, attachments, history ---------------------------------------------
    @rpc
    def add_comment(self, user_id: str, org_id: str, task_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.comment")
        data = schemas.CommentSchema().load(body)
        task = self.flows.task(org_id, task_id)
        mentioned = [e for e in self.flows.employees_in(org_id, data["mentions"])
                     if e.get("status") == "active"]
        self.flows.watch(task, user_id)  # before: nothing is written after the comment
        comment = self.flows.add_comment(task, {
            "_id": new_id(), "task_id": task_id, "org_id": org_id, "author_user_id": user_id,
            "body": data["body"], "mentions": [e["employee_id"] for e in mentioned],
            "mentioned_user_ids": [e["user_id"] for e in mentioned], "created_at": utcnow()})
        return schemas.dump_comment(comment)

    @rpc
    def list_comments(self, user_id: str, org_id: str, task_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        args = PageArgsSchema().load(args)
        self.flows.task(org_id, task_id)
        docs = self.store.comments(task_id, args["limit"] + 1, decode_cursor(args["cursor"]))
        return page(docs, args["limit"], schemas.dump_comment)

    @rpc
    def add_attachment(self, user_id: str, org_id: str, task_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.comment")
        data = schemas.AttachmentSchema().load(body)
        task = self.flows.task(org_id, task_id)
        domain.check_attachment_type(data["content_type"],
                                     domain.allowed_types(self.config.get("TASK_ATTACHMENT_TYPES")))
        blob = domain.decode_attachment(data["data_b64"], int(self.config.get(
            "TASK_ATTACHMENT_MAX_BYTES", domain.ATTACHMENT_MAX_BYTES)))
        attachment_id = new_id()
        self.files.put(self.flows.file_key(attachment_id), blob, data["content_type"])
        doc = self.store.add_attachment({
            "_id": attachment_id, "task_id": task_id, "org_id": org_id, "filename": data["filename"],
            "content_type": data["content_type"], "size": len(blob),
            "sha256": hashlib.sha256(blob).hexdigest(), "uploaded_by_user_id": user_id,
            "created_at": utcnow()})
        self.store.add_history(task, [("attachments", None, data["filename"])], user_id)
        return schemas.dump_attachment(doc)

    @rpc
    def list_attachments(self, user_id: str, org_id: str, task_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        self.flows.task(org_id, task_id)
        return whole(map(schemas.dump_attachment, self.store.attachments(task_id)))

    @rpc
    def get_attachment(self, user_id: str, org_id: str, task_id: str, attachment_id: str) -> dict:
        """The attachment with a presigned ``url`` to fetch it from (S3), or else its bytes."""
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        self.flows.task(org_id, task_id)
        doc = self.flows.attachment(org_id, task_id, attachment_id)
        key, out = self.flows.file_key(attachment_id), schemas.dump_attachment(doc)
        url = self.files.download_url(key, domain.content_disposition(doc["filename"]),
                                      doc["content_type"])
        if url:
            return {**out, "url": url}
        return {**out, "data_b64": base64.b64encode(self.files.get(key)).decode()}

    @rpc
    def delete_attachment(self, user_id: str, org_id: str, task_id: str, attachment_id: str) -> None:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        task = self.flows.task(org_id, task_id)
        doc = self.flows.attachment(org_id, task_id, attachment_id)
        domain.require_delete_attachment(me, task, self.flows.team(org_id, task.get("team_id")), doc)
        if self.store.delete_attachment(org_id, task_id, attachment_id) is None:
            raise NotFound("Attachment not found.")  # deleted meanwhile
        self.files.delete(self.flows.file_key(attachment_id))
        self.store.add_history(task, [("attachments", doc["filename"], None)], user_id)
        self.flows.publish(task, "task.attachment.deleted", {
            "attachment_id": attachment_id, "filename": doc["filename"], "size": doc["size"]},
            user_id)

    @rpc
    def task_history(self, user_id: str, org_id: str, task_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        args = PageArgsSchema().load(args)
        self.store.flush_history(self.flows.task(org_id, task_id))
        docs = self.store.history(task_id, args["limit"] + 1, decode_key(args["cursor"], 2))
        return page(docs, args["limit"], schemas.dump_history, key=lambda h: (h["at"], h["_id"]))

    # --- estimates and time tracking -------------------------------------------------------
    @rpc
    def log_time(self, user_id: str, org_id: str, task_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        data = schemas.TimeLogSchema().load(body)
        return self.flows.log_time(self.flows.workable(me, org_id, task_id), me, data)

    @rpc
    def start_timer(self, user_id: str, org_id: str, task_id: str) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        return self.flows.start_timer(self.flows.workable(me, org_id, task_id), me)

    @rpc
    def stop_timer(self, user_id: str, org_id: str, task_id: str) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        return self.flows.stop_timer(self.flows.task(org_id, task_id), me)

    @rpc
    def list_time(self, user_id: str, org_id: str, task_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        args = PageArgsSchema().load(args)
        self.flows.task(org_id, task_id)
        docs = self.store.entries(task_id, args["limit"] + 1, decode_cursor(args["cursor"]))
        return page(docs, args["limit"], schemas.dump_entry)

    # --- subtasks -------------------------------------------------------------------
    @rpc
    def list_subtasks(self, user_id: str, org_id: str, task_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        args = PageArgsSchema().load(args)
        self.flows.task(org_id, task_id)
        docs = self.store.subtasks(org_id, task_id, args["limit"] + 1, decode_cursor(args["cursor"]))
        return page(docs, args["limit"], schemas.dump_task)

    # --- blocks / blocked_by ---------------------------------------------------------
    @rpc
    def get_links(self, user_id: str, org_id: str, task_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        task = self.flows.task(org_id, task_id)
        return schemas.dump_links(task_id, *self.flows.link_briefs(task))

    @rpc
    def add_link(self, user_id: str, org_id: str, task_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        data = schemas.LinkCreateSchema().load(body)
        task = self.flows.task(org_id, task_id)
        domain.require_update(me, task, self.flows.team(org_id, task.get("team_id")))
        if self.flows.link(task, data["type"], data["task_id"], user_id):
            self.store.add_history(task, [(data["type"], None, data["task_id"])], user_id)
            self.flows.publish(task, "task.link.added", {
                "type": data["type"], "other_task_id": data["task_id"]}, user_id)
        return schemas.dump_links(task_id, *self.flows.link_briefs(task))

    @rpc
    def remove_link(self, user_id: str, org_id: str, task_id: str, other_id: str) -> None:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        task = self.flows.task(org_id, task_id)
        domain.require_update(me, task, self.flows.team(org_id, task.get("team_id")))
        doc = self.flows.unlink(task, other_id)
        link_type = "blocks" if doc["blocker_id"] == task_id else "blocked_by"
        self.store.add_history(task, [(link_type, str(other_id), None)], user_id)
        self.flows.publish(task, "task.link.removed", {"type": link_type,
                                                       "other_task_id": str(other_id)}, user_id)

    # --- watchers ----------------------------------------------------------------------
    @rpc
    def list_watchers(self, user_id: str, org_id: str, task_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        task = self.flows.task(org_id, task_id)
        return whole(map(schemas.dump_watcher, sorted(self.flows.watchers(task))))

    @rpc
    def watch_task(self, user_id: str, org_id: str, task_id: str) -> dict:
        """Anyone who may read the task may watch it (idempotent)."""
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        self.flows.watch(self.flows.task(org_id, task_id), user_id)
        task = self.flows.task(org_id, task_id)
        return schemas.dump_watching(task_id, user_id, self.flows.watchers(task))

    @rpc
    def unwatch_task(self, user_id: str, org_id: str, task_id: str) -> None:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        self.flows.unwatch(self.flows.task(org_id, task_id), user_id)

    # --- stats, leaderboard ------------------------------------------------------------
    @rpc
    def stats(self, user_id: str, org_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.stats")
        f = schemas.StatsArgsSchema().load(args)
        team, person = f.get("team_id"), f.get("assignee_id")
        return self.redis.cache.get_or_set(
            f"tasks:stats:{org_id}:{team}:{person}",
            lambda: {**domain.fold_stats(self.store.stats(org_id, team, person, utcnow())),
                     "time": self.flows.time_totals(org_id, team, person)},
            ttl=int(self.config.get("TASK_STATS_TTL", 60)), tags=[f"org:{org_id}"])

    @rpc
    def leaderboard(self, user_id: str, org_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.stats")
        limit = PageArgsSchema().load(args)["limit"]
        rows, source = leaderboard.top(self.redis.cache_client, self.store, org_id, limit)
        found = self.flows.employees_in(org_id, [r[0] for r in rows])
        names = {e["employee_id"]: e.get("name") for e in found}
        return {"items": [{"rank": i + 1, "employee_id": e, "name": names.get(e), "completed": int(n)}
                          for i, (e, n) in enumerate(rows)], "source": source}

    # --- for the search service ----------------------------------------------------------
    @rpc
    def search_documents(self, org_id: str | None, task_ids: list[str] | None = None,
                         after: str | None = None, limit: int = 200) -> dict:
        """What the search index holds of live tasks: those of ``task_ids`` (missing
        ones are deleted), or a page after ``after`` (one org, or all: a rebuild)."""
        ids = [i for i in task_ids if isinstance(i, str)][:1000] if task_ids is not None else None
        limit = max(1, min(int(limit), 1000))
        docs = self.store.search_export(org_id, ids, after, limit)
        return {"items": [schemas.dump_search_document(d) for d in docs],
                "next_after": docs[-1]["_id"] if ids is None and len(docs) == limit else None}

    # --- overdue -------------------------------------------------------------------------
    @periodic(interval=60, config_key="TASK_OVERDUE_INTERVAL")
    def mark_overdue(self) -> int:
        lock = self.redis.lock("overdue", timeout=300, blocking_timeout=0)
        try:
            if not lock.acquire(blocking=False):
                return 0  # another instance is on it
        except redis_lib.RedisError as exc:
            log.warning("overdue scan skipped, no lock: %s", exc)
            return 0
        try:
            return self.flows.mark_overdue()
        finally:
            self.flows.release(lock)

    # --- events consumed -----------------------------------------------------------------
    @handles("employees", "employee.removed")
    def on_employee_removed(self, event: dict) -> None:
        d = event["data"]
        tasks = self.store.open_tasks_of(d["org_id"], d["employee_id"])
        self.flows.hand_over(d["org_id"], tasks, d["employee_id"], event, "employee.removed")
        if d.get("user_id"):
            self.store.forget_watcher(d["org_id"], d["user_id"])

    @handles("teams", "team.member.removed")
    def on_team_member_removed(self, event: dict) -> None:
        d = event["data"]
        self.redis.cache.invalidate_tags(f"team:{d['team_id']}")
        tasks = self.store.open_tasks_of(d["org_id"], d["employee_id"], team_id=d["team_id"])
        self.flows.hand_over(d["org_id"], tasks, d["employee_id"], event, "team.member.removed")

    @handles("teams", "team.deleted")
    def on_team_deleted(self, event: dict) -> None:
        d = event["data"]
        self.redis.cache.invalidate_tags(f"team:{d['team_id']}")
        tasks = self.store.tasks_of_team(d["org_id"], d["team_id"])
        self.flows.drop_team(d["org_id"], d["team_id"], tasks, event)

    @handles("teams", "team.leader.changed")
    def on_team_leader_changed(self, event: dict) -> None:
        self.redis.cache.invalidate_tags(f"team:{event['data']['team_id']}")

    @handles("teams", "team.member.added")
    def on_team_member_added(self, event: dict) -> None:
        self.redis.cache.invalidate_tags(f"team:{event['data']['team_id']}")

    @handles("teams", "team.permission.granted")
    def on_team_permission_granted(self, event: dict) -> None:
        self.redis.cache.invalidate_tags(f"team:{event['data']['team_id']}")

    @handles("teams", "team.permission.revoked")
    def on_team_permission_revoked(self, event: dict) -> None:
        self.redis.cache.invalidate_tags(f"team:{event['data']['team_id']}")
