"""The OpenAPI 3.1 document, generated (apispec + its marshmallow plugin)
from the gateway's route table and the marshmallow schemas each ``@api``
names. ``build_spec(GatewayService)`` walks the class's ``@api``
entrypoints, so a route cannot exist without a spec entry."""
from __future__ import annotations

import inspect
import re
from functools import lru_cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from marshmallow import Schema, fields
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from gateway_svc.http import API_PREFIX, JSON, ApiEntrypoint

TITLE = "Workforce mesh API"
VERSION = "1.0.0"
_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-zA-Z_]+)>")

ERROR_TEXT = {
    400: "Malformed request (e.g. the body is not valid JSON)",
    401: "Missing, invalid, expired or revoked access token",
    403: "Allowed in the organization but not this action",
    404: "Not found, or in an organization you do not belong to",
    405: "Method not allowed",
    409: "Conflict (with an Idempotency-Key: the first request with it is still running; "
         "retry after Retry-After)",
    412: "Precondition failed: If-Match names a version the object no longer has; "
         "nothing was changed",
    413: "Body too large",
    415: "The body is not JSON",
    422: "Invalid fields (`errors` names each)",
    423: "Account locked",
    429: "Rate limited (see Retry-After)",
    503: "A dependency is down",
    504: "A service timed out",
}


class ProblemSchema(Schema):
    """RFC 9457 problem details."""

    type = fields.String(metadata={"example": "https://errors.workforce.dev/validation"})
    title = fields.String(metadata={"example": "Validation failed"})
    status = fields.Integer(metadata={"example": 422})
    detail = fields.String(metadata={"example": "Some fields are invalid."})
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                         metadata={"example": {"email": ["Not a valid email address."]}})


class ExampleConverter(OpenAPIConverter):
    """Fields carry their own examples (``metadata={"example": ...}``); a schema
    whose answer is better shown whole (one of two shapes, say) names it in
    ``class Meta: example = {...}``, beside the ``title`` and ``description``
    apispec already reads there. tests/unit/test_openapi.py loads every request
    example through its schema, so an example cannot drift from validation."""

    def schema2jsonschema(self, schema):
        jsonschema = super().schema2jsonschema(schema)
        example = getattr(getattr(schema, "Meta", None), "example", None)
        if example is not None:
            jsonschema["example"] = example
        return jsonschema


class ExamplePlugin(MarshmallowPlugin):
    Converter = ExampleConverter


def api_entrypoints(service_cls) -> list[tuple[str, ApiEntrypoint]]:
    found = []
    for name, method in inspect.getmembers(service_cls, inspect.isfunction):
        for entrypoint in getattr(method, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(entrypoint, ApiEntrypoint):
                found.append((name, entrypoint))
    return sorted(found, key=lambda item: (item[1].url, item[1].method))


def openapi_path(url: str) -> str:
    return _CONVERTER.sub(r"{\1}", url)


def _tag(method_fn) -> str:
    """Routes are grouped by the module they live in (gateway_svc/routes/<tag>.py)."""
    module = getattr(method_fn, "__module__", "") or ""
    return module.rsplit(".", 1)[-1] if ".routes." in module else "operations"


def _media(media: str, schema) -> dict:
    """One success media type: the route's schema for JSON (none declared,
    none given: tests/unit/test_openapi.py refuses that), text for text/*,
    bytes for anything else (a download)."""
    if media == JSON or media.endswith("+json"):
        return {} if schema is None else {"schema": schema}
    if media.startswith("text/"):
        return {"schema": {"type": "string"}}
    return {"schema": {"type": "string", "format": "binary"}}


def success_response(doc: dict, status: int) -> dict:
    """A 204 has no content; any other success names its media type(s)."""
    success: dict = {"description": "Success"}
    if status != 204:
        success["content"] = {media: _media(media, doc["response"])
                              for media in doc["response_media"]}
    if doc["response_headers"]:
        success["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                              for name, text in doc["response_headers"].items()}
    return success


def operation(name: str, entrypoint: ApiEntrypoint, method_fn) -> dict:
    doc = entrypoint.doc
    text = inspect.getdoc(method_fn) or name.replace("_", " ").capitalize()
    summary, _, description = text.partition("\n")
    status = doc["status"] or (201 if entrypoint.method == "POST" else 200)
    op: dict = {"operationId": name, "summary": doc["summary"] or summary.strip(),
                "tags": [_tag(method_fn)], "responses": {}}
    if description.strip():
        op["description"] = description.strip()
    params = [{"in": "path", "name": p, "required": True, "schema": {"type": "string"}}
              for p in _CONVERTER.findall(entrypoint.url)]
    if doc["query"] is not None:
        params.append({"in": "query", "schema": doc["query"]})
    if params:
        op["parameters"] = params
    if doc["body"] is not None:
        op["requestBody"] = {"required": True,
                             "content": {doc["body_media"]: {"schema": doc["body"]}}}
    op["responses"][str(status)] = success_response(doc, status)
    for other, schema in doc["also"].items():
        op["responses"][str(other)] = success_response({**doc, "response": schema}, other)
    codes = set(doc["errors"]) | {404, 503, 504}
    codes |= conditional_headers(entrypoint, op, status)
    if entrypoint.auth:
        op["security"] = [{"bearerAuth": []}]
        codes.add(401)
    else:
        op["security"] = []
    if doc["body"] is not None:
        codes |= {400, 413, 415, 422}
    if doc["query"] is not None:
        codes.add(422)
    if entrypoint.limit:
        codes.add(429)
    for code in sorted(codes):
        op["responses"][str(code)] = {"$ref": f"#/components/responses/Problem{code}"}
    return op


IDEMPOTENCY_PARAM = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Retry safely: the same key and body within 24 h answer the first result "
                   "(with `Idempotent-Replayed: true`) and create nothing more; the same key "
                   "with another body is a 422; while the first is running, 409. Keys belong "
                   "to the caller (each personal access token has its own)."}
IF_NONE_MATCH = {"in": "header", "name": "If-None-Match", "required": False,
                 "schema": {"type": "string"},
                 "description": "An ETag from an earlier answer: 304 while it is current."}
IF_MATCH = {"in": "header", "name": "If-Match", "required": False, "schema": {"type": "string"},
            "description": "The ETag you read: the change happens only while the object is "
                           "still at that version, else 412 and nothing changes."}
ETAG_HEADER = {"description": "The object's version, a strong ETag (`\"v3\"`)",
               "schema": {"type": "string"}}


def conditional_headers(entrypoint: ApiEntrypoint, op: dict, status: int) -> set[int]:
    """Document Idempotency-Key and ETag / If-Match / If-None-Match on the routes
    that honour them; returns the extra error codes."""
    doc, codes = entrypoint.doc, set()
    success = op["responses"][str(status)]
    if doc["idempotent"]:
        op.setdefault("parameters", []).append(IDEMPOTENCY_PARAM)
        for code, answer in op["responses"].items():
            if code.startswith("2"):
                answer.setdefault("headers", {})["Idempotent-Replayed"] = {
                    "description": "`true` when this is the stored answer of an earlier "
                                   "request with the same Idempotency-Key",
                    "schema": {"type": "string"}}
        codes |= {409, 422}
    if doc["etag"]:
        if entrypoint.method == "GET":
            op.setdefault("parameters", []).append(IF_NONE_MATCH)
            op["responses"]["304"] = {"description": "Not modified: If-None-Match names the "
                                                     "current ETag", "headers": {"ETag": ETAG_HEADER}}
        else:
            op.setdefault("parameters", []).append(IF_MATCH)
            codes.add(412)
        if status != 204:
            success.setdefault("headers", {})["ETag"] = ETAG_HEADER
    return codes


def build_spec(service_cls, server_url: str = "/") -> dict:
    spec = APISpec(title=TITLE, version=VERSION, openapi_version="3.1.0",
                   plugins=[ExamplePlugin()],
                   info={"description": "The HTTP API of the workforce mesh gateway. Errors are "
                                        "RFC 9457 problem details (application/problem+json)."},
                   servers=[{"url": server_url}])
    spec.components.security_scheme("bearerAuth", {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT or wfp_ token",
        "description": "An access token (JWT, from /auth/login) or a personal access token "
                       "(`wfp_...`, from POST /me/tokens; its scope and organization bound what "
                       "it may call)"})
    spec.components.schema("Problem", schema=ProblemSchema)
    for code, text in ERROR_TEXT.items():
        spec.components.response(f"Problem{code}", {
            "description": text,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
    by_path: dict[str, dict] = {}
    for name, entrypoint in api_entrypoints(service_cls):
        method_fn = getattr(service_cls, name)
        for http_method in entrypoint.method.split(","):
            by_path.setdefault(openapi_path(entrypoint.url), {})[http_method.lower()] = \
                operation(name, entrypoint, method_fn)
    for path, operations in by_path.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@lru_cache(maxsize=1)
def cached_spec(service_cls) -> dict:
    return build_spec(service_cls)


def routes_markdown(spec: dict) -> str:
    """The route table of docs/api.md, from the spec (a unit test keeps them equal)."""
    lines = ["| method | path | what | success | auth |", "|---|---|---|---|---|"]
    for path, operations in sorted(spec["paths"].items()):
        for method, op in operations.items():
            success = ", ".join(code for code in op["responses"] if code.startswith(("1", "2", "3")))
            auth = "bearer" if op.get("security") else "—"
            summary = op["summary"].replace("|", "\\|")
            lines.append(f"| {method.upper()} | `{path}` | {summary} | {success} | {auth} |")
    return "\n".join(lines)


__all__ = ["build_spec", "cached_spec", "api_entrypoints", "openapi_path", "routes_markdown",
           "API_PREFIX"]

if __name__ == "__main__":  # python -m gateway_svc.openapi: the route table of docs/api.md
    from gateway_svc.service import GatewayService

    print(routes_markdown(build_spec(GatewayService)))
