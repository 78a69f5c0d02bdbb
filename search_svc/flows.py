"""Keeping the index in step with the owners: what an event changes, and a
rebuild. The owners are asked by RPC (``search_documents`` of tasks,
employees and teams); ``owners`` maps a type to that call, so these flows do
not know about nameko."""
from __future__ import annotations

import logging
from typing import Callable

from search_svc import domain
from search_svc.index import Index, SearchDoc

log = logging.getLogger(__name__)

# (org_id or None, ids or None, after, limit) -> {"items": [...], "next_after": id | None}
Owner = Callable[..., dict]
REBUILD_PAGE = 500


def documents(type_: str, items: list[dict]) -> list[SearchDoc]:
    return [SearchDoc(**domain.FIELDS[type_](item)) for item in items]


def refresh(index: Index, owners: dict[str, Owner], org_id: str, type_: str,
            ids: list[str]) -> int:
    """Index what the owner holds now of ``ids``; drop those it no longer has."""
    found: list[dict] = []
    for start in range(0, len(ids), 1000):
        found += owners[type_](org_id, ids[start:start + 1000])["items"]
    found = [item for item in found if item.get("org_id") == org_id]
    index.upsert(documents(type_, found))
    present = {item[domain.ID_FIELD[type_]] for item in found}
    index.delete(org_id, type_, [i for i in ids if i not in present])
    return len(found)


def apply(index: Index, owners: dict[str, Owner], change: domain.Change) -> None:
    if change.clear_org:
        index.clear(change.org_id)
    elif change.delete:
        index.delete(change.org_id, change.type, list(change.ids))
    elif change.ids:
        refresh(index, owners, change.org_id, change.type, list(change.ids))


def rebuild(index: Index, owners: dict[str, Owner], org_id: str | None = None,
            page: int = REBUILD_PAGE, clear: bool = True) -> dict[str, int]:
    """Re-index ``org_id`` (None: every org) from the owners, page by page.
    What the index held of it is dropped first, so nothing deleted survives; a
    search in between sees the part indexed so far, and events arriving meanwhile
    are applied as usual (they read the owners' current state too). ``clear=False``
    (an index found empty) keeps what events indexed since it was looked at."""
    if clear:
        index.clear(org_id)
    counts = {}
    for type_ in domain.TYPES:
        counts[type_], after = 0, None
        while True:
            answer = owners[type_](org_id, None, after, page)
            index.upsert(documents(type_, answer["items"]))
            counts[type_] += len(answer["items"])
            after = answer.get("next_after")
            if not after:
                break
        log.info("search rebuild %s: %d %ss", org_id or "(all orgs)", counts[type_], type_)
    return counts
