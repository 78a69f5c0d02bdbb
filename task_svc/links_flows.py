"""The steps of subtasks, dependencies and watchers on one worker's
dependencies (a :class:`task_svc.flows.TaskFlows` with more): checking a
parent or a link under the org's graph lock, recounting a parent's progress,
what a deleted task leaves behind, who watches. Rules come from
:mod:`task_svc.links`; queries from the store (``task_svc/links_store.py``)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from shared.errors import NotFound, ValidationFailed
from task_svc import links
from task_svc.flows import TaskFlows

UNCHANGED = object()


class LinkFlows(TaskFlows):
    def max_depth(self) -> int:
        return int(self.config.get("TASK_SUBTASK_DEPTH", links.DEFAULT_DEPTH))

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
            depth = self.max_depth()
            ancestors = self.store.ancestors(org_id, parent_id, limit=depth + 1)
            below = links.height(task_id, lambda ids: self.store.children_of(org_id, ids)) \
                if task_id else 0
            links.check_parent(task_id or "", parent_id, ancestors, below, depth)
            yield

    def recount(self, org_id: str, *parent_ids: str | None) -> None:
        """Refresh the progress of these parents (after a child was added, moved,
        done or undone, deleted)."""
        changed = False
        for parent_id in dict.fromkeys(p for p in parent_ids if p):
            changed |= self.store.set_progress(org_id, parent_id) is not None
        if changed:
            self.invalidate(org_id)

    def deleted(self, task: dict) -> None:
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
        blocker, blocked = links.edge(task["_id"], link_type, other_id)
        with self.graph_lock(org_id):
            self.other_task(org_id, other_id, "task_id")
            links.check_new_edge(blocker, blocked, lambda ids: self.store.blocked_of(org_id, ids))
            return self.store.add_link(org_id, blocker, blocked, user_id)

    def links_answer(self, task: dict) -> tuple[list[dict], list[dict]]:
        """``(tasks it blocks, tasks blocking it)`` as briefs, live ones only."""
        blocks, blocked_by = self.store.links_of(task["org_id"], task["_id"])
        found = self.store.briefs(task["org_id"], [*blocks, *blocked_by])
        return [found[i] for i in blocks if i in found], [found[i] for i in blocked_by if i in found]

    def require_unblocked(self, task: dict, new_status: str) -> None:
        if new_status == "done":
            links.require_unblocked(new_status, self.links_answer(task)[1])

    def unlink(self, task: dict, other_id: str) -> dict:
        doc = self.store.remove_link_between(task["org_id"], task["_id"], str(other_id))
        if doc is None:
            raise NotFound("No link between these tasks.")
        return doc

    # --- watchers ------------------------------------------------------------------------
    def watch(self, task: dict, *user_ids: str | None) -> None:
        seed = None if "watcher_user_ids" in task else sorted(self.watchers(task))
        self.store.add_watchers(task["org_id"], task["_id"], [u for u in user_ids if u], seed)

    def unwatch(self, task: dict, user_id: str) -> None:
        seed = None if "watcher_user_ids" in task else sorted(self.watchers(task))
        self.store.remove_watcher(task["org_id"], task["_id"], user_id, seed)
