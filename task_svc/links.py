"""Rules of subtasks, dependencies and watchers, with no I/O (kept beside
``domain.py`` so the task rules stay in one short module each).

* A task may have a parent in its org: no cycles, and at most
  ``TASK_SUBTASK_DEPTH`` levels of subtasks below a top-level task.
* ``A blocks B`` is one edge (``B`` is ``blocked_by`` ``A``); the edges of an org
  form no cycle, and a task cannot be done while a task blocking it is open.
* Watchers: who hears of a task's changes; the creator, assignee and
  commenters are added on their own.

The graph is walked by the caller's ``expand`` function (a frontier of ids in,
their neighbours out: one query per level), so these rules are unit-tested with
a dict and run against the store with ``$in`` queries.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from shared.errors import Conflict, ValidationFailed

LINK_TYPES = ("blocks", "blocked_by")
DEFAULT_DEPTH = 3
MAX_WALK = 10_000  # nodes a cycle or subtree walk visits before it gives up (a 409)

Expand = Callable[[list[str]], dict[str, list[str]]]


def edge(task_id: str, link_type: str, other_id: str) -> tuple[str, str]:
    """``(blocker, blocked)`` of a link as the task ``task_id`` names it."""
    if task_id == other_id:
        raise ValidationFailed("A task cannot block itself.",
                               errors={"task_id": ["Another task of this organization."]})
    return (task_id, other_id) if link_type == "blocks" else (other_id, task_id)


def edge_id(blocker: str, blocked: str) -> str:
    """One document per edge, whichever side named it: a repeat is the same edge."""
    return f"{blocker}>{blocked}"


def path(start: str, goal: str, expand: Expand, limit: int = MAX_WALK) -> list[str] | None:
    """The ids from ``start`` to ``goal`` following ``expand`` (breadth first), or None."""
    came_from: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        if goal in came_from:
            break
        nxt: list[str] = []
        for node, neighbours in expand(frontier).items():
            for n in neighbours:
                if n not in came_from:
                    came_from[n] = node
                    nxt.append(n)
        if len(came_from) > limit:
            raise Conflict("The task graph is too large to check; remove some links first.")
        frontier = nxt
    if goal not in came_from:
        return None
    out, node = [], goal
    while node is not None:
        out.append(node)
        node = came_from[node]
    return out[::-1]


def check_new_edge(blocker: str, blocked: str, expand_blocks: Expand) -> None:
    """409 naming the cycle if ``blocker blocks blocked`` would close one: a path
    ``blocked -> ... -> blocker`` along existing ``blocks`` edges."""
    cycle = path(blocked, blocker, expand_blocks)
    if cycle is not None:
        raise Conflict("That link would make a cycle of blocking tasks.",
                       cycle=[blocker, *cycle])


def height(root: str, expand_children: Expand, limit: int = MAX_WALK) -> int:
    """Levels of subtasks below ``root`` (0: none)."""
    levels, frontier, seen = 0, [root], {root}
    while True:
        children = [c for kids in expand_children(frontier).values() for c in kids if c not in seen]
        if not children:
            return levels
        seen.update(children)
        if len(seen) > limit:
            raise Conflict("The subtask tree is too large to move.")
        levels, frontier = levels + 1, children


def check_parent(task_id: str, parent_id: str, ancestors: list[str], subtree_height: int,
                 max_depth: int) -> None:
    """Whether ``parent_id`` may become the parent of ``task_id``.

    ``ancestors``: the parent's ancestors, nearest first (its chain to the top).
    A task is its own parent, or the parent is below it: 422 / 409 (a cycle).
    The deepest subtask would end up more than ``max_depth`` levels down: 409."""
    if parent_id == task_id:
        raise ValidationFailed("A task cannot be its own parent.",
                               errors={"parent_id": ["Another task of this organization."]})
    if task_id in ancestors:
        chain = [parent_id, *ancestors[:ancestors.index(task_id) + 1]]
        raise Conflict("The parent is a subtask of this task: that would make a cycle.",
                       cycle=chain)
    depth = len(ancestors) + 1 + subtree_height
    if depth > max_depth:
        raise Conflict(f"Subtasks may go {max_depth} levels deep; this would make {depth}.",
                       max_depth=max_depth, depth=depth)


def open_blockers(blockers: Iterable[dict]) -> list[dict]:
    """The blockers that keep a task from being done: live ones not done."""
    return [b for b in blockers if not b.get("deleted") and b.get("status") != "done"]


def require_unblocked(new_status: str, blockers: list[dict]) -> None:
    """409 naming the open blockers when a blocked task would become done."""
    if new_status != "done":
        return
    still_open = open_blockers(blockers)
    if still_open:
        names = ", ".join(b["title"] for b in still_open[:5])
        raise Conflict(f"Blocked by open tasks: {names}.",
                       blocked_by=[{"task_id": b["_id"], "title": b["title"], "status": b["status"]}
                                   for b in still_open])


def progress(children: Iterable[dict]) -> dict:
    """``{total, done}`` of a parent's live subtasks."""
    live = [c for c in children if not c.get("deleted")]
    return {"total": len(live), "done": sum(1 for c in live if c.get("status") == "done")}


def initial_watchers(creator_user_id: str | None, assignee_user_id: str | None) -> list[str]:
    return sorted({u for u in (creator_user_id, assignee_user_id) if u})


def watchers_of(task: dict, commenters: Iterable[str] = ()) -> set[str]:
    """Who watches a task. Tasks stored before watchers existed have no set: their
    creator, assignee and commenters, as they were notified then."""
    if "watcher_user_ids" in task:
        return set(task["watcher_user_ids"] or [])
    return {u for u in (task.get("creator_user_id"), task.get("assignee_user_id"), *commenters) if u}
