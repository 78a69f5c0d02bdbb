"""Rules of subtasks, dependencies and watchers (task_svc/domain.py)."""
import pytest

from notify_svc import domain as notify
from shared.errors import Conflict, ValidationFailed
from task_svc import domain


def expand(graph: dict[str, list[str]]):
    calls = []

    def fetch(ids):
        calls.append(list(ids))
        return {i: graph.get(i, []) for i in ids}
    fetch.calls = calls
    return fetch


# --- cycles ----------------------------------------------------------------------
def test_a_link_that_closes_a_cycle_is_refused_naming_it():
    blocks = {"a": ["b"], "b": ["c"]}          # a blocks b blocks c
    with pytest.raises(Conflict) as exc:
        domain.check_new_edge("c", "a", expand(blocks))   # c blocks a: a -> b -> c -> a
    assert exc.value.extra["cycle"] == ["c", "a", "b", "c"]
    domain.check_new_edge("a", "c", expand(blocks))       # a shortcut is no cycle
    domain.check_new_edge("d", "a", expand(blocks))


def test_the_walk_reads_one_level_at_a_time_and_stops_at_the_goal():
    blocks = {"s": ["x", "y"], "x": ["goal"], "y": ["z"], "z": ["w"]}
    fetch = expand(blocks)
    assert domain.graph_path("s", "goal", fetch) == ["s", "x", "goal"]
    assert fetch.calls == [["s"], ["x", "y"]]
    assert domain.graph_path("s", "nowhere", expand(blocks)) is None


def test_a_graph_that_is_too_large_to_walk_is_a_conflict_not_a_hang():
    wide = {"r": [f"n{i}" for i in range(50)]}
    with pytest.raises(Conflict):
        domain.graph_path("r", "missing", expand(wide), limit=10)


def test_a_task_cannot_block_itself_and_either_side_names_the_same_edge():
    with pytest.raises(ValidationFailed) as exc:
        domain.edge("a", "blocks", "a")
    assert "task_id" in exc.value.errors
    assert domain.edge("a", "blocks", "b") == ("a", "b")
    assert domain.edge("b", "blocked_by", "a") == ("a", "b")
    assert domain.edge_id(*domain.edge("a", "blocks", "b")) == \
        domain.edge_id(*domain.edge("b", "blocked_by", "a"))


# --- parents and depth --------------------------------------------------------------
def test_a_parent_below_the_task_is_a_cycle():
    # t -> c1 -> c2; making c2 the parent of t: c2's ancestors are c1, t
    with pytest.raises(Conflict) as exc:
        domain.check_parent("t", "c2", ["c1", "t"], subtree_height=2, max_depth=10)
    assert exc.value.extra["cycle"] == ["c2", "c1", "t"]
    with pytest.raises(ValidationFailed) as own:
        domain.check_parent("t", "t", [], 0, 3)
    assert "parent_id" in own.value.errors


def test_the_depth_limit_counts_the_parents_chain_and_the_subtree_moved():
    domain.check_parent("t", "p", [], subtree_height=0, max_depth=1)      # level 1: ok
    domain.check_parent("t", "p", ["g"], subtree_height=1, max_depth=3)   # its child at level 3
    with pytest.raises(Conflict) as exc:
        domain.check_parent("t", "p", ["g"], subtree_height=2, max_depth=3)
    assert exc.value.extra == {"max_depth": 3, "depth": 4}
    with pytest.raises(Conflict):
        domain.check_parent("t", "p", [], subtree_height=0, max_depth=0)  # no subtasks at all


def test_height_is_the_levels_below_a_task():
    tree = {"r": ["a", "b"], "a": ["a1"], "a1": ["a2"]}
    assert domain.tree_height("r", expand(tree)) == 3
    assert domain.tree_height("b", expand(tree)) == 0


# --- done while blocked -------------------------------------------------------------
def test_a_task_cannot_be_done_while_an_open_task_blocks_it():
    blockers = [{"_id": "x", "title": "Freeze API", "status": "in_progress"},
                {"_id": "y", "title": "Done already", "status": "done"},
                {"_id": "z", "title": "Gone", "status": "todo", "deleted": True}]
    with pytest.raises(Conflict) as exc:
        domain.require_unblocked("done", blockers)
    assert exc.value.extra["blocked_by"] == [{"task_id": "x", "title": "Freeze API",
                                              "status": "in_progress"}]
    assert "Freeze API" in exc.value.detail
    domain.require_unblocked("in_progress", blockers)     # only done is blocked
    domain.require_unblocked("done", blockers[1:])


def test_progress_counts_live_subtasks_and_the_done_ones():
    assert domain.subtask_progress([{"status": "done"}, {"status": "todo"},
                           {"status": "done", "deleted": True}]) == {"total": 2, "done": 1}
    assert domain.subtask_progress([]) == {"total": 0, "done": 0}


# --- watchers -------------------------------------------------------------------------
def test_watchers_are_the_stored_set_or_for_older_tasks_the_people_around_it():
    assert domain.watchers_of({"watcher_user_ids": ["u1"], "creator_user_id": "c"}) == {"u1"}
    assert domain.watchers_of({"watcher_user_ids": [], "creator_user_id": "c"}) == set()
    assert domain.watchers_of({"creator_user_id": "c", "assignee_user_id": None}, ["k"]) == {"c", "k"}
    assert domain.initial_watchers("c", "a") == ["a", "c"]
    assert domain.initial_watchers("c", "c") == ["c"]


def _status_event(**data):
    return {"event_type": "task.status.changed", "event_id": "e1",
            "data": {"org_id": "o", "task_id": "t", "title": "T", "old_status": "todo",
                     "new_status": "in_progress", **data}}


def test_watchers_hear_of_a_status_change_save_who_made_it():
    plans = notify.plans_for(_status_event(watcher_user_ids=["a", "b", "me"],
                                           changed_by_user_id="me"), "https://app")
    assert [(p.kind, p.recipient.user_id) for p in plans] == [("task_status", "a"), ("task_status", "b")]
    assert plans[0].link == "https://app/orgs/o/tasks/t"


def test_done_is_told_to_the_creator_once_as_task_completed():
    done = _status_event(new_status="done", old_status="in_progress", creator_user_id="c",
                         watcher_user_ids=["a", "c"], changed_by_user_id="a")
    assert [p.recipient.user_id for p in notify.plans_for(done)] == []
    done["data"]["watcher_user_ids"] = ["a", "b", "c"]
    assert [p.recipient.user_id for p in notify.plans_for(done)] == ["b"]


def test_who_unwatched_hears_of_no_comment_even_as_assignee():
    event = {"event_type": "task.comment.added", "event_id": "e2",
             "data": {"org_id": "o", "task_id": "t", "author_user_id": "w",
                      "assignee_user_id": "asg", "watcher_user_ids": ["x"],
                      "mentioned_user_ids": []}}
    assert [p.recipient.user_id for p in notify.plans_for(event)] == ["x"]
    del event["data"]["watcher_user_ids"]       # a producer that sent no watchers
    assert [p.recipient.user_id for p in notify.plans_for(event)] == ["asg"]
