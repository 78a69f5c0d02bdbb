"""The OpenAPI document: valid 3.1, exactly the gateway's routes, and every
route's body and answer described; the described answers are what the code
returns. Expectations come from the route table (``api_entrypoints``), so a
new route without schemas fails here."""
import inspect
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from marshmallow import ValidationError
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from gateway_svc.http import API_PREFIX
from gateway_svc.openapi import api_entrypoints, build_spec, openapi_path
from gateway_svc.service import GatewayService
from task_svc import domain as task_domain
from task_svc import recurrence
from task_svc import schemas as task_schemas
from task_svc.store import TaskStore
from team_svc import schemas as team_schemas

SPEC = build_spec(GatewayService)
ROUTES = [(name, ep, method) for name, ep in api_entrypoints(GatewayService)
          for method in ep.method.split(",")]
WRITES = {"POST", "PUT", "PATCH"}
# POST actions that take no body: everything they need is in the path or the token
BODYLESS = {
    ("POST", "/auth/logout"): "revokes the session and token the request carries",
    ("POST", "/auth/email/resend"): "resends to the caller's address on file",
    ("POST", "/auth/mfa/setup"): "makes a new secret for the caller; nothing to send",
    ("POST", "/invitations/<token>/accept"): "the token in the path is the whole input",
    ("POST", "/notifications/<notification_id>/read"): "the id in the path is the whole input",
    ("POST", "/notifications/read-all"): "applies to every notification of the caller",
    ("POST", "/orgs/<org_id>/webhooks/<webhook_id>/rotate-secret"): "makes a new secret; nothing to send",
    ("POST", "/orgs/<org_id>/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver"):
        "the ids in the path are the whole input",
    ("PUT", "/orgs/<org_id>/tasks/<task_id>/watchers/me"): "the caller watches the task in the path",
    ("POST", "/orgs/<org_id>/tasks/<task_id>/time/start"): "the caller's timer on the task in the path",
    ("POST", "/orgs/<org_id>/tasks/<task_id>/time/stop"): "the caller's timer on the task in the path",
}
# a handler that calls one of these reads the request body
READS_BODY = re.compile(r"\b(read_json|json_object|uploaded_file|read_body)\(")


def _route(ep) -> str:
    return ep.url[len(API_PREFIX):]


def _op(ep, method) -> dict:
    return SPEC["paths"][openapi_path(ep.url)][method.lower()]


def _status(ep, method) -> int:
    return ep.doc["status"] or (201 if method == "POST" else 200)


def _reads_body(name) -> bool:
    return bool(READS_BODY.search(inspect.getsource(getattr(GatewayService, name))))


def test_spec_is_valid_openapi_3_1():
    assert SPEC["openapi"] == "3.1.0"
    validate(SPEC)


def test_every_route_has_a_spec_entry_and_every_entry_a_route():
    routes = {(openapi_path(ep.url), method.lower()) for _, ep, method in ROUTES}
    documented = {(path, method) for path, ops in SPEC["paths"].items() for method in ops}
    assert routes == documented
    assert ("/api/v1/health", "get") in documented


def test_authenticated_routes_declare_the_bearer_scheme_and_401():
    by_id = {op["operationId"]: op for ops in SPEC["paths"].values() for op in ops.values()}
    authed = {name for name, ep in api_entrypoints(GatewayService) if ep.auth}
    for name in authed:
        assert by_id[name]["security"] == [{"bearerAuth": []}] and "401" in by_id[name]["responses"]
    assert by_id["health"]["security"] == []


def test_every_route_that_takes_a_body_documents_its_schema():
    """POST/PUT/PATCH take a body unless allow-listed above; so does any route
    whose handler reads one (a DELETE with a body too)."""
    missing = []
    for name, ep, method in ROUTES:
        if (method, _route(ep)) in BODYLESS:
            continue
        if method in WRITES or _reads_body(name):
            content = _op(ep, method).get("requestBody", {}).get("content", {})
            if not content or not all("$ref" in media.get("schema", {})
                                      for media in content.values()):
                missing.append(f"{method} {_route(ep)}")
    assert not missing, f"no requestBody schema: {missing}"


def test_the_bodyless_allow_list_names_routes_that_read_no_body():
    """A stale entry (route gone, or now reading a body) would hide a missing schema."""
    table = {(method, _route(ep)): name for name, ep, method in ROUTES}
    for key in BODYLESS:
        assert key in table, f"{key} is not a route"
        assert not _reads_body(table[key]), f"{key} reads a body: document it"
        assert "requestBody" not in _op(*[(ep, m) for _, ep, m in ROUTES
                                          if (m, _route(ep)) == key][0])


def test_every_answer_but_204_documents_its_content():
    """JSON answers name a schema (``response=``); others their media type."""
    missing = []
    for name, ep, method in ROUTES:
        status = _status(ep, method)
        success = _op(ep, method)["responses"][str(status)]
        if status == 204:
            assert "content" not in success, name
            continue
        content = success.get("content") or {}
        json_media = content.get("application/json")
        if not content or (json_media is not None and "schema" not in json_media):
            missing.append(f"{method} {_route(ep)} {status}")
    assert not missing, f"no response schema: {missing}"


def test_post_routes_say_which_success_status_they_answer():
    """200 or 201 is the route's to say: a POST action answering 200 must not be documented 201."""
    assert not [f"POST {_route(ep)}" for _, ep, method in ROUTES
                if method == "POST" and ep.doc["status"] is None]


def test_uploads_are_multipart_and_downloads_binary():
    upload = SPEC["paths"]["/api/v1/orgs/{org_id}/tasks/{task_id}/attachments"]["post"]
    assert list(upload["requestBody"]["content"]) == ["multipart/form-data"]
    part = SPEC["components"]["schemas"]["AttachmentUpload"]
    assert part["properties"]["file"] == {"type": "string", "format": "binary"}
    assert part["required"] == ["file"]
    download = SPEC["paths"]["/api/v1/orgs/{org_id}/tasks/{task_id}/attachments/{attachment_id}"]
    content = download["get"]["responses"]["200"]["content"]
    assert all(media["schema"] == {"type": "string", "format": "binary"} for media in content.values())
    assert "Location" in download["get"]["responses"]["200"]["headers"]  # the S3 redirect
    assert {"413", "415"} <= set(upload["responses"])  # the size and type policy
    assert {"204", "403", "404"} <= set(download["delete"]["responses"])


def test_bulk_creation_answers_202_with_a_location_and_the_job():
    bulk = SPEC["paths"]["/api/v1/orgs/{org_id}/tasks/bulk"]["post"]["responses"]["202"]
    assert "Location" in bulk["headers"]
    assert bulk["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BulkJob"}


# --- the documented answers are what the code returns ----------------------------------
def _check(component: str, value) -> None:
    """``value`` conforms to the component, and names every property it documents."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": SPEC["components"]}
    OAS31Validator(schema).validate(value)
    assert set(value) == set(SPEC["components"]["schemas"][component]["properties"]), component


def _task(**extra) -> dict:
    data = task_schemas.TaskCreateSchema().load({"title": "Ship it", "due_at": "2030-01-01T00:00:00Z",
                                                 "labels": ["a"]})
    doc = TaskStore.task_document("org1", data, {"employee_id": "e1", "user_id": "u1"},
                                  {"employee_id": "e2", "user_id": "u2"}, job_id="j1")
    return {**doc, **extra}


@pytest.mark.parametrize("component,value", [
    ("TaskOut", task_schemas.dump_task(_task())),
    ("TaskOut", task_schemas.dump_task(_task(assignee_id=None, team_id=None, due_at=None,
                                             job_id=None, status="done",
                                             completed_at=datetime.now(timezone.utc)))),
    ("BulkJob", {**task_schemas.dump_job({
        "_id": "j1", "org_id": "o1", "status": "running", "total": 2, "done": 1, "failed": 1,
        "errors": [{"assignee_id": "x", "error": "not an active employee"}],
        "created_at": datetime.now(timezone.utc), "finished_at": None}), "status_url": "/x"}),
    ("CommentOut", task_schemas.dump_comment({
        "_id": "c1", "task_id": "t1", "author_user_id": "u1", "body": "hi", "mentions": ["e1"],
        "created_at": datetime.now(timezone.utc)})),
    ("AttachmentOut", task_schemas.dump_attachment({
        "_id": "a1", "task_id": "t1", "filename": "x.txt", "content_type": "text/plain", "size": 3,
        "uploaded_by_user_id": "u1", "created_at": datetime.now(timezone.utc)})),
    ("HistoryEntry", task_schemas.dump_history({
        "_id": "h1", "field": "due_at", "old": None,
        "new": datetime.now(timezone.utc) + timedelta(days=1), "actor": "u1", "reason": None,
        "at": datetime.now(timezone.utc)})),
    ("TaskStats", {**task_domain.fold_stats({
        "groups": [{"status": "done", "team": "t1", "assignee": "e1", "n": 2},
                   {"status": "todo", "team": None, "assignee": "e2", "n": 1}],
        "overdue": 1, "completed_this_week": 2}), "time": task_domain.fold_totals(
            [{"task": "k1", "employee": "e1", "team": "t1", "minutes": 30},
             {"task": "k2", "employee": "e2", "team": None, "minutes": 5}], 60)}),
    ("TaskOut", task_schemas.dump_task(_task(
        recurrence=recurrence.start("FREQ=WEEKLY;BYDAY=MO", datetime(2030, 1, 7, 9, tzinfo=timezone.utc),
                                    "Europe/London", None, "k1"),
        estimate_minutes=60, time_spent_minutes=20))),
    ("TimeEntryOut", task_schemas.dump_entry(TaskStore.entry_document(
        "x1", {"_id": "k1", "org_id": "o1", "team_id": None}, {"employee_id": "e1", "user_id": "u1"},
        30, datetime.now(timezone.utc), "", "logged"))),
    ("TimerOut", task_schemas.dump_timer(TaskStore.timer_document(
        {"_id": "k1", "org_id": "o1"}, {"employee_id": "e1", "user_id": "u1"}))),
    ("Team", team_schemas.dump_team({
        "_id": "t1", "org_id": "o1", "name": "Core", "description": "", "settings": {},
        "leader_id": "e1", "members": [{"employee_id": "e1", "user_id": "u1", "name": "Ann",
                                        "role": "leader", "added_at": datetime.now(timezone.utc)}],
        "member_ids": ["e1"], "permissions": {"e1": ["task.assign_team"]},
        "created_at": datetime.now(timezone.utc), "updated_at": datetime.now(timezone.utc)})),
], ids=lambda v: v if isinstance(v, str) else "")
def test_documented_shapes_match_what_the_services_return(component, value):
    _check(component, value)


# --- examples: every JSON body and 2xx JSON answer shows one, and the request ones load -----
def _resolve(schema: dict) -> dict:
    return SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]


def _example(schema: dict, where: str, missing: list):
    """The example Swagger UI shows for ``schema``: its own (a field's ``example``, or a
    schema's ``Meta.example``), else assembled from its properties' and items'.
    ``missing`` collects where neither exists."""
    if "example" in schema:
        return schema["example"]
    if "$ref" in schema:
        return _example(_resolve(schema), where, missing)
    for key in ("anyOf", "oneOf"):
        if key in schema:  # a nullable nested schema: the non-null variant
            variant = next(v for v in schema[key] if v.get("type") != "null")
            return _example(variant, where, missing)
    if "properties" in schema:
        return {name: _example(prop, f"{where}.{name}", missing)
                for name, prop in schema["properties"].items()}
    if "items" in schema:
        return [_example(schema["items"], f"{where}[]", missing)]
    missing.append(where)
    return None


def _json_media(content: dict) -> dict | None:
    return next((media for name, media in content.items()
                 if name == "application/json" or name.endswith("+json")), None)


BODY_OPS = [(name, ep, method) for name, ep, method in ROUTES
            if _json_media(_op(ep, method).get("requestBody", {}).get("content", {}))]
ANSWER_OPS = [(name, ep, method, status) for name, ep, method in ROUTES
              for status, answer in _op(ep, method)["responses"].items()
              if status.startswith("2") and "schema" in (_json_media(answer.get("content", {})) or {})]


def test_the_example_checks_cover_the_json_routes():
    assert len(BODY_OPS) >= 30 and len(ANSWER_OPS) >= 55
    assert {"register", "create_task", "create_bulk_tasks", "push_unsubscribe"} <= \
        {name for name, _, _ in BODY_OPS}


@pytest.mark.parametrize("name,ep,method", BODY_OPS, ids=[f"{m} {_route(ep)}" for _, ep, m in BODY_OPS])
def test_every_json_request_body_has_an_example_its_schema_loads(name, ep, method):
    """Every property shows an example (or the schema a whole one, ``Meta.example``), and
    the example body is one the route accepts: it loads through the very schema
    ``@api(body=...)`` names, so an example cannot drift from the validation rules."""
    media = _json_media(_op(ep, method)["requestBody"]["content"])
    missing: list = []
    body = _example(media["schema"], "body", missing)
    assert not missing, f"{name}: no example for {missing}"
    schema = ep.doc["body"]
    schema = schema() if isinstance(schema, type) else schema
    try:
        schema.load(body)
    except ValidationError as exc:
        pytest.fail(f"{name}: the example body {body} does not load: {exc.messages}")


@pytest.mark.parametrize("name,ep,method,status", ANSWER_OPS,
                         ids=[f"{m} {_route(ep)} {s}" for _, ep, m, s in ANSWER_OPS])
def test_every_json_success_answer_has_an_example_that_fits_its_schema(name, ep, method, status):
    media = _json_media(_op(ep, method)["responses"][status]["content"])
    missing: list = []
    answer = _example(media["schema"], "answer", missing)
    assert not missing, f"{name} {status}: no example for {missing}"
    OAS31Validator({**media["schema"], "components": SPEC["components"]}).validate(answer)


def test_docs_api_md_lists_every_route_of_the_spec():
    from gateway_svc.openapi import routes_markdown

    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    start = text.index("<!-- routes:start -->") + len("<!-- routes:start -->")
    end = text.index("<!-- routes:end -->")
    assert text[start:end].strip() == routes_markdown(SPEC).strip(), \
        "run: python -m gateway_svc.openapi, and paste its table into docs/api.md"
