"""The tasks service: entrypoints only. Rules live in ``domain``, queries in
``store``, wire shapes in ``schemas``; the private helpers at the bottom
are the few steps several entrypoints share (look-ups, caching, publishing)."""
from __future__ import annotations

import base64
import hashlib
import json
import logging

import redis as redis_lib

from shared import service as base
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.events import handles
from shared.mongo import Mongo, utcnow
from shared.pagination import PageArgsSchema, decode_cursor, decode_key, page, whole
from shared.rpc import ServiceRpc, rpc
from shared.tenancy import require_member
from shared.timers import periodic
from task_svc import domain, leaderboard, schemas
from task_svc.files import Files
from task_svc.store import TaskStore, new_id

log = logging.getLogger(__name__)


class TaskService(base.ServiceBase):
    name = "tasks"

    store = Mongo(TaskStore)
    files = Files()
    employees = ServiceRpc("employees", methods=("active_org_ids", "get_employees", "get_membership"))
    teams = ServiceRpc("teams", methods=("get_team_briefs",))

    # --- one task ----------------------------------------------------------------
    @rpc
    def create_task(self, user_id: str, org_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.create")
        data = schemas.TaskCreateSchema().load(body)
        team = self._body_team(org_id, data["team_id"])
        domain.require_assign(me, team, data["assignee_id"])
        assignee = self._assignee(org_id, data["assignee_id"])
        task = self.store.insert(self.store.task_document(org_id, data, me, assignee))
        self.store.add_created_history([task], user_id)
        self._publish_created(task, user_id)
        return schemas.dump_task(task)

    @rpc
    def get_task(self, user_id: str, org_id: str, task_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        return schemas.dump_task(self._task(org_id, task_id))

    @rpc
    def update_task(self, user_id: str, org_id: str, task_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        changes = schemas.TaskUpdateSchema().load(body)
        task = self._task(org_id, task_id)
        domain.require_update(me, task, self._team(org_id, task.get("team_id")))
        if changes.get("team_id"):
            self._body_team(org_id, changes["team_id"])
        if "title" in changes or "description" in changes:
            changes["keywords"] = domain.keywords(changes.get("title", task["title"]),
                                                  changes.get("description", task["description"]))
        task = self._write(task, changes, user_id) if changes else task
        if task is not None and changes:
            self._publish(task, "task.updated", {"changes": self._changes_wire(changes)}, user_id)
        return schemas.dump_task(task or self._task(org_id, task_id))

    @rpc
    def delete_task(self, user_id: str, org_id: str, task_id: str) -> None:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        task = self._task(org_id, task_id)
        domain.require_delete(me, task, self._team(org_id, task.get("team_id")))
        if self._write(task, {"deleted": True, "deleted_at": utcnow()}, user_id):
            if task["status"] == "done":
                leaderboard.incr(self.redis.client, org_id, task.get("assignee_id"), -1)
            self._publish(task, "task.deleted", {"assignee_id": task.get("assignee_id"),
                                                 "status": task["status"]}, user_id)

    @rpc
    def assign_task(self, user_id: str, org_id: str, task_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        new = schemas.AssignSchema().load(body)["assignee_id"]
        task = self._task(org_id, task_id)
        domain.require_reassign(me, task, self._team(org_id, task.get("team_id")), new)
        assignee = self._assignee(org_id, new)
        updated = self._reassign(task, assignee, user_id, reason="assigned")
        return schemas.dump_task(updated or self._task(org_id, task_id))

    @rpc
    def change_status(self, user_id: str, org_id: str, task_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        new = schemas.StatusSchema().load(body)["status"]
        task = self._task(org_id, task_id)
        domain.require_update(me, task, self._team(org_id, task.get("team_id")))
        with self.redis.lock(f"task:{task_id}"):
            task = self._task(org_id, task_id)
            domain.check_transition(task["status"], new)
            done = new == "done"
            updated = self._write(task, {"status": new, "completed_at": utcnow() if done else None,
                                         "completed_by_user_id": user_id if done else None}, user_id,
                                  expect={"status": task["status"]})
        if updated is None:  # deleted or moved by someone else meanwhile
            raise Conflict("The task changed meanwhile; read it again.")
        self._publish_status(task, updated, user_id)
        return schemas.dump_task(updated)

    # --- lists ---------------------------------------------------------------------
    @rpc
    def list_tasks(self, user_id: str, org_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        f = schemas.ListArgsSchema().load(args)
        return self.redis.cache.get_or_set(
            f"tasks:list:org:{org_id}:{self._args_key(f)}",
            lambda: self._page({"org_id": org_id}, f), ttl=self._list_ttl(), tags=[f"org:{org_id}"])

    @rpc
    def my_tasks(self, user_id: str, args: dict) -> dict:
        f = schemas.ListArgsSchema().load(args)
        # only orgs the user is still an active employee of (not left, not deleted); the
        # ids are in the cache key, so leaving an org changes the key at once
        org_ids = self.employees.active_org_ids(user_id)
        return self.redis.cache.get_or_set(
            f"tasks:list:user:{user_id}:{self._args_key({**f, 'org_ids': org_ids})}",
            lambda: self._page({"assignee_user_id": user_id, "org_id": {"$in": org_ids}}, f),
            ttl=self._list_ttl(), tags=[f"user:{user_id}"])

    # --- bulk ------------------------------------------------------------------------
    @rpc
    def create_bulk(self, user_id: str, org_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.bulk_create")
        data = schemas.BulkSchema().load(body)
        self._body_team(org_id, data["task"]["team_id"])
        ids = domain.unique_in_order(data["assignee_ids"])
        parts = domain.chunks(ids, int(self.config.get("TASK_BULK_CHUNK", 500)))
        job = {"_id": new_id(), "org_id": org_id, "status": "running", "total": len(ids), "done": 0,
               "failed": 0, "errors": [], "chunks_total": len(parts), "chunks_done": [],
               "created_by_user_id": user_id, "created_at": utcnow(), "finished_at": None}
        self.store.create_job(job)
        task = schemas.TaskFieldsSchema().dump(data["task"])
        for n, part in enumerate(parts):
            self.events.publish("task.bulk.created", {
                "org_id": org_id, "job_id": job["_id"], "chunk": n, "assignee_ids": part,
                "task": task, "creator_id": me.get("employee_id"), "creator_user_id": user_id},
                org_id=org_id, actor_id=user_id)
        return {**schemas.dump_job(job), "status_url": self._job_url(org_id, job["_id"])}

    @rpc
    def get_bulk_job(self, user_id: str, org_id: str, job_id: str) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        job = self.store.get_job(org_id, job_id)
        if job is None:
            raise NotFound("Job not found.")
        return {**schemas.dump_job(job), "status_url": self._job_url(org_id, job_id)}

    @handles("tasks", "task.bulk.created")
    def on_bulk_chunk(self, event: dict) -> None:
        d = event["data"]
        task = schemas.TaskFieldsSchema().load(d["task"])
        found = {e["employee_id"]: e for e in self.employees.get_employees(d["org_id"], d["assignee_ids"])}
        valid, errors = domain.split_assignees(d["assignee_ids"], found)
        creator = {"employee_id": d.get("creator_id"), "user_id": d["creator_user_id"]}
        docs = [self.store.task_document(d["org_id"], task, creator, e, job_id=d["job_id"],
                                         task_id=domain.bulk_task_id(d["job_id"], e["employee_id"]))
                for e in valid]
        self.store.insert_many_idempotent(docs)
        self.store.add_created_history(docs, d["creator_user_id"])
        if docs:  # every one, new or not: a deterministic event id makes a re-run safe
            self.events.publish("task.bulk.assigned", schemas.bulk_assigned(d, docs),
                                org_id=d["org_id"], actor_id=d["creator_user_id"],
                                event_id=f"task.bulk.assigned:{d['job_id']}:{d['chunk']}")
        self.store.record_chunk(d["job_id"], d["chunk"], len(docs), errors)
        self._invalidate(d["org_id"], *[doc["assignee_user_id"] for doc in docs])

    # --- comments, attachments, history ---------------------------------------------
    @rpc
    def add_comment(self, user_id: str, org_id: str, task_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.comment")
        data = schemas.CommentSchema().load(body)
        task = self._task(org_id, task_id)
        mentioned = [e for e in self._employees(org_id, data["mentions"]) if e.get("status") == "active"]
        comment = self.store.add_comment({"_id": new_id(), "task_id": task_id, "org_id": org_id,
                                          "author_user_id": user_id, "body": data["body"],
                                          "mentions": [e["employee_id"] for e in mentioned],
                                          "mentioned_user_ids": [e["user_id"] for e in mentioned],
                                          "created_at": utcnow()})
        self._publish_comment(task, comment)
        return schemas.dump_comment(comment)

    @rpc
    def list_comments(self, user_id: str, org_id: str, task_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        args = PageArgsSchema().load(args)
        self._task(org_id, task_id)
        docs = self.store.comments(task_id, args["limit"] + 1, decode_cursor(args["cursor"]))
        return page(docs, args["limit"], schemas.dump_comment)

    @rpc
    def add_attachment(self, user_id: str, org_id: str, task_id: str, body: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.comment")
        data = schemas.AttachmentSchema().load(body)
        task = self._task(org_id, task_id)
        domain.check_attachment_type(data["content_type"],
                                     domain.allowed_types(self.config.get("TASK_ATTACHMENT_TYPES")))
        blob = domain.decode_attachment(data["data_b64"], int(self.config.get(
            "TASK_ATTACHMENT_MAX_BYTES", domain.ATTACHMENT_MAX_BYTES)))
        attachment_id = new_id()
        self.files.put(self._file_key(attachment_id), blob, data["content_type"])
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
        self._task(org_id, task_id)
        return whole(map(schemas.dump_attachment, self.store.attachments(task_id)))

    @rpc
    def get_attachment(self, user_id: str, org_id: str, task_id: str, attachment_id: str) -> dict:
        """The attachment with a presigned ``url`` to fetch it from (S3), or else its bytes."""
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        self._task(org_id, task_id)
        doc = self._attachment(org_id, task_id, attachment_id)
        key, out = self._file_key(attachment_id), schemas.dump_attachment(doc)
        url = self.files.download_url(key, domain.content_disposition(doc["filename"]),
                                      doc["content_type"])
        if url:
            return {**out, "url": url}
        return {**out, "data_b64": base64.b64encode(self.files.get(key)).decode()}

    @rpc
    def delete_attachment(self, user_id: str, org_id: str, task_id: str, attachment_id: str) -> None:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        task = self._task(org_id, task_id)
        doc = self._attachment(org_id, task_id, attachment_id)
        domain.require_delete_attachment(me, task, self._team(org_id, task.get("team_id")), doc)
        if self.store.delete_attachment(org_id, task_id, attachment_id) is None:
            raise NotFound("Attachment not found.")  # deleted meanwhile
        self.files.delete(self._file_key(attachment_id))
        self.store.add_history(task, [("attachments", doc["filename"], None)], user_id)
        self._publish(task, "task.attachment.deleted", {
            "attachment_id": attachment_id, "filename": doc["filename"], "size": doc["size"]},
            user_id)

    @rpc
    def task_history(self, user_id: str, org_id: str, task_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.read")
        args = PageArgsSchema().load(args)
        self._task(org_id, task_id)
        docs = self.store.history(task_id, args["limit"] + 1, decode_key(args["cursor"], 2))
        return page(docs, args["limit"], schemas.dump_history, key=lambda h: (h["at"], h["_id"]))

    # --- stats, leaderboard ------------------------------------------------------------
    @rpc
    def stats(self, user_id: str, org_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.stats")
        f = schemas.StatsArgsSchema().load(args)
        team, person = f.get("team_id"), f.get("assignee_id")
        return self.redis.cache.get_or_set(
            f"tasks:stats:{org_id}:{team}:{person}",
            lambda: domain.fold_stats(self.store.stats(org_id, team, person, utcnow())),
            ttl=int(self.config.get("TASK_STATS_TTL", 60)), tags=[f"org:{org_id}"])

    @rpc
    def leaderboard(self, user_id: str, org_id: str, args: dict) -> dict:
        require_member(self.redis, self.employees, org_id, user_id, "task.stats")
        limit = PageArgsSchema().load(args)["limit"]
        rows, source = leaderboard.top(self.redis.client, self.store, org_id, limit)
        names = {e["employee_id"]: e.get("name") for e in self._employees(org_id, [r[0] for r in rows])}
        return {"items": [{"rank": i + 1, "employee_id": e, "name": names.get(e), "completed": int(n)}
                          for i, (e, n) in enumerate(rows)], "source": source}

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
            return self._mark_overdue()
        finally:
            self._release(lock)

    # --- events consumed -----------------------------------------------------------------
    @handles("employees", "employee.removed")
    def on_employee_removed(self, event: dict) -> None:
        d = event["data"]
        tasks = self.store.open_tasks_of(d["org_id"], d["employee_id"])
        self._hand_over(d["org_id"], tasks, d["employee_id"], event, "employee.removed")

    @handles("teams", "team.member.removed")
    def on_team_member_removed(self, event: dict) -> None:
        d = event["data"]
        self.redis.cache.invalidate_tags(f"team:{d['team_id']}")
        tasks = self.store.open_tasks_of(d["org_id"], d["employee_id"], team_id=d["team_id"])
        self._hand_over(d["org_id"], tasks, d["employee_id"], event, "team.member.removed")

    @handles("teams", "team.deleted")
    def on_team_deleted(self, event: dict) -> None:
        d = event["data"]
        self.redis.cache.invalidate_tags(f"team:{d['team_id']}")
        tasks = self.store.tasks_of_team(d["org_id"], d["team_id"])
        self._drop_team(d["org_id"], d["team_id"], tasks, event)

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

    # === helpers (not entrypoints) ===========================================================
    def _task(self, org_id: str, task_id: str) -> dict:
        task = self.store.get(org_id, str(task_id))
        if task is None:
            raise NotFound("Task not found.")
        return task

    def _team(self, org_id: str, team_id: str | None) -> dict | None:
        """The team's brief (leader, members, grants) from teams, cached until a team event."""
        if not team_id:
            return None
        return self.redis.cache.get_or_set(
            f"tasks:team:{org_id}:{team_id}",
            lambda: self.teams.get_team_briefs(org_id, [team_id]).get(team_id),
            ttl=int(self.config.get("TASK_TEAM_TTL", 60)), tags=[f"team:{team_id}"],
            cache_none=False)

    def _body_team(self, org_id: str, team_id: str | None) -> dict | None:
        team = self._team(org_id, team_id)
        if team_id and team is None:
            raise ValidationFailed("Unknown team.",
                                   errors={"team_id": ["No such team in this organization."]})
        return team

    def _attachment(self, org_id: str, task_id: str, attachment_id: str) -> dict:
        doc = self.store.attachment(org_id, task_id, str(attachment_id))
        if doc is None:
            raise NotFound("Attachment not found.")
        return doc

    def _employees(self, org_id: str, ids: list[str]) -> list[dict]:
        return self.employees.get_employees(org_id, list(ids)) if ids else []

    def _assignee(self, org_id: str, employee_id: str | None) -> dict | None:
        if employee_id is None:
            return None
        found = self._employees(org_id, [employee_id])
        if not found or found[0].get("status") != "active":
            raise ValidationFailed("Unknown assignee.", errors={
                "assignee_id": ["Not an active employee of this organization."]})
        return found[0]

    def _write(self, task: dict, changes: dict, actor: str | None, reason: str | None = None,
               expect: dict | None = None) -> dict | None:
        """Update, record history, drop cached lists; None if ``expect`` no longer holds."""
        updated = self.store.update(task["org_id"], task["_id"], changes, expect=expect)
        if updated is not None:
            self.store.add_history(task, domain.diff(task, changes), actor, reason)
            self._invalidate(task["org_id"], task.get("assignee_user_id"),
                             updated.get("assignee_user_id"))
        return updated

    def _reassign(self, task: dict, assignee: dict | None, actor: str | None, reason: str,
                  event_id: str | None = None) -> dict | None:
        new_id_ = assignee["employee_id"] if assignee else None
        with self.redis.lock(f"task:{task['_id']}"):
            updated = self._write(task, {"assignee_id": new_id_,
                                         "assignee_user_id": assignee["user_id"] if assignee else None},
                                  actor, reason, expect={"assignee_id": task.get("assignee_id")})
        if updated is None or task.get("assignee_id") == new_id_:
            return updated
        if task.get("assignee_id") is None:
            self._publish_assigned(updated, actor, event_id=event_id)
        else:
            self._publish(updated, "task.reassigned", {
                "old_assignee_id": task["assignee_id"], "new_assignee_id": new_id_,
                "new_assignee_user_id": updated.get("assignee_user_id"), "reason": reason},
                actor, event_id=event_id)
        return updated

    def _hand_over(self, org_id: str, tasks: list[dict], leaving: str, event: dict, reason: str) -> None:
        teams = {}
        team_ids = sorted({t["team_id"] for t in tasks if t.get("team_id")})
        if team_ids:
            teams = self.teams.get_team_briefs(org_id, team_ids)
        for task in tasks:
            leader, leader_user = domain.reassignment_target(teams.get(task.get("team_id")), leaving)
            target = {"employee_id": leader, "user_id": leader_user} if leader else None
            self._reassign(task, target, event.get("actor_id"), reason,
                           event_id=f"{event['event_id']}:{task['_id']}")

    def _drop_team(self, org_id: str, team_id: str, tasks: list[dict], event: dict) -> None:
        if not tasks:
            return
        actor = event.get("actor_id")
        self.store.bulk_update_team_removed(org_id, team_id, [t["_id"] for t in tasks], actor)
        self._invalidate(org_id, *[t.get("assignee_user_id") for t in tasks])
        for task in tasks:  # each also bumps the org's version: the gateway's cached lists go
            self._publish(task, "task.updated", {"changes": {"team_id": None}}, actor,
                          event_id=f"{event['event_id']}:{task['_id']}")

    def _publish(self, task: dict, event_type: str, extra: dict, actor: str | None,
                 event_id: str | None = None) -> None:
        self.events.publish(event_type, {"org_id": task["org_id"], "task_id": task["_id"],
                                         "title": task["title"], **extra},
                            org_id=task["org_id"], actor_id=actor, event_id=event_id)

    def _publish_assigned(self, task: dict, actor: str | None, event_id: str | None = None) -> None:
        self._publish(task, "task.assigned", {
            "assignee_id": task["assignee_id"], "assignee_user_id": task["assignee_user_id"],
            "assigned_by_user_id": actor, "due_at": schemas.iso(task.get("due_at")),
            "priority": task["priority"], "job_id": task.get("job_id")}, actor, event_id=event_id)

    def _publish_created(self, task: dict, actor: str) -> None:
        self._invalidate(task["org_id"], task.get("assignee_user_id"))
        self._publish(task, "task.created", {
            "creator_user_id": actor, "assignee_id": task["assignee_id"], "team_id": task["team_id"],
            "status": task["status"], "priority": task["priority"],
            "due_at": schemas.iso(task.get("due_at"))}, actor)
        if task["assignee_id"]:
            self._publish_assigned(task, actor)

    def _publish_status(self, old: dict, new: dict, actor: str) -> None:
        self._publish(new, "task.status.changed", {"old_status": old["status"],
                                                   "new_status": new["status"],
                                                   "assignee_id": new.get("assignee_id")}, actor)
        if new["status"] == "done":
            leaderboard.incr(self.redis.client, new["org_id"], new.get("assignee_id"), 1)
            self._publish(new, "task.completed", {
                "assignee_id": new.get("assignee_id"), "creator_user_id": new.get("creator_user_id"),
                "completed_by_user_id": actor}, actor)
        elif old["status"] == "done":
            leaderboard.incr(self.redis.client, new["org_id"], new.get("assignee_id"), -1)

    def _publish_comment(self, task: dict, comment: dict) -> None:
        author = comment["author_user_id"]
        watchers = {task.get("creator_user_id"), task.get("assignee_user_id"),
                    *self.store.commenters(task["_id"])} - {author, None}
        self._publish(task, "task.comment.added", {
            "comment_id": comment["_id"], "author_user_id": author,
            "assignee_user_id": task.get("assignee_user_id"), "watcher_user_ids": sorted(watchers),
            "preview": comment["body"][:140], "mentions": comment["mentions"],
            "mentioned_user_ids": comment["mentioned_user_ids"]}, author)

    def _invalidate(self, org_id: str, *user_ids: str | None) -> None:
        tags = [f"org:{org_id}", *{f"user:{u}" for u in user_ids if u}]
        self.redis.cache.invalidate_tags(*tags)

    def _page(self, base_query: dict, f: dict) -> dict:
        query = self.store.list_query(base_query, f, utcnow())
        field = domain.SORTS[f["sort"]][0]
        docs = self.store.page(query, f["sort"], f["limit"] + 1, decode_key(f["cursor"], 2))
        return page(docs, f["limit"], schemas.dump_task, key=lambda t: (t[field], t["_id"]))

    @staticmethod
    def _args_key(f: dict) -> str:
        return hashlib.sha1(json.dumps(f, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def _list_ttl(self) -> int:
        return int(self.config.get("TASK_LIST_TTL", 60))

    @staticmethod
    def _job_url(org_id: str, job_id: str) -> str:
        return f"/api/v1/orgs/{org_id}/tasks/bulk/{job_id}"

    @staticmethod
    def _file_key(attachment_id: str) -> str:
        return f"{attachment_id[-2:]}/{attachment_id}"

    def _mark_overdue(self) -> int:
        at, marked = utcnow(), 0
        for task in self.store.overdue_candidates(at):
            if self.store.mark_overdue(task["_id"], at) is None:
                continue  # someone else marked it
            marked += 1
            self._publish(task, "task.overdue", {
                "assignee_id": task.get("assignee_id"), "assignee_user_id": task.get("assignee_user_id"),
                "due_at": schemas.iso(task.get("due_at"))}, None, event_id=f"task.overdue:{task['_id']}")
            self._invalidate(task["org_id"], task.get("assignee_user_id"))
        return marked

    @staticmethod
    def _release(lock) -> None:
        try:
            lock.release()
        except Exception as exc:  # expired or Redis gone: the lock times out by itself
            log.warning("overdue lock release failed: %s", exc)

    @staticmethod
    def _changes_wire(changes: dict) -> dict:
        return {k: schemas.iso(v) if hasattr(v, "isoformat") else v
                for k, v in changes.items() if k != "keywords"}
