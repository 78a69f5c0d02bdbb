"""The tasks service's work of several steps (writing a change with its history,
reassigning, handing tasks over when someone leaves or a team goes, the events a
change publishes, list pages and the saved view they apply, the overdue sweep; checking
a parent or a link under the org's graph lock, recounting a parent's progress, what a
deleted task leaves behind, who watches; a CSV import checked, started and created chunk
by chunk; setting a recurrence and spawning the next occurrence; logging time, timers
and their totals), on one worker's dependencies: the entrypoints in ``service.py``
authorize and validate, then call these. Rules come from :mod:`task_svc.domain`;
queries from the store."""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.mongo import utcnow
from shared.pagination import decode_key, page
from shared.rpc import ServiceProxy
from shared.service import Flows
from task_svc import domain, leaderboard, recurrence, schemas
from task_svc.store import new_id

log = logging.getLogger(__name__)
UNCHANGED = object()  # a PATCH that leaves parent_id as it is (parent_checked)
ORG_ZONE_TTL = 300  # seconds the org's settings (its time zone) are cached


class TaskFlows(Flows):
    uses = ("employees", "teams", "organizations")
    employees: ServiceProxy
    teams: ServiceProxy
    organizations: ServiceProxy

    def task(self, org_id: str, task_id: str) -> dict:
        task = self.store.get(org_id, str(task_id))
        if task is None:
            raise NotFound("Task not found.")
        return task

    def team(self, org_id: str, team_id: str | None) -> dict | None:
        """The team's brief (leader, members, grants) from teams, cached until a team event."""
        if not team_id:
            return None
        return self.redis.cache.get_or_set(
            f"tasks:team:{org_id}:{team_id}",
            lambda: self.teams.get_team_briefs(org_id, [team_id]).get(team_id),
            ttl=int(self.config.get("TASK_TEAM_TTL", 60)), tags=[f"team:{team_id}"],
            cache_none=False)

    def body_team(self, org_id: str, team_id: str | None) -> dict | None:
        team = self.team(org_id, team_id)
        if team_id and team is None:
            raise ValidationFailed("Unknown team.",
                                   errors={"team_id": ["No such team in this organization."]})
        return team

    def attachment(self, org_id: str, task_id: str, attachment_id: str) -> dict:
        doc = self.store.attachment(org_id, task_id, str(attachment_id))
        if doc is None:
            raise NotFound("Attachment not found.")
        return doc

    def employees_in(self, org_id: str, ids: list[str]) -> list[dict]:
        return self.employees.get_employees(org_id, list(ids)) if ids else []

    def assignee(self, org_id: str, employee_id: str | None) -> dict | None:
        if employee_id is None:
            return None
        found = self.employees_in(org_id, [employee_id])
        if not found or found[0].get("status") != "active":
            raise ValidationFailed("Unknown assignee.", errors={
                "assignee_id": ["Not an active employee of this organization."]})
        return found[0]

    def write(self, task: dict, changes: dict, actor: str | None, reason: str | None = None,
               expect: dict | None = None,
               publish: Callable[[dict, dict], None] | None = None) -> dict | None:
        """Update with its history and the events ``publish(before, after)`` publishes,
        all in the task's one write (``TaskStore.update``), then drop cached lists;
        None if ``expect`` no longer holds. ``publish`` may run more than once (a
        concurrent change makes the write read the task again): it only publishes."""
        def events(before: dict, after: dict) -> list[dict]:
            return self.events.capture(lambda: publish(before, after)) if publish else []

        written = self.store.update(task["org_id"], task["_id"], changes, expect=expect,
                                    actor=actor, reason=reason, current=task, events=events)
        if written is None:
            return None
        updated, envelopes = written
        self.events.carried_by("tasks", task["_id"], envelopes)
        self.invalidate(task["org_id"], task.get("assignee_user_id"), updated.get("assignee_user_id"))
        return updated

    def reassign(self, task: dict, assignee: dict | None, actor: str | None, reason: str,
                  event_id: str | None = None) -> dict | None:
        new_id_ = assignee["employee_id"] if assignee else None
        def publish(old: dict, now: dict) -> None:
            if old.get("assignee_id") == new_id_:
                return
            if old.get("assignee_id") is None:
                self.publish_assigned(now, actor, event_id=event_id)
            else:
                self.publish(now, "task.reassigned", {
                    "old_assignee_id": old["assignee_id"], "new_assignee_id": new_id_,
                    "new_assignee_user_id": now.get("assignee_user_id"), "reason": reason},
                    actor, event_id=event_id)

        with self.redis.lock(f"task:{task['_id']}"):
            updated = self.write(task, {"assignee_id": new_id_,
                                         "assignee_user_id": assignee["user_id"] if assignee else None},
                                  actor, reason, expect={"assignee_id": task.get("assignee_id")},
                                  publish=publish)
        if updated is not None and assignee and task.get("assignee_id") != new_id_:
            self.watch(task, assignee["user_id"])  # the new assignee watches the task
        return updated

    def hand_over(self, org_id: str, tasks: list[dict], leaving: str, event: dict, reason: str) -> None:
        teams = {}
        team_ids = sorted({t["team_id"] for t in tasks if t.get("team_id")})
        if team_ids:
            teams = self.teams.get_team_briefs(org_id, team_ids)
        for task in tasks:
            leader, leader_user = domain.reassignment_target(teams.get(task.get("team_id")), leaving)
            target = {"employee_id": leader, "user_id": leader_user} if leader else None
            self.reassign(task, target, event.get("actor_id"), reason,
                           event_id=f"{event['event_id']}:{task['_id']}")

    def drop_team(self, org_id: str, team_id: str, tasks: list[dict], event: dict) -> None:
        if not tasks:
            return
        actor = event.get("actor_id")
        self.store.bulk_update_team_removed(org_id, team_id, [t["_id"] for t in tasks], actor)
        self.invalidate(org_id, *[t.get("assignee_user_id") for t in tasks])
        for task in tasks:  # each also bumps the org's version: the gateway's cached lists go
            self.publish(task, "task.updated", {"changes": {"team_id": None}}, actor,
                          event_id=f"{event['event_id']}:{task['_id']}")

    def publish(self, task: dict, event_type: str, extra: dict, actor: str | None,
                 event_id: str | None = None) -> None:
        self.events.publish(event_type, {"org_id": task["org_id"], "task_id": task["_id"],
                                         "title": task["title"], **extra},
                            org_id=task["org_id"], actor_id=actor, event_id=event_id)

    def publish_assigned(self, task: dict, actor: str | None, event_id: str | None = None) -> None:
        self.publish(task, "task.assigned", {
            "assignee_id": task["assignee_id"], "assignee_user_id": task["assignee_user_id"],
            "assigned_by_user_id": actor, "due_at": schemas.iso(task.get("due_at")),
            "priority": task["priority"], "job_id": task.get("job_id")}, actor, event_id=event_id)

    def publish_created(self, task: dict, actor: str | None, derived_ids: bool = False) -> None:
        """``derived_ids``: event ids from the task id (a handler that may run again)."""
        self.invalidate(task["org_id"], task.get("assignee_user_id"))
        self.publish(task, "task.created", {
            "creator_user_id": actor, "assignee_id": task["assignee_id"], "team_id": task["team_id"],
            "status": task["status"], "priority": task["priority"],
            "due_at": schemas.iso(task.get("due_at"))}, actor,
            event_id=f"task.created:{task['_id']}" if derived_ids else None)
        if task["assignee_id"]:
            self.publish_assigned(task, actor,
                                  event_id=f"task.assigned:{task['_id']}" if derived_ids else None)

    def publish_status(self, old: dict, new: dict, actor: str) -> None:
        self.publish(new, "task.status.changed", {
            "old_status": old["status"], "new_status": new["status"],
            "assignee_id": new.get("assignee_id"), "creator_user_id": new.get("creator_user_id"),
            "changed_by_user_id": actor, "watcher_user_ids": sorted(self.watchers(new))}, actor)
        if new["status"] == "done":
            self.publish(new, "task.completed", {
                "assignee_id": new.get("assignee_id"), "creator_user_id": new.get("creator_user_id"),
                "completed_by_user_id": actor}, actor)

    def score(self, old: dict, new: dict) -> None:
        """The leaderboard after a status change: a task done counts, undone no longer."""
        if (new["status"] == "done") != (old["status"] == "done"):
            leaderboard.incr(self.redis.cache_client, new["org_id"], new.get("assignee_id"),
                             1 if new["status"] == "done" else -1)

    def add_comment(self, task: dict, comment: dict) -> dict:
        """The comment, written with its event in it (``TaskStore.add_comment``)."""
        envelopes = self.events.capture(lambda: self.publish_comment(task, comment))
        self.store.add_comment(comment, envelopes)
        self.events.carried_by("comments", comment["_id"], envelopes)
        return comment

    def publish_comment(self, task: dict, comment: dict) -> None:
        author = comment["author_user_id"]
        watchers = self.watchers(task) - {author}
        self.publish(task, "task.comment.added", {
            "comment_id": comment["_id"], "author_user_id": author,
            "assignee_user_id": task.get("assignee_user_id"), "watcher_user_ids": sorted(watchers),
            "preview": comment["body"][:140], "mentions": comment["mentions"],
            "mentioned_user_ids": comment["mentioned_user_ids"]}, author)

    def watchers(self, task: dict) -> set[str]:
        """Who hears of the task's changes (domain.watchers_of)."""
        commenters = [] if "watcher_user_ids" in task else self.store.commenters(task["_id"])
        return domain.watchers_of(task, commenters)

    def watch(self, task: dict, *user_ids: str | None) -> None:
        """Add watchers; no write when they all watch it already."""
        seed = None if "watcher_user_ids" in task else sorted(self.watchers(task))
        known = set(task.get("watcher_user_ids") or []) if seed is None else set()
        self.store.add_watchers(task["org_id"], task["_id"],
                                [u for u in user_ids if u and u not in known], seed)

    def unwatch(self, task: dict, user_id: str) -> None:
        seed = None if "watcher_user_ids" in task else sorted(self.watchers(task))
        self.store.remove_watcher(task["org_id"], task["_id"], user_id, seed)

    def invalidate(self, org_id: str, *user_ids: str | None) -> None:
        tags = [f"org:{org_id}", *{f"user:{u}" for u in user_ids if u}]
        self.redis.cache.invalidate_tags(*tags)

    def list_page(self, base_query: dict, f: dict) -> dict:
        query = self.store.list_query(base_query, f, utcnow())
        field = domain.SORTS[f["sort"]][0]
        docs = self.store.page(query, f["sort"], f["limit"] + 1, decode_key(f["cursor"], 2))
        return page(docs, f["limit"], schemas.dump_task, key=lambda t: (t[field], t["_id"]))

    @staticmethod
    def args_key(f: dict) -> str:
        return hashlib.sha1(json.dumps(f, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def list_ttl(self) -> int:
        return int(self.config.get("TASK_LIST_TTL", 60))

    @staticmethod
    def job_url(org_id: str, job_id: str) -> str:
        return f"/api/v1/orgs/{org_id}/tasks/bulk/{job_id}"

    @staticmethod
    def file_key(attachment_id: str) -> str:
        return f"{attachment_id[-2:]}/{attachment_id}"

    def mark_overdue(self) -> int:
        """Mark open tasks past due, once; a recurring one gets its next occurrence first
        (``spawn_next``: a task whose next occurrence failed stays unmarked, to be tried
        next sweep)."""
        at, marked = utcnow(), 0
        for task in self.store.overdue_candidates(at):
            if task.get("recurrence"):
                try:
                    self.spawn_next(task)
                except Exception as exc:  # one task's failure must not stop the sweep
                    log.warning("next occurrence of %s not created: %s", task["_id"], exc)
                    continue
            if self.store.mark_overdue(task["_id"], at) is None:
                continue  # someone else marked it
            marked += 1
            self.publish(task, "task.overdue", {
                "assignee_id": task.get("assignee_id"), "assignee_user_id": task.get("assignee_user_id"),
                "due_at": schemas.iso(task.get("due_at"))}, None, event_id=f"task.overdue:{task['_id']}")
            self.invalidate(task["org_id"], task.get("assignee_user_id"))
        return marked

    @staticmethod
    def release(lock) -> None:
        try:
            lock.release()
        except Exception as exc:  # expired or Redis gone: the lock times out by itself
            log.warning("overdue lock release failed: %s", exc)

    @staticmethod
    def changes_wire(changes: dict) -> dict:
        return {k: schemas.dump_recurrence(v) if k == "recurrence" else
                schemas.iso(v) if hasattr(v, "isoformat") else v
                for k, v in changes.items() if k != "keywords"}

    # --- subtasks and blocking links -------------------------------------------------
    def subtask_depth(self) -> int:
        return int(self.config.get("TASK_SUBTASK_DEPTH", domain.SUBTASK_DEPTH))

    @contextmanager
    def graph_lock(self, org_id: str) -> Iterator[None]:
        """One change of an org's parents or links at a time: two concurrent links
        (A blocks B, B blocks A) or moves cannot each pass the check alone."""
        with self.redis.lock(f"graph:{org_id}", timeout=30, blocking_timeout=5):
            yield

    def other_task(self, org_id: str, task_id: str, field: str) -> dict:
        """A task named in a body: 422 naming ``field`` when not a live task of the org."""
        found = self.store.briefs(org_id, [task_id]).get(task_id)
        if found is None:
            raise ValidationFailed("Unknown task.",
                                   errors={field: ["No such task in this organization."]})
        return found

    # --- parents ------------------------------------------------------------------
    @contextmanager
    def parent_checked(self, org_id: str, task_id: str | None, parent_id) -> Iterator[None]:
        """The body of the ``with`` (the write) runs once ``parent_id`` is allowed for
        ``task_id`` (None: a task being created), under the graph lock. ``UNCHANGED``
        or None (a top-level task) need no check and no lock."""
        if parent_id is UNCHANGED or parent_id is None:
            yield
            return
        with self.graph_lock(org_id):
            self.other_task(org_id, parent_id, "parent_id")
            depth = self.subtask_depth()
            ancestors = self.store.ancestors(org_id, parent_id, limit=depth + 1)
            below = domain.tree_height(task_id, lambda ids: self.store.children_of(org_id, ids)) \
                if task_id else 0
            domain.check_parent(task_id or "", parent_id, ancestors, below, depth)
            yield

    def recount(self, org_id: str, *parent_ids: str | None) -> None:
        """Refresh the progress of these parents (after a child was added, moved,
        done or undone, deleted)."""
        changed = False
        for parent_id in dict.fromkeys(p for p in parent_ids if p):
            changed |= self.store.set_progress(org_id, parent_id) is not None
        if changed:
            self.invalidate(org_id)

    def detach_deleted(self, task: dict) -> None:
        """A deleted task blocks nobody, its subtasks become top-level, and its
        parent's progress drops it."""
        org_id = task["org_id"]
        self.store.drop_links_of(org_id, task["_id"])
        if self.store.orphan_children(org_id, task["_id"]):
            self.invalidate(org_id)
        self.recount(org_id, task.get("parent_id"))

    # --- blocks / blocked_by ----------------------------------------------------------
    def link(self, task: dict, link_type: str, other_id: str, user_id: str) -> bool:
        org_id = task["org_id"]
        blocker, blocked = domain.edge(task["_id"], link_type, other_id)
        with self.graph_lock(org_id):
            self.other_task(org_id, other_id, "task_id")
            domain.check_new_edge(blocker, blocked, lambda ids: self.store.blocked_of(org_id, ids))
            return self.store.add_link(org_id, blocker, blocked, user_id)

    def link_briefs(self, task: dict) -> tuple[list[dict], list[dict]]:
        """``(tasks it blocks, tasks blocking it)`` as briefs, live ones only."""
        blocks, blocked_by = self.store.links_of(task["org_id"], task["_id"])
        found = self.store.briefs(task["org_id"], [*blocks, *blocked_by])
        return [found[i] for i in blocks if i in found], [found[i] for i in blocked_by if i in found]

    def require_unblocked(self, task: dict, new_status: str) -> None:
        if new_status == "done":  # the tasks blocking it only (one read of the links)
            blocked_by = self.store.links_of(task["org_id"], task["_id"], blocks=False)[1]
            found = self.store.briefs(task["org_id"], blocked_by)
            domain.require_unblocked(new_status, [found[i] for i in blocked_by if i in found])

    def unlink(self, task: dict, other_id: str) -> dict:
        doc = self.store.remove_link_between(task["org_id"], task["_id"], str(other_id))
        if doc is None:
            raise NotFound("No link between these tasks.")
        return doc

    # --- saved views ------------------------------------------------------------------
    def view_args(self, user_id: str, org_id: str, membership: dict, args: dict) -> dict:
        """The list arguments of a request (the list and the CSV export): with ``view``,
        that view's filter under the explicit parameters (404 for a view the caller
        cannot see)."""
        if not args.get("view"):
            return {k: v for k, v in args.items() if k != "view"}
        view = self.visible_view(membership, user_id, org_id, args["view"])
        return domain.applied_view_args(view["filter"], args)

    def visible_view(self, membership: dict, user_id: str, org_id: str, view_id: str) -> dict:
        view = self.store.view(org_id, view_id)
        if view is None or not domain.can_see_view(view, user_id, membership):
            raise NotFound("View not found.")
        return view

    def changeable_view(self, membership: dict, user_id: str, org_id: str, view_id: str) -> dict:
        view = self.visible_view(membership, user_id, org_id, view_id)
        if not domain.can_change_view(view, user_id, membership):
            raise Forbidden("Only its owner, or a manager for a shared view, may change a view.")
        return view

    def check_view_team(self, membership: dict, org_id: str, visibility: str,
                        team_id: str | None) -> None:
        domain.require_view_share(membership, visibility, team_id)
        if visibility == "team":
            self.body_team(org_id, team_id)  # 422 for a team the org does not have

    # --- CSV import -------------------------------------------------------------------
    def check_import(self, org_id: str, rows: list[tuple[int, dict]]) -> tuple[list[dict], list[dict]]:
        """A file's rows through the create schema, their teams and assignees looked up
        (one ``get_employees`` for the file): ``(valid, errors)``, errors by line."""
        valid, errors = schemas.check_rows(rows)
        teams = {t: self.team(org_id, t) for t in {v["task"]["team_id"] for v in valid} - {None}}
        people = {e["employee_id"]: e for e in self.employees_in(
            org_id, sorted({v["task"]["assignee_id"] for v in valid} - {None}))}
        valid, refused = domain.refer_rows(valid, teams, people)
        return valid, sorted(errors + refused, key=lambda e: e["row"])

    def start_import(self, me: dict, user_id: str, org_id: str, rows: list, valid: list[dict],
                     errors: list[dict]) -> dict:
        """The import's bulk job, its refused rows its first errors, and its valid rows
        as ``task.import.created`` chunks; the job's answer."""
        parts = domain.chunks(valid, int(self.config.get("TASK_BULK_CHUNK", 500)))
        at = utcnow()
        job: dict = {"_id": new_id(), "org_id": org_id, "kind": "import",
                     "status": "running" if parts else "done", "total": len(rows), "done": 0,
                     "failed": len(errors), "errors": errors[:domain.MAX_ROW_ERRORS],
                     "chunks_total": len(parts), "chunks_done": [], "created_by_user_id": user_id,
                     "created_at": at, "finished_at": None if parts else at}
        self.store.create_job(job)
        for n, part in enumerate(parts):
            self.events.publish("task.import.created", {
                "org_id": org_id, "job_id": job["_id"], "chunk": n,
                "rows": [{"row": p["row"], "task": schemas.TaskCreateSchema().dump(p["task"])}
                         for p in part],
                "creator_id": me.get("employee_id"), "creator_user_id": user_id},
                org_id=org_id, actor_id=user_id)
        return {**schemas.dump_job(job), "status_url": self.job_url(org_id, job["_id"])}

    def import_chunk(self, d: dict) -> None:
        """One ``task.import.created`` chunk (its event's data): its tasks created once,
        announced, the chunk counted once."""
        items = [{"row": r["row"], "task": schemas.TaskCreateSchema().load(r["task"])} for r in d["rows"]]
        people = {e["employee_id"]: e for e in self.employees_in(
            d["org_id"], sorted({i["task"]["assignee_id"] for i in items} - {None}))}
        # the teams were checked when the file came; an assignee who left the org since is
        # this row's error now
        items, errors = domain.refer_rows(items, {i["task"]["team_id"]: {} for i in items}, people)
        creator = {"employee_id": d.get("creator_id"), "user_id": d["creator_user_id"]}
        docs = self.store.with_created_history([
            self.store.task_document(d["org_id"], i["task"], creator,
                                     people.get(i["task"].get("assignee_id") or ""),
                                     job_id=d["job_id"],
                                     task_id=domain.import_task_id(d["job_id"], i["row"]))
            for i in items], d["creator_user_id"])
        self.store.insert_many_idempotent(docs)  # the tasks with their history, one write
        for doc in docs:  # every one, new or not: derived event ids make a re-run safe
            self.publish_created(doc, d["creator_user_id"], derived_ids=True)
        self.store.record_chunk(d["job_id"], d["chunk"], len(docs), errors)

    # --- recurring tasks (the rules: task_svc/recurrence.py) ------------------------------
    def org_timezone(self, org_id: str) -> str:
        org = self.redis.cache.get_or_set(
            f"tasks:orgtz:{org_id}", lambda: self.organizations.get_org(org_id),
            ttl=ORG_ZONE_TTL, cache_none=False) or {}
        return (org.get("settings") or {}).get("timezone") or "UTC"

    def recurrence_changes(self, org_id: str, task: dict | None, changes: dict, task_id: str) -> dict:
        """The stored ``recurrence`` that ``changes`` (a create or a PATCH) implies:
        ``{"recurrence": ...}`` to write with them, or {} when the rule is untouched."""
        old = (task or {}).get("recurrence")
        due = changes["due_at"] if "due_at" in changes else (task or {}).get("due_at")
        if "recurrence" not in changes:
            if old and due is None:
                raise ValidationFailed("A recurring task needs a due date.", errors={
                    "due_at": ["Stop the recurrence (recurrence: null) to clear the due date."]})
            return {}
        if changes["recurrence"] is None:
            return {"recurrence": None}
        tz = self.org_timezone(org_id)
        return {"recurrence": recurrence.start(changes["recurrence"]["rule"], due, tz, old, task_id)}

    def spawn_next(self, task: dict) -> dict | None:
        """Create the occurrence after ``task`` unless it exists: the new task, or None
        (not recurring, the series ended, or another worker created it). Its id is
        derived from the series and index, so replicas (or the sweep racing a
        completion) insert the same document and the second insert is a no-op."""
        r = task.get("recurrence")
        if not r or r.get("next_task_id"):
            return None
        due = recurrence.next_occurrence(r, utcnow())
        if due is None:
            return None
        nid = recurrence.occurrence_id(r["series_id"], r["index"] + 1)
        assignee = None
        if task.get("assignee_id"):  # still here? else the next one waits unassigned
            found = self.employees.get_employees(task["org_id"], [task["assignee_id"]])
            assignee = found[0] if found and found[0].get("status") == "active" else None
        data = {k: task.get(k) for k in ("title", "description", "team_id", "priority", "labels")}
        creator = {"employee_id": task.get("creator_id"), "user_id": task.get("creator_user_id")}
        doc = {**self.store.task_document(task["org_id"], {**data, "due_at": due}, creator, assignee,
                                          task_id=nid),
               "recurrence": recurrence.successor(task, due),
               "estimate_minutes": task.get("estimate_minutes")}
        if not self.store.insert_many_idempotent(self.store.with_created_history([doc], None)):
            return None  # a replica (or the sweep) made it first
        self.store.update(task["org_id"], task["_id"], {"recurrence.next_task_id": nid})
        self.store.add_history(task, [("recurrence.next_task_id", None, nid)], None, "recurred")
        self.publish_created(doc, None)
        self.invalidate(task["org_id"], task.get("assignee_user_id"))
        self.publish(doc, "task.recurred", {
            "previous_task_id": task["_id"], "series_id": r["series_id"], "index": r["index"] + 1,
            "due_at": schemas.iso(due), "rule": r["rule"]}, None,
            event_id=f"task.recurred:{nid}")
        return doc

    # --- estimates and time tracking ------------------------------------------------------
    # a change publishes ``task.time.logged`` and bumps the org's version (invalidate),
    # so cached task lists show the new total
    def workable(self, membership: dict, org_id: str, task_id: str) -> dict:
        """The task, if the caller may log time on it (who may change it)."""
        task = self.task(org_id, task_id)
        domain.require_update(membership, task, self.team(org_id, task.get("team_id")))
        return task

    def log_time(self, task: dict, membership: dict, data: dict) -> dict:
        started_at = data["started_at"] or utcnow() - timedelta(minutes=data["minutes"])
        entry = self.store.entry_document(new_id(), task, membership, data["minutes"], started_at,
                                          data["note"], "logged")
        self.record_time(task, entry)
        return schemas.dump_entry(entry)

    def start_timer(self, task: dict, membership: dict) -> dict:
        timer = self.store.timer_document(task, membership)
        if not self.store.start_timer(timer):
            raise Conflict("Your timer on this task is running already; stop it first.")
        return schemas.dump_timer(timer)

    def stop_timer(self, task: dict, membership: dict) -> dict:
        timer = self.store.stop_timer(task["_id"], membership["user_id"])
        if timer is None:  # 403 for who may not work on it, else 409
            self.workable(membership, task["org_id"], task["_id"])
            raise Conflict("No timer of yours is running on this task.")
        # the timer is gone for everyone else: this stop alone writes its entry
        entry = self.store.entry_document(
            new_id(), task, membership, domain.timer_minutes(timer["started_at"], utcnow()),
            timer["started_at"], "", "timer")
        self.record_time(task, entry)
        return schemas.dump_entry(entry)

    def record_time(self, task: dict, entry: dict) -> None:
        if self.store.add_entry(entry):
            self.invalidate(task["org_id"], task.get("assignee_user_id"))
            self.publish(task, "task.time.logged", {
                "entry_id": entry["_id"], "employee_id": entry["employee_id"],
                "user_id": entry["user_id"], "team_id": entry["team_id"],
                "minutes": entry["minutes"], "source": entry["source"]}, entry["user_id"],
                event_id=f"task.time.logged:{entry['_id']}")

    def time_totals(self, org_id: str, team_id: str | None, assignee_id: str | None) -> dict:
        raw = self.store.time_totals(org_id, team_id, assignee_id)
        return domain.fold_totals(raw["groups"], raw["estimate"])
