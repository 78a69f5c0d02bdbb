"""The queries of subtasks, dependencies and watchers: a mixin of
:class:`task_svc.store.TaskStore` (the only place that knows their documents).

* tasks: ``parent_id`` (a task of the same org, or None), ``subtasks``
  ``{total, done}`` (recounted from the children), ``watcher_user_ids``.
* links: one document per ``blocks`` edge, ``_id`` ``{blocker}>{blocked}``
  (``task_svc.links.edge_id``): both directions are answered from it.
"""
from __future__ import annotations

from pymongo import ASCENDING, IndexModel, ReturnDocument

from shared.mongo import id_slices, utcnow
from task_svc import links

A = ASCENDING
# tasks: the children of a parent (subtask lists, progress, the subtree walk)
TASK_INDEXES = [IndexModel([("org_id", A), ("parent_id", A), ("deleted", A)], name="org_parent")]
LINK_INDEXES = [
    IndexModel([("org_id", A), ("blocker_id", A)], name="links_blocker"),
    IndexModel([("org_id", A), ("blocked_id", A)], name="links_blocked"),
]
BRIEF = {"_id": 1, "title": 1, "status": 1, "deleted": 1, "parent_id": 1}
MAX_LINKS = 500  # links of one task an answer lists


class LinkStore:
    db: object  # BaseStore's database
    tasks: object

    # --- parents and subtasks -------------------------------------------------
    def briefs(self, org_id: str, ids: list[str]) -> dict[str, dict]:
        """``{id: {_id, title, status, parent_id}}`` of the org's live tasks among ``ids``."""
        return {d["_id"]: d for part in id_slices(list(ids)) for d in self.tasks.find(
            {"org_id": org_id, "_id": {"$in": part}, "deleted": False}, BRIEF)}

    def ancestors(self, org_id: str, task_id: str, limit: int) -> list[str]:
        """The chain above ``task_id``, nearest first, at most ``limit`` long."""
        chain: list[str] = []
        current = self.tasks.find_one({"_id": task_id, "org_id": org_id}, {"parent_id": 1})
        while current and current.get("parent_id") and len(chain) < limit:
            chain.append(current["parent_id"])
            current = self.tasks.find_one({"_id": current["parent_id"], "org_id": org_id},
                                          {"parent_id": 1})
        return chain

    def children_of(self, org_id: str, parent_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {p: [] for p in parent_ids}
        for part in id_slices(list(parent_ids)):
            for d in self.tasks.find({"org_id": org_id, "parent_id": {"$in": part}, "deleted": False},
                                     {"_id": 1, "parent_id": 1}):
                out[d["parent_id"]].append(d["_id"])
        return out

    def subtasks(self, org_id: str, parent_id: str, limit: int, after: str | None) -> list[dict]:
        query: dict = {"org_id": org_id, "parent_id": parent_id, "deleted": False}
        if after:
            query["_id"] = {"$gt": after}
        return list(self.tasks.find(query).sort("_id", A).limit(limit))

    def set_progress(self, org_id: str, parent_id: str) -> dict | None:
        """Recount the parent's ``subtasks`` from its children; a write (and a new
        version, so ETags change) only when the figures moved."""
        children = self.tasks.find({"org_id": org_id, "parent_id": parent_id, "deleted": False},
                                   {"status": 1, "deleted": 1})
        figures = links.progress(children)
        return self.tasks.find_one_and_update(
            {"_id": parent_id, "org_id": org_id, "deleted": False, "subtasks": {"$ne": figures}},
            {"$set": {"subtasks": figures, "updated_at": utcnow()}, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER)

    def orphan_children(self, org_id: str, parent_id: str) -> list[str]:
        """A deleted task's subtasks become top-level tasks."""
        ids = [d["_id"] for d in self.tasks.find(
            {"org_id": org_id, "parent_id": parent_id, "deleted": False}, {"_id": 1})]
        if ids:
            self.tasks.update_many({"org_id": org_id, "parent_id": parent_id},
                                   {"$set": {"parent_id": None, "updated_at": utcnow()},
                                    "$inc": {"version": 1}})
        return ids

    # --- blocks / blocked_by -------------------------------------------------------
    def add_link(self, org_id: str, blocker: str, blocked: str, user_id: str) -> bool:
        """True if the edge is new (a repeat is the same document)."""
        result = self.db.links.update_one(
            {"_id": links.edge_id(blocker, blocked)},
            {"$setOnInsert": {"org_id": org_id, "blocker_id": blocker, "blocked_id": blocked,
                              "created_by_user_id": user_id, "created_at": utcnow()}},
            upsert=True)
        return result.upserted_id is not None

    def remove_link_between(self, org_id: str, a: str, b: str) -> dict | None:
        """The edge between ``a`` and ``b`` in whichever direction, removed once."""
        for blocker, blocked in ((a, b), (b, a)):
            doc = self.db.links.find_one_and_delete({"_id": links.edge_id(blocker, blocked),
                                                     "org_id": org_id})
            if doc:
                return doc
        return None

    def links_of(self, org_id: str, task_id: str) -> tuple[list[str], list[str]]:
        """``(ids it blocks, ids blocking it)``."""
        blocks = [d["blocked_id"] for d in self.db.links.find(
            {"org_id": org_id, "blocker_id": task_id}).sort("_id", A).limit(MAX_LINKS)]
        blocked_by = [d["blocker_id"] for d in self.db.links.find(
            {"org_id": org_id, "blocked_id": task_id}).sort("_id", A).limit(MAX_LINKS)]
        return blocks, blocked_by

    def blocked_of(self, org_id: str, blockers: list[str]) -> dict[str, list[str]]:
        """The ``blocks`` edges out of each of ``blockers`` (the cycle walk)."""
        out: dict[str, list[str]] = {b: [] for b in blockers}
        for part in id_slices(list(blockers)):
            for d in self.db.links.find({"org_id": org_id, "blocker_id": {"$in": part}},
                                        {"blocker_id": 1, "blocked_id": 1}):
                out[d["blocker_id"]].append(d["blocked_id"])
        return out

    def drop_links_of(self, org_id: str, task_id: str) -> None:
        self.db.links.delete_many({"org_id": org_id, "blocker_id": task_id})
        self.db.links.delete_many({"org_id": org_id, "blocked_id": task_id})

    # --- watchers ------------------------------------------------------------------
    def add_watchers(self, org_id: str, task_id: str, user_ids: list[str],
                     seed: list[str] | None = None) -> None:
        """Add to the task's watchers. ``seed``: the set a task stored before watchers
        existed starts from (its creator, assignee, commenters), so nobody drops out."""
        users = [u for u in user_ids if u]
        if not users:
            return
        query = {"_id": task_id, "org_id": org_id}
        if seed is not None:
            self.tasks.update_one({**query, "watcher_user_ids": {"$exists": False}},
                                  {"$set": {"watcher_user_ids": sorted(set(seed))}})
        self.tasks.update_one(query, {"$addToSet": {"watcher_user_ids": {"$each": users}}})

    def remove_watcher(self, org_id: str, task_id: str, user_id: str,
                       seed: list[str] | None = None) -> None:
        query = {"_id": task_id, "org_id": org_id}
        if seed is not None:
            self.tasks.update_one({**query, "watcher_user_ids": {"$exists": False}},
                                  {"$set": {"watcher_user_ids": sorted(set(seed))}})
        self.tasks.update_one(query, {"$pull": {"watcher_user_ids": user_id}})

    def forget_watcher(self, org_id: str, user_id: str) -> None:
        """Someone left the org: they watch none of its tasks."""
        self.tasks.update_many({"org_id": org_id, "watcher_user_ids": user_id},
                               {"$pull": {"watcher_user_ids": user_id}})
