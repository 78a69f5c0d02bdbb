"""The search service's rules and its index interface: query planning (typos,
the word being typed), the kinds a role may read, what events mean, the
tantivy backend on a real index in a temporary directory (tenancy filter,
typo tolerance, prefixes, ranking, deletes), the OpenSearch backend's
requests, and the flows that keep the index in step with the owners."""
from __future__ import annotations

import json

import pytest
from nameko.testing.services import worker_factory

from search_svc import domain, flows
from search_svc.index import Index, OpenSearchIndex, SearchDoc, SearchQuery, TantivyIndex, open_index
from search_svc.service import CONSUMED, SearchService
from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.event_catalogue import BY_NAME
from shared.pagination import encode_cursor


# --- query planning -------------------------------------------------------------------------
def test_every_word_must_match_and_only_the_last_is_a_prefix_while_typing():
    plan = domain.plan_query("Billing pipel")
    assert [(t.text, t.prefix) for t in plan.terms] == [("billing", False), ("pipel", True)]
    assert not any(t.prefix for t in domain.plan_query("billing pipeline ").terms)


def test_typos_are_forgiven_by_word_length():
    assert [domain.typo_distance(w) for w in ("bug", "bugs", "pipeline", "deployment")] == [0, 1, 2, 2]
    assert [t.distance for t in domain.plan_query("fix the pipline deploymnt").terms] == [0, 0, 1, 2]


def test_words_are_split_like_tantivys_default_tokenizer_and_bounded():
    assert domain.words("Ada.Lovelace@example.com  job_title Ünïcode") == [
        "ada", "lovelace", "example", "com", "job", "title", "ünïcode"]
    assert len(domain.plan_query(" ".join(f"w{i}" for i in range(30))).terms) == domain.MAX_TERMS
    assert domain.plan_query("?!* ()").terms == ()


def test_suggest_plans_the_last_word_as_a_prefix_with_at_most_one_typo():
    plan = domain.plan_suggest("refactor bil")
    assert [(t.text, t.prefix, t.distance) for t in plan.terms] == [
        ("refactor", False, 2), ("bil", True, 0)]
    assert domain.plan_suggest("pipelin").terms[0].distance == 1


# --- who sees what --------------------------------------------------------------------------
def test_types_are_what_was_asked_for_less_what_the_role_may_not_read():
    assert domain.readable_types("member", None) == domain.TYPES
    assert domain.readable_types("member", ["team", "task"]) == ("team", "task")
    assert domain.readable_types("nobody", None) == ()
    assert domain.parse_types("task, team,task") == ["task", "team"]
    with pytest.raises(ValidationFailed) as bad:
        domain.parse_types("task,secrets")
    assert "types" in bad.value.errors


def test_a_cursor_is_an_offset_within_bounds():
    assert domain.page_offset(None) == 0 and domain.page_offset("40") == 40
    for bad in ("abc", "-1", str(domain.MAX_OFFSET + 1)):
        with pytest.raises(ValidationFailed):
            domain.page_offset(bad)


# --- what events mean -----------------------------------------------------------------------
def _event(event_type, **data):
    return {"event_id": "e1", "event_type": event_type, "org_id": data.get("org_id"), "data": data}


def test_events_name_what_to_refresh_from_its_owner_or_to_delete():
    assert domain.change_for(_event("task.updated", org_id="o", task_id="t")) == \
        domain.Change("o", "task", ("t",))
    assert domain.change_for(_event("task.deleted", org_id="o", task_id="t")).delete
    assert domain.change_for(_event("employee.removed", org_id="o", employee_id="e")) == \
        domain.Change("o", "employee", ("e",), delete=True)
    assert domain.change_for(_event("team.created", org_id="o", team_id="x")).ids == ("x",)
    bulk = _event("task.bulk.assigned", org_id="o", job_id="j", chunk=0,
                  tasks=[{"task_id": "a"}, {"task_id": "b"}])
    assert domain.change_for(bulk) == domain.Change("o", "task", ("a", "b"))
    assert domain.change_for(_event("organization.deleted", org_id="o")).clear_org
    assert domain.change_for(_event("task.updated", task_id="t")) is None  # no org: nothing


def test_a_batch_merges_neighbours_that_do_the_same_and_keeps_the_order():
    C = domain.Change
    changes = [C("o", "task", ("a",)), C("o", "task", ("b", "a")), C("o", "task", ("a",), delete=True),
               C("o", "task", ("c",)), C("p", "task", ("c",)), C("o", "team", ("x",)),
               C("o", clear_org=True), C("o", clear_org=True), C("o", "task", ("d",))]
    assert domain.merged(changes) == [
        C("o", "task", ("a", "b")), C("o", "task", ("a",), delete=True), C("o", "task", ("c",)),
        C("p", "task", ("c",)), C("o", "team", ("x",)), C("o", clear_org=True),
        C("o", "task", ("d",))]
    assert domain.merged([]) == []


def test_every_consumed_event_is_in_the_catalogue_with_the_ids_the_rules_read():
    for source, types in CONSUMED.items():
        for event_type in types:
            spec = BY_NAME[event_type]
            assert spec.producer == source, event_type
            fields = set(spec.schema().fields)
            assert "org_id" in fields, event_type
            kind = event_type.split(".", 1)[0]
            if kind in domain.ID_FIELD and event_type != "task.bulk.assigned":
                assert domain.ID_FIELD[kind] in fields, event_type


# --- the tantivy backend, on disk ---------------------------------------------------------
def _task(org, id_, title, body="", comments=""):
    return SearchDoc(org, "task", id_, title, body, comments, {"status": "todo"})


def _find(index, org, q, types=domain.TYPES, limit=10, offset=0):
    hits, total = index.search(SearchQuery(org, domain.plan_query(q), tuple(types), limit, offset))
    return [h.id for h in hits], total


@pytest.fixture
def tantivy_index(tmp_path):
    index = TantivyIndex(str(tmp_path / "index"))
    index.upsert([
        _task("o1", "t1", "Refactor the billing pipeline", "invoices are slow"),
        _task("o1", "t2", "Team offsite", "agenda", comments="remember the billing numbers"),
        _task("o1", "t3", "Write onboarding guide"),
        SearchDoc("o1", "employee", "e1", "Ada Lovelace", "ada@example.com Analyst", "",
                  {"job_title": "Analyst"}),
        SearchDoc("o1", "team", "g1", "Platform", "Owns the deploy pipeline"),
        _task("o2", "x1", "Billing for the other org", "pipeline"),
    ])
    return index


def test_results_come_only_from_the_callers_org(tantivy_index):
    ids, total = _find(tantivy_index, "o1", "billing")
    assert "x1" not in ids and total == len(ids) == 2
    assert _find(tantivy_index, "o2", "billing")[0] == ["x1"]
    assert _find(tantivy_index, "o3", "billing") == ([], 0)


def test_a_title_ranks_above_a_comment(tantivy_index):
    assert _find(tantivy_index, "o1", "billing")[0] == ["t1", "t2"]


def test_typos_and_prefixes_find_the_word(tantivy_index):
    assert _find(tantivy_index, "o1", "biling")[0][0] == "t1"          # one letter missing
    assert _find(tantivy_index, "o1", "onbaording")[0] == ["t3"]       # two swapped
    assert _find(tantivy_index, "o1", "onbo")[0] == ["t3"]             # as typed so far
    assert _find(tantivy_index, "o1", "lovelace")[0] == ["e1"]
    assert _find(tantivy_index, "o1", "xyzzy") == ([], 0)
    assert _find(tantivy_index, "o1", "onbo ")[0] == []                # a finished word: no prefix


def test_every_word_must_match_and_types_filter(tantivy_index):
    assert _find(tantivy_index, "o1", "billing invoices")[0] == ["t1"]
    assert sorted(_find(tantivy_index, "o1", "pipeline")[0]) == ["g1", "t1"]
    assert _find(tantivy_index, "o1", "pipeline", types=["team"])[0] == ["g1"]
    assert _find(tantivy_index, "o1", "pipeline", types=[]) == ([], 0)


def test_upserts_replace_deletes_remove_and_clear_takes_one_org(tantivy_index):
    tantivy_index.upsert([_task("o1", "t1", "Renamed: invoices")] * 2)  # a replayed event
    assert _find(tantivy_index, "o1", "refactor") == ([], 0)
    assert _find(tantivy_index, "o1", "renamed") == (["t1"], 1)
    tantivy_index.delete("o1", "task", ["t1", "nope"])
    assert _find(tantivy_index, "o1", "renamed") == ([], 0)
    tantivy_index.clear("o1")
    assert tantivy_index.count("o1") == 0 and tantivy_index.count("o2") == 1


def test_pages_follow_the_ranking(tmp_path):
    index = TantivyIndex(str(tmp_path / "pages"))
    index.upsert([_task("o", f"t{i}", f"report {i}") for i in range(25)])
    first, total = _find(index, "o", "report", limit=10)
    second, _ = _find(index, "o", "report", limit=10, offset=10)
    third, _ = _find(index, "o", "report", limit=10, offset=20)
    assert total == 25 and len(set(first + second + third)) == 25 and len(third) == 5


def test_suggestions_are_titles_beginning_with_what_was_typed(tantivy_index):
    hits = tantivy_index.suggest("o1", "bil", domain.TYPES, 5)
    assert [h.id for h in hits] == ["t1"]  # a comment's word is no suggestion
    assert [h.id for h in tantivy_index.suggest("o1", "refactor bi", domain.TYPES, 5)] == ["t1"]
    assert [h.title for h in tantivy_index.suggest("o1", "ad", ("employee",), 5)] == ["Ada Lovelace"]
    assert tantivy_index.suggest("o1", "ad", ("task",), 5) == []
    assert tantivy_index.suggest("o2", "refa", domain.TYPES, 5) == []


def test_the_index_survives_a_restart(tmp_path):
    path = str(tmp_path / "disk")
    first = TantivyIndex(path)
    first.upsert([_task("o", "t", "Durable thing")])
    del first
    assert _find(TantivyIndex(path), "o", "durable")[0] == ["t"]


def test_both_backends_implement_the_interface():
    members = [name for name in dir(Index) if not name.startswith("_")]
    assert set(members) >= {"upsert", "delete", "search", "suggest", "clear"}
    for backend in (TantivyIndex, OpenSearchIndex):
        assert all(callable(getattr(backend, name, None)) for name in members), backend


def test_config_selects_the_backend(tmp_path):
    assert isinstance(open_index({"SEARCH_INDEX_DIR": str(tmp_path / "x")}), TantivyIndex)
    made = open_index({"SEARCH_BACKEND": "opensearch", "SEARCH_OPENSEARCH_URL": "http://os:9200/"})
    assert isinstance(made, OpenSearchIndex) and made.url == "http://os:9200"
    for bad in ({"SEARCH_BACKEND": "opensearch"}, {"SEARCH_BACKEND": "solr"}):
        with pytest.raises(ValueError):
            open_index(bad)


# --- the OpenSearch backend's requests ---------------------------------------------------
class FakeResponse:
    def __init__(self, status=200, body=None):
        self.status_code, self._body = status, body if body is not None else {}
        self.text = json.dumps(self._body)
        self.content = self.text.encode()

    def json(self):
        return self._body


class FakeSession:
    """Records requests; answers HEAD with 404 (no index yet) and searches with ``hits``."""

    def __init__(self, hits=None):
        self.calls: list[tuple] = []
        self.hits = hits or []

    def request(self, method, url, timeout=None, **kwargs):
        self.calls.append((method, url, kwargs))
        if method == "HEAD":
            return FakeResponse(404)
        if url.endswith("/_search"):
            return FakeResponse(200, {"hits": {"total": {"value": len(self.hits)}, "hits": self.hits}})
        if "_bulk" in url:
            return FakeResponse(200, {"errors": False, "items": [{"index": {"status": 201}}]})
        return FakeResponse(200, {"acknowledged": True})


def test_opensearch_creates_its_index_then_bulk_upserts_and_deletes_by_key():
    http = FakeSession()
    index = OpenSearchIndex("http://os:9200", "wf", session=http)
    index.upsert([_task("o1", "t1", "Billing")])
    index.delete("o1", "task", ["t1"])
    (head, create, bulk, delete) = http.calls
    assert head[:2] == ("HEAD", "http://os:9200/wf")
    assert create[:2] == ("PUT", "http://os:9200/wf")
    assert create[2]["json"]["mappings"]["properties"]["org_id"] == {"type": "keyword"}
    assert bulk[1] == "http://os:9200/wf/_bulk?refresh=wait_for"
    assert bulk[2]["headers"]["Content-Type"] == "application/x-ndjson"
    action, source = [json.loads(line) for line in bulk[2]["data"].splitlines()]
    assert action == {"index": {"_id": "o1:task:t1"}}
    assert source["org_id"] == "o1" and source["title"] == "Billing" and source["type"] == "task"
    assert [json.loads(x) for x in delete[2]["data"].splitlines()] == [{"delete": {"_id": "o1:task:t1"}}]


def test_opensearch_queries_filter_by_org_and_type_and_carry_fuzziness_and_prefix():
    http = FakeSession(hits=[{"_score": 3.2, "_source": {"type": "task", "id": "t1",
                                                          "title": "Billing", "meta": {"status": "todo"}}}])
    index = OpenSearchIndex("http://os:9200", "wf", session=http)
    hits, total = index.search(SearchQuery("o1", domain.plan_query("biling pip"), ("task", "team"), 20, 40))
    assert total == 1 and hits[0].id == "t1" and hits[0].score == 3.2
    body = http.calls[-1][2]["json"]
    assert body["from"] == 40 and body["size"] == 20
    assert body["query"]["bool"]["filter"] == [{"term": {"org_id": "o1"}},
                                               {"terms": {"type": ["task", "team"]}}]
    first, last = body["query"]["bool"]["must"]
    assert any(c.get("multi_match", {}).get("fuzziness") == 1 for c in first["bool"]["should"])
    assert not any("prefix" in c for c in first["bool"]["should"])
    assert any(c.get("prefix", {}).get("title", {}).get("value") == "pip" for c in last["bool"]["should"])
    index.clear("o1")
    assert http.calls[-1][2]["json"] == {"query": {"term": {"org_id": "o1"}}}
    assert "_delete_by_query" in http.calls[-1][1]


def test_opensearch_refuses_silently_failing_writes():
    class Failing(FakeSession):
        def request(self, method, url, timeout=None, **kwargs):
            if "_bulk" in url:
                self.calls.append((method, url, kwargs))
                return FakeResponse(200, {"errors": True, "items": [{"index": {"status": 400}}]})
            return super().request(method, url, timeout=timeout, **kwargs)

    with pytest.raises(RuntimeError):
        OpenSearchIndex("http://os:9200", session=Failing()).upsert([_task("o", "t", "x")])


# --- flows: the index follows the owners ----------------------------------------------------
def _owner(records: dict):
    """An owner's search_documents over ``records`` ({id: record}), paged by id."""
    def search_documents(org_id, ids=None, after=None, limit=200):
        mine = {k: v for k, v in sorted(records.items()) if org_id is None or v["org_id"] == org_id}
        if ids is not None:
            return {"items": [mine[i] for i in ids if i in mine], "next_after": None}
        keys = [k for k in mine if after is None or k > after][:limit]
        return {"items": [mine[k] for k in keys],
                "next_after": keys[-1] if len(keys) == limit else None}
    return search_documents


def test_refresh_indexes_what_the_owner_has_and_drops_what_it_no_longer_has(tmp_path):
    index = TantivyIndex(str(tmp_path / "f"))
    tasks = {"t1": {"task_id": "t1", "org_id": "o", "title": "Quarterly report",
                    "description": "numbers", "comments": ["ship it"], "status": "todo"}}
    owners = {"task": _owner(tasks)}
    flows.apply(index, owners, domain.Change("o", "task", ("t1",)))
    assert _find(index, "o", "ship")[0] == ["t1"]
    del tasks["t1"]  # deleted at the owner; a late or replayed event arrives
    flows.apply(index, owners, domain.Change("o", "task", ("t1",)))
    assert _find(index, "o", "quarterly") == ([], 0)


def test_rebuild_pages_through_every_owner_and_forgets_what_they_lost(tmp_path):
    index = TantivyIndex(str(tmp_path / "r"))
    index.upsert([_task("o", "gone", "Stale leftover")])
    owners = {
        "task": _owner({f"t{i:03}": {"task_id": f"t{i:03}", "org_id": "o", "title": f"report {i}"}
                        for i in range(7)}),
        "employee": _owner({"e1": {"employee_id": "e1", "org_id": "o", "name": "Ada",
                                   "email": "ada@example.com", "job_title": "Analyst"},
                            "e2": {"employee_id": "e2", "org_id": "p", "name": "Bob"}}),
        "team": _owner({}),
    }
    assert flows.rebuild(index, owners, "o", page=3) == {"task": 7, "employee": 1, "team": 0}
    assert _find(index, "o", "stale") == ([], 0)
    assert _find(index, "o", "report")[1] == 7 and _find(index, "o", "analyst")[0] == ["e1"]
    assert index.count("p") == 0
    assert flows.rebuild(index, owners, None, page=2)["employee"] == 2


# --- the service's entrypoints ----------------------------------------------------------------
def _service(role="member", active=True):
    service = worker_factory(SearchService)
    service.redis.cache.get.return_value = None  # no cached membership
    service.employees.get_membership.return_value = (
        {"org_id": "o", "user_id": "u", "employee_id": "e", "role": role,
         "status": "active" if active else "removed", "teams": {}})
    service.index.search.return_value = ([], 0)
    return service


def test_search_checks_membership_then_asks_the_index_for_the_readable_kinds():
    service = _service()
    page = service.search("u", "o", {"q": "billing", "types": "task", "cursor": encode_cursor("20")})
    query = service.index.search.call_args[0][0]
    assert (query.org_id, query.types, query.offset, query.limit) == ("o", ("task",), 20, 20)
    assert page == {"items": [], "total": 0, "next_cursor": None}
    with pytest.raises(NotFound):
        _service(active=False).search("u", "o", {"q": "billing"})
    with pytest.raises(Forbidden):
        _service(role="guest").search("u", "o", {"q": "billing", "types": "task"})


def test_bad_search_input_is_a_422_and_nothing_is_asked():
    import marshmallow

    service = _service()
    for args in ({"q": "x" * 201}, {"q": ["a"]}, {"q": "a", "limit": 0}, {"q": "a", "limit": 101},
                 {"q": "a", "extra": 1}):
        with pytest.raises(marshmallow.ValidationError):
            service.search("u", "o", args)
    for args in ({"q": "a", "types": "nope"}, {"q": "a", "cursor": "!!"}):
        with pytest.raises(ValidationFailed):
            service.search("u", "o", args)
    assert not service.index.search.called
    # no words (none yet, or only punctuation): an empty page, not an error
    assert service.search("u", "o", {})["items"] == []
