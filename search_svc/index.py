"""The search index, behind one small interface (:class:`Index`): ``upsert``,
``delete``, ``search``, ``suggest``, ``clear``.

Two backends:

* :class:`TantivyIndex` (the default): the ``tantivy`` package, an embedded
  Rust search library, on disk under ``SEARCH_INDEX_DIR``. One writer per
  process (tantivy locks the directory: a second process on the same
  directory fails at start, which is what we want; docs/search.md, Replicas).
* :class:`OpenSearchIndex` (``SEARCH_BACKEND=opensearch``): an OpenSearch or
  Elasticsearch cluster at ``SEARCH_OPENSEARCH_URL``, spoken to with
  ``requests`` over the documented REST API (index, ``_bulk``,
  ``_delete_by_query``, ``_search``), no client library.

Both take the same :class:`SearchDoc` and :class:`SearchQuery` and answer
the same :class:`Hit`; the query plan (terms, fuzziness, the prefix term) is
``search_svc.domain``'s, so the two rank alike in what they match.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Protocol

import requests
from eventlet import patcher, tpool
from nameko.extensions import DependencyProvider

from search_svc import domain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchDoc:
    """One searchable thing of an org: a task, an employee or a team."""

    org_id: str
    type: str                 # domain.TYPES
    id: str                   # the owner's id (task_id, employee_id, team_id)
    title: str                # task title, employee name, team name
    body: str = ""            # description; email and job title; team description
    comments: str = ""        # tasks: their comments' text
    meta: dict = field(default_factory=dict)  # shown with a hit (status, job title...)

    @property
    def key(self) -> str:
        return domain.doc_key(self.org_id, self.type, self.id)


@dataclass(frozen=True)
class SearchQuery:
    org_id: str
    plan: domain.QueryPlan
    types: tuple[str, ...]    # the kinds the caller may read and asked for
    limit: int
    offset: int = 0


@dataclass(frozen=True)
class Hit:
    type: str
    id: str
    title: str
    score: float
    meta: dict


class Index(Protocol):
    def upsert(self, docs: list[SearchDoc]) -> None: ...

    def delete(self, org_id: str, type_: str, ids: list[str]) -> None: ...

    def search(self, query: SearchQuery) -> tuple[list[Hit], int]:
        """The hits of one page, and how many match in all."""
        ...

    def suggest(self, org_id: str, prefix: str, types: tuple[str, ...],
                limit: int) -> list[Hit]: ...

    def clear(self, org_id: str | None = None) -> None:
        """Everything of ``org_id`` (None: the whole index)."""
        ...

    def count(self, org_id: str | None = None) -> int: ...


def offload(fn, *args, **kwargs):
    """Run a call into tantivy in a native thread when the process is green (a
    service): tantivy releases the GIL, so searches run in parallel and the event
    loop keeps serving meanwhile. Elsewhere (the bench, scripts) call it directly."""
    if patcher.is_monkey_patched("thread"):
        return tpool.execute(fn, *args, **kwargs)
    return fn(*args, **kwargs)


# --- tantivy ------------------------------------------------------------------------------
class TantivyIndex:
    """An on-disk tantivy index. Writes are committed before they return (a
    handler that returned has made its change durable), under one lock: one
    writer per process. Every commit reloads the searcher. Commits and searches
    run off the event loop (:func:`offload`); a searcher is a snapshot, so a
    search never sees half a commit."""

    def __init__(self, path: str | None, heap_bytes: int = 50_000_000, threads: int = 1,
                 read_only: bool = False):
        import tantivy  # only the tantivy backend needs it

        self._t = tantivy
        self.schema = self._schema(tantivy)
        if path:
            os.makedirs(path, exist_ok=True)
        self.index = tantivy.Index(self.schema, path=path or None)
        # read_only: a searcher beside the process that writes (bench/search.py)
        self.writer = None if read_only else self.index.writer(heap_size=heap_bytes,
                                                               num_threads=threads)
        self.lock = threading.RLock()

    @staticmethod
    def _schema(tantivy):
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("key", stored=True, tokenizer_name="raw")
        builder.add_text_field("org_id", stored=True, tokenizer_name="raw")
        builder.add_text_field("type", stored=True, tokenizer_name="raw")
        builder.add_text_field("id", stored=True, tokenizer_name="raw")
        builder.add_text_field("title", stored=True)   # "default": words, lower-cased
        builder.add_text_field("body")
        builder.add_text_field("comments")
        builder.add_json_field("meta", stored=True, tokenizer_name="raw")
        return builder.build()

    def _document(self, doc: SearchDoc):
        return self._t.Document(key=doc.key, org_id=doc.org_id, type=doc.type, id=doc.id,
                                title=doc.title, body=doc.body, comments=doc.comments,
                                meta=doc.meta)

    def _writable(self):
        """The writer; a read-only index (a searcher beside the writing process) has none."""
        if self.writer is None:
            raise RuntimeError("this index was opened read-only")
        return self.writer

    def _commit(self) -> None:
        offload(self._writable().commit)
        self.index.reload()

    def upsert(self, docs: list[SearchDoc]) -> None:
        if not docs:
            return
        with self.lock:
            writer = self._writable()
            for doc in docs:
                writer.delete_documents_by_term("key", doc.key)
                writer.add_document(self._document(doc))
            self._commit()

    def delete(self, org_id: str, type_: str, ids: list[str]) -> None:
        if not ids:
            return
        with self.lock:
            writer = self._writable()
            for id_ in ids:
                writer.delete_documents_by_term("key", domain.doc_key(org_id, type_, id_))
            self._commit()

    def clear(self, org_id: str | None = None) -> None:
        with self.lock:
            if org_id is None:
                self._writable().delete_all_documents()
            else:
                self._writable().delete_documents_by_term("org_id", org_id)
            self._commit()

    def count(self, org_id: str | None = None) -> int:
        searcher = self.index.searcher()
        if org_id is None:
            return searcher.num_docs
        found = searcher.search(self._term("org_id", org_id), limit=1, count=True)
        return found.count  # type: ignore[attr-defined]  # at run time; tantivy's stub omits it

    # query building: the plan of domain.plan_query, in tantivy queries
    def _term(self, field_name: str, value: str):
        return self._t.Query.term_query(self.schema, field_name, value)

    def _scope(self, org_id: str, types: tuple[str, ...]) -> list:
        Occur = self._t.Occur
        return [(Occur.Must, self._term("org_id", org_id)),
                (Occur.Must, self._t.Query.term_set_query(self.schema, "type", list(types)))]

    def _term_query(self, term: domain.PlannedTerm):
        """One word of the query: exact (best), fuzzy within its edit distance, and
        for the last word as typed, any word it begins; in any field, boosted by field."""
        Q, Occur = self._t.Query, self._t.Occur
        alternatives = []
        for field_name, boost in domain.FIELD_BOOSTS.items():
            alternatives.append(Q.boost_query(Q.term_query(self.schema, field_name, term.text),
                                              boost * domain.EXACT_BOOST))
            if term.distance:
                alternatives.append(Q.boost_query(Q.fuzzy_term_query(
                    self.schema, field_name, term.text, distance=term.distance), boost))
            if term.prefix:
                # exact prefix only: a prefix with a typo matches so many words that it
                # doubles the cost of a query (bench/search.py); suggest allows it on titles
                alternatives.append(Q.boost_query(Q.fuzzy_term_query(
                    self.schema, field_name, term.text, distance=0, prefix=True),
                    boost * domain.PREFIX_BOOST))
        return Q.boolean_query([(Occur.Should, q) for q in alternatives])

    def _query(self, org_id: str, plan: domain.QueryPlan, types: tuple[str, ...]):
        Occur = self._t.Occur
        clauses = self._scope(org_id, types)
        clauses += [(Occur.Must, self._term_query(t)) for t in plan.terms]
        return self._t.Query.boolean_query(clauses)

    def _hits(self, searcher, found) -> list[Hit]:
        hits = []
        for score, address in found:
            doc = searcher.doc(address)
            hits.append(Hit(type=doc.get_first("type"), id=doc.get_first("id"),
                            title=doc.get_first("title") or "", score=round(float(score), 4),
                            meta=doc.get_first("meta") or {}))
        return hits

    def search(self, query: SearchQuery) -> tuple[list[Hit], int]:
        if not query.plan.terms or not query.types:
            return [], 0
        searcher = self.index.searcher()
        built = self._query(query.org_id, query.plan, query.types)

        def run():
            result = searcher.search(built, limit=query.limit, offset=query.offset, count=True)
            return self._hits(searcher, result.hits), int(result.count or 0)

        return offload(run)

    def suggest(self, org_id: str, prefix: str, types: tuple[str, ...], limit: int) -> list[Hit]:
        """Titles (task titles, names, team names) whose words begin with what was typed."""
        plan = domain.plan_suggest(prefix)
        if not plan.terms or not types:
            return []
        Q, Occur = self._t.Query, self._t.Occur
        clauses = self._scope(org_id, types)
        for term in plan.terms:
            options = [Q.boost_query(Q.term_query(self.schema, "title", term.text), 2.0)]
            if term.prefix:
                options.append(Q.fuzzy_term_query(self.schema, "title", term.text, distance=0,
                                                  prefix=True))
                if term.distance:
                    options.append(Q.boost_query(Q.fuzzy_term_query(
                        self.schema, "title", term.text, distance=1, prefix=True), 0.5))
            elif term.distance:
                options.append(Q.boost_query(Q.fuzzy_term_query(
                    self.schema, "title", term.text, distance=term.distance), 0.5))
            clauses.append((Occur.Must, Q.boolean_query([(Occur.Should, q) for q in options])))
        searcher, built = self.index.searcher(), Q.boolean_query(clauses)
        return offload(lambda: self._hits(searcher, searcher.search(built, limit=limit,
                                                                    count=False).hits))


# --- OpenSearch / Elasticsearch ----------------------------------------------------------
class OpenSearchIndex:
    """The same interface on an OpenSearch (or Elasticsearch 7+/8) cluster, over
    its REST API with ``requests``. One index (``SEARCH_OPENSEARCH_INDEX``)
    holds every org; every query filters by ``org_id`` and ``type``. Writes
    use ``refresh=wait_for`` so a handler that returned has made them visible."""

    MAPPINGS = {"properties": {
        "org_id": {"type": "keyword"}, "type": {"type": "keyword"}, "id": {"type": "keyword"},
        "title": {"type": "text"}, "body": {"type": "text"}, "comments": {"type": "text"},
        "meta": {"type": "object", "enabled": False}}}

    def __init__(self, url: str, index: str = "workforce-search", session=None,
                 timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.index = index
        self.http = session or requests.Session()
        self.timeout = timeout
        self._ensured = False

    def _call(self, method: str, path: str, **kwargs):
        response = self.http.request(method, f"{self.url}/{self.index}{path}",
                                     timeout=self.timeout, **kwargs)
        if response.status_code >= 400 and not (method == "DELETE" and response.status_code == 404):
            raise RuntimeError(f"OpenSearch {method} {path}: {response.status_code} "
                               f"{response.text[:300]}")
        return response.json() if response.content else {}

    def ensure(self) -> None:
        """Create the index with its mappings if it is not there yet."""
        if self._ensured:
            return
        response = self.http.request("HEAD", f"{self.url}/{self.index}", timeout=self.timeout)
        if response.status_code == 404:
            self._call("PUT", "", json={"mappings": self.MAPPINGS})
        self._ensured = True

    @staticmethod
    def _source(doc: SearchDoc) -> dict:
        return {"org_id": doc.org_id, "type": doc.type, "id": doc.id, "title": doc.title,
                "body": doc.body, "comments": doc.comments, "meta": doc.meta}

    def _bulk(self, lines: list[dict]) -> None:
        body = "".join(json.dumps(line) + "\n" for line in lines)
        result = self._call("POST", "/_bulk?refresh=wait_for", data=body,
                            headers={"Content-Type": "application/x-ndjson"})
        failed = [item for item in result.get("items", [])
                  for op in item.values() if op.get("status", 200) >= 400 and op.get("status") != 404]
        if failed:
            raise RuntimeError(f"OpenSearch _bulk: {len(failed)} failed, first {failed[0]}")

    def upsert(self, docs: list[SearchDoc]) -> None:
        if not docs:
            return
        self.ensure()
        lines: list[dict] = []
        for doc in docs:
            lines += [{"index": {"_id": doc.key}}, self._source(doc)]
        self._bulk(lines)

    def delete(self, org_id: str, type_: str, ids: list[str]) -> None:
        if not ids:
            return
        self.ensure()
        self._bulk([{"delete": {"_id": domain.doc_key(org_id, type_, id_)}} for id_ in ids])

    def clear(self, org_id: str | None = None) -> None:
        self.ensure()
        query = {"match_all": {}} if org_id is None else {"term": {"org_id": org_id}}
        self._call("POST", "/_delete_by_query?refresh=true&conflicts=proceed",
                   json={"query": query})

    def count(self, org_id: str | None = None) -> int:
        self.ensure()
        query = {"match_all": {}} if org_id is None else {"term": {"org_id": org_id}}
        return int(self._call("POST", "/_count", json={"query": query}).get("count", 0))

    @staticmethod
    def _filters(org_id: str, types: tuple[str, ...]) -> list[dict]:
        return [{"term": {"org_id": org_id}}, {"terms": {"type": list(types)}}]

    @staticmethod
    def term_clause(term: domain.PlannedTerm) -> dict:
        fields_ = [f"{name}^{boost:g}" for name, boost in domain.FIELD_BOOSTS.items()]
        should: list[dict] = [{"multi_match": {"query": term.text, "fields": fields_,
                                               "boost": domain.EXACT_BOOST}}]
        if term.distance:
            should.append({"multi_match": {"query": term.text, "fields": fields_,
                                           "fuzziness": term.distance, "prefix_length": 0}})
        if term.prefix:
            should += [{"prefix": {name: {"value": term.text, "boost": boost * domain.PREFIX_BOOST}}}
                       for name, boost in domain.FIELD_BOOSTS.items()]
        return {"bool": {"should": should, "minimum_should_match": 1}}

    def search_body(self, query: SearchQuery) -> dict:
        return {"from": query.offset, "size": query.limit, "track_total_hits": True,
                "_source": ["type", "id", "title", "meta"],
                "query": {"bool": {"filter": self._filters(query.org_id, query.types),
                                   "must": [self.term_clause(t) for t in query.plan.terms]}}}

    def suggest_body(self, org_id: str, plan: domain.QueryPlan, types: tuple[str, ...],
                     limit: int) -> dict:
        must = []
        for term in plan.terms:
            should: list[dict] = [{"term": {"title": {"value": term.text, "boost": 2.0}}}]
            if term.prefix:
                should.append({"prefix": {"title": {"value": term.text}}})
            if term.distance:
                should.append({"fuzzy": {"title": {"value": term.text,
                                                   "fuzziness": term.distance, "boost": 0.5}}})
            must.append({"bool": {"should": should, "minimum_should_match": 1}})
        return {"size": limit, "_source": ["type", "id", "title", "meta"],
                "query": {"bool": {"filter": self._filters(org_id, types), "must": must}}}

    @staticmethod
    def _hits(result: dict) -> list[Hit]:
        return [Hit(type=h["_source"]["type"], id=h["_source"]["id"],
                    title=h["_source"].get("title", ""), score=round(float(h.get("_score") or 0), 4),
                    meta=h["_source"].get("meta") or {})
                for h in result.get("hits", {}).get("hits", [])]

    def search(self, query: SearchQuery) -> tuple[list[Hit], int]:
        if not query.plan.terms or not query.types:
            return [], 0
        self.ensure()
        result = self._call("POST", "/_search", json=self.search_body(query))
        total = result.get("hits", {}).get("total", 0)
        return self._hits(result), int(total["value"] if isinstance(total, dict) else total)

    def suggest(self, org_id: str, prefix: str, types: tuple[str, ...], limit: int) -> list[Hit]:
        plan = domain.plan_suggest(prefix)
        if not plan.terms or not types:
            return []
        self.ensure()
        return self._hits(self._call("POST", "/_search",
                                     json=self.suggest_body(org_id, plan, types, limit)))


def open_index(config: dict) -> Index:
    """The backend ``SEARCH_BACKEND`` names (``tantivy``, the default, or ``opensearch``)."""
    backend = str(config.get("SEARCH_BACKEND") or "tantivy").lower()
    if backend == "tantivy":
        return TantivyIndex(str(config.get("SEARCH_INDEX_DIR") or "var/search"),
                            heap_bytes=int(config.get("SEARCH_WRITER_HEAP_BYTES") or 50_000_000))
    if backend in ("opensearch", "elasticsearch"):
        url = config.get("SEARCH_OPENSEARCH_URL")
        if not url:
            raise ValueError("SEARCH_BACKEND=opensearch needs SEARCH_OPENSEARCH_URL")
        return OpenSearchIndex(str(url), str(config.get("SEARCH_OPENSEARCH_INDEX")
                                             or "workforce-search"))
    raise ValueError(f"SEARCH_BACKEND is tantivy or opensearch, not {backend!r}")


class SearchIndex(DependencyProvider):
    """The process's one index (one writer), opened at container start."""

    def setup(self) -> None:
        self.index = open_index(self.container.config)

    def get_dependency(self, worker_ctx) -> Index:
        return self.index
