"""The search service: entrypoints only. Ranked full-text search over an
org's tasks, employees and teams, with as-you-type suggestions and typo
tolerance. The index (``search_svc.index``: tantivy on disk by default,
OpenSearch by config) is fed by the owners' events; each event makes the
service ask the owner for the current state (``flows``), so replays,
duplicates and events out of order end where the owner is. A rebuild
re-indexes an org (or everything) from the owners."""
from __future__ import annotations

import logging

from search_svc import domain, flows, schemas
from search_svc.index import SearchIndex, SearchQuery
from search_svc.store import SearchStore
from shared import service as base
from shared.errors import Forbidden
from shared.events import handle_each
from shared.mongo import Mongo
from shared.pagination import decode_cursor
from shared.rpc import ServiceRpc, rpc
from shared.tenancy import require_member
from shared.timers import periodic

log = logging.getLogger(__name__)


class SearchService(base.ServiceBase):
    name = "search"

    store = Mongo(SearchStore)
    index = SearchIndex()
    employees = ServiceRpc("employees", methods=("get_membership", "search_documents"))
    tasks = ServiceRpc("tasks", methods=("search_documents",))
    teams = ServiceRpc("teams", methods=("search_documents",))

    # --- queries (members of the org) ------------------------------------------
    @rpc
    def search(self, user_id: str, org_id: str, args: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id)
        args = schemas.SearchArgsSchema().load(args)
        types = self._types(me, args["types"])
        offset = domain.page_offset(decode_cursor(args["cursor"]))
        hits, total = self.index.search(SearchQuery(org_id, domain.plan_query(args["q"]), types,
                                                    args["limit"], offset))
        return schemas.dump_page(hits, total, offset)

    @rpc
    def suggest(self, user_id: str, org_id: str, args: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id)
        args = schemas.SuggestArgsSchema().load(args)
        return schemas.dump_suggestions(self.index.suggest(org_id, args["q"],
                                                           self._types(me, args["types"]),
                                                           args["limit"]))

    # --- operators (ops.cli search-rebuild) --------------------------------------
    @rpc
    def rebuild(self, org_id: str | None = None) -> dict:
        """Re-index ``org_id`` (None: every org) from the owners."""
        return {"org_id": org_id, "indexed": flows.rebuild(self.index, self._owners(), org_id)}

    @rpc
    def index_stats(self, org_id: str | None = None) -> dict:
        return {"org_id": org_id, "documents": self.index.count(org_id)}

    @periodic(interval=300, config_key="SEARCH_EMPTY_CHECK_SECONDS", eager=True)
    def rebuild_if_empty(self) -> None:
        """A new or wiped index (a fresh volume) fills itself from the owners."""
        if str(self.config.get("SEARCH_REBUILD_WHEN_EMPTY", "1")) in ("0", "false", ""):
            return
        if self.index.count() == 0:
            log.info("search index is empty: rebuilding it from the owners")
            flows.rebuild(self.index, self._owners(), None, clear=False)

    # --- events consumed: each names what to refresh from its owner ---------------
    def _on_event(self, event: dict) -> None:
        self._on_events([event])

    def _on_events(self, events: list[dict]) -> None:
        """The events that arrived together, in order (shared.events' batches)."""
        changes = [c for c in map(domain.change_for, events) if c is not None]
        for change in domain.merged(changes):
            flows.apply(self.index, self._owners(), change)

    # --- helpers -------------------------------------------------------------------
    def _types(self, membership: dict, text: str | None) -> tuple[str, ...]:
        requested = domain.parse_types(text)
        types = domain.readable_types(membership["role"], requested)
        if requested and not types:
            raise Forbidden(f"Your role ({membership['role']}) may not read "
                            f"{', '.join(requested)}.")
        return types

    def _owners(self) -> dict:
        return {"task": self.tasks.search_documents, "employee": self.employees.search_documents,
                "team": self.teams.search_documents}


BATCH = 50  # events handled together (one owner call and one index commit per run of them)
CONSUMED = {
    "tasks": ("task.created", "task.updated", "task.assigned", "task.reassigned",
              "task.status.changed", "task.comment.added", "task.bulk.assigned", "task.deleted"),
    "employees": ("employee.added", "employee.updated", "employee.role.changed",
                  "employee.status.changed", "employee.removed"),
    "teams": ("team.created", "team.updated", "team.deleted"),
    "organizations": ("organization.deleted",),
}


# in batches: a burst of comments and status changes is one owner call and one commit;
# a bulk chunk (hundreds of tasks, one owner call of its own) is refreshed by itself.
# Idempotent (no ledger): every event refreshes documents from their owner.
handle_each(SearchService, [(source, event_type) for source, types in CONSUMED.items()
                            for event_type in types if event_type != "task.bulk.assigned"],
            "_on_events", "Refresh the index after", batch=BATCH, idempotent=True)
handle_each(SearchService, [("tasks", "task.bulk.assigned")], "_on_event",
            "Refresh the index after", idempotent=True)
