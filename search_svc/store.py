"""The search service's MongoDB database: only what every service keeps (the
handled-events ledger and the outbox, shared.mongo.BaseStore). The index itself
is not in MongoDB: it is tantivy's files under SEARCH_INDEX_DIR, or an
OpenSearch index (search_svc.index), derived from the owners and rebuildable."""
from __future__ import annotations

from shared.mongo import BaseStore


class SearchStore(BaseStore):
    INDEXES: dict = {}
