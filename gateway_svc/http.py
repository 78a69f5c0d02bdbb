"""The gateway's HTTP machinery, on top of nameko's ``@http``.

``@api(method, path, auth=True, limit="default", body=Schema, query=Schema,
response=Schema, status=201)`` registers a route under ``/api/v1`` (the
schemas and the status document it in OpenAPI, ``gateway_svc.openapi``).
Before a worker is spawned the entrypoint authenticates the caller
(``request.user_id``) and applies the route class's rate limit (per user
when authenticated, else per IP). Handlers return a JSON-able value,
``(status, value)`` or ``(status, headers, value)``; every error becomes
problem+json (``gateway_svc.problems``). The WSGI layer adds X-Request-ID,
security headers and CORS to every response, routing errors included, and
refuses oversize bodies before they are read.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import socket
import time
import uuid
from functools import partial
from typing import Any

import eventlet.corolocal
import marshmallow
from eventlet.event import Event
from nameko.extensions import SharedExtension
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import HttpOnlyProtocol, WebServer, WsgiApp
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Request, Response

from employee_svc.contract import membership_key
from gateway_svc.cache import CachedRoute
from gateway_svc.checks import RequestChecks
from gateway_svc.idempotency import idempotent
from gateway_svc.identity import REVOKED, UNKNOWN_PAT, Identity, PersonalTokens, is_personal_token
from gateway_svc.problems import PROBLEM_TYPE, from_exception, problem_response
from gateway_svc.proxies import TrustedProxies
from gateway_svc.realtime import WS_PATH, Realtime
from gateway_svc.scopes import check_token
from shared.errors import (
    AppError,
    BadRequest,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    UnsupportedMediaType,
    validation_error,
)
from shared.events import CLIENT_IP_KEY
from shared.redis import Limit, RateLimiter, make_cache_client, make_client
from shared.rpc import check_signature
from shared.telemetry import (
    CACHE_REQUESTS,
    CORRELATION_KEY,
    ENTRYPOINT_CALLS,
    ENTRYPOINT_LATENCY,
    bind_correlation_id,
    count_cache,
    outcome_of,
    report_error,
)
from shared.tenancy import is_active, require_member

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
REQUEST_ID_HEADER = "X-Request-ID"
DEFAULT_MAX_BODY = 1024 * 1024
JSON = "application/json"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# JSON answers load nothing; the Swagger UI page loads its own files only
# (its script is a file, not inline; it sets inline styles and data: icons)
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'none'")
DOCS_PATH = f"{API_PREFIX}/docs"
HSTS = "max-age=31536000; includeSubDomains"
MAX_JSON_DEPTH = 32  # no body of this API nests deeper; Python's parser gives up near 1,000


# bearer secrets that can sit in a URL: query values by name, and the
# invitation token in /invitations/<token>/accept
_SECRET_QUERY = re.compile(r"([?&](?:[^=&\s]*token|code|secret|password|key|signature|sig)=)"
                           r"[^&\s\"]*", re.I)
_SECRET_PATH = re.compile(r"(/invitations/)(?!\?)[^/\s?\"]+(/accept)")


def redact_url(text: str) -> str:
    """``text`` (a URL, or a log line holding one) with its secrets replaced."""
    return _SECRET_PATH.sub(r"\1[redacted]\2", _SECRET_QUERY.sub(r"\1[redacted]", text))


# the access line eventlet's server writes after each request, tab-separated so
# AccessLog can split it into fields
ACCESS_FORMAT = "%(client_ip)s\t%(request_line)s\t%(status_code)s\t%(body_length)s\t%(wall_seconds).6f"
_caller = eventlet.corolocal.local()  # the request's user, for its access line


class AccessLog(logging.LoggerAdapter):
    """The WSGI server's log (it writes each request line at INFO): one JSON
    object per request with method, path (secrets redacted), status, bytes,
    duration and the caller's user id; anything else it logs, redacted."""

    def process(self, msg, kwargs):
        text = str(msg)
        parts = text.split("\t")
        if len(parts) != 5:
            return redact_url(text), kwargs
        ip, line, status, size, seconds = parts
        method, _, rest = line.partition(" ")
        path = redact_url(rest.rsplit(" ", 1)[0])
        fields = {"method": method, "path": path,
                  "status": int(status) if status.isdigit() else status,
                  "bytes": int(size) if size.isdigit() else None,
                  "duration_ms": round(float(seconds) * 1000, 3),
                  "user_id": getattr(_caller, "user_id", None), "client_ip": ip}
        return f"{method} {path} {status}", {**kwargs, "extra": {"fields": fields}}


def _valid_request_id(value: str | None) -> bool:
    return value is not None and 0 < len(value) <= 128 and value.isascii() and value.isprintable()


class ApiWsgiApp(WsgiApp):
    def __init__(self, server: "ApiServer"):
        super().__init__(server)
        config = server.container.config
        self.max_body = int(config.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY))
        self.largest_route_body = max((getattr(rule.endpoint, "max_body_bytes", None) or 0
                                       for rule in self.url_map.iter_rules()), default=0)
        origins = config.get("CORS_ORIGINS") or []
        self.cors_origins = {o.strip() for o in (origins.split(",") if isinstance(origins, str)
                                                 else origins) if o.strip()}
        self.realtime = Realtime(config)  # the websocket (gateway_svc.realtime)
        self.hsts = str(config.get("PUBLIC_URL") or "").startswith("https://")

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == WS_PATH:
            return self.realtime(environ, start_response)
        request_id = environ.get("HTTP_X_REQUEST_ID")
        if not _valid_request_id(request_id):
            request_id = uuid.uuid4().hex
        environ["workforce.request_id"] = request_id
        bind_correlation_id(request_id)
        _caller.user_id = None  # Guard.check names the caller once the token is verified
        response = self._dispatch(environ)
        self._decorate(environ, response, request_id)
        return response(environ, start_response)

    def _dispatch(self, environ) -> Response:
        request = Request(environ, shallow=True)
        if request.method == "OPTIONS" and self._cors_origin(environ):
            return Response(status=204)
        length = request.content_length
        # a route may allow more (``@api(..., max_body=...)``), never more than the largest
        if length is not None and length > max(self.max_body, self.largest_route_body):
            return from_exception(PayloadTooLarge(
                f"The body is {length} bytes; the limit is "
                f"{max(self.max_body, self.largest_route_body)}."))
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
        except NotFound:
            return problem_response(404, "Not found", "No such route.", slug="not-found")
        except MethodNotAllowed as exc:
            return problem_response(405, "Method not allowed",
                                    f"Allowed: {', '.join(sorted(exc.valid_methods or []))}.",
                                    slug="method-not-allowed",
                                    headers={"Allow": ", ".join(exc.valid_methods or [])})
        except HTTPException as exc:
            return from_exception(exc)
        max_body = getattr(provider, "max_body_bytes", None) or self.max_body
        if length is not None and length > max_body:
            return from_exception(PayloadTooLarge(
                f"The body is {length} bytes; the limit is {max_body}."))
        request.path_values = values  # type: ignore[attr-defined]  # our own, read by @api routes
        request.max_content_length = max_body
        return provider.handle_request(request)

    def _cors_origin(self, environ) -> str | None:
        origin = environ.get("HTTP_ORIGIN")
        if origin and ("*" in self.cors_origins or origin in self.cors_origins):
            return origin
        return None

    def _decorate(self, environ, response: Response, request_id: str) -> None:
        headers = response.headers
        headers[REQUEST_ID_HEADER] = request_id
        for name, value in SECURITY_HEADERS.items():
            headers.setdefault(name, value)
        path = environ.get("PATH_INFO", "")
        headers.setdefault("Content-Security-Policy",
                           DOCS_CSP if path.startswith(DOCS_PATH) else API_CSP)
        if self.hsts:
            headers["Strict-Transport-Security"] = HSTS
        if environ.get("PATH_INFO", "").startswith(f"{API_PREFIX}/auth") or \
                environ.get("PATH_INFO", "").startswith(f"{API_PREFIX}/users"):
            headers["Cache-Control"] = "no-store"
        origin = self._cors_origin(environ)
        if origin:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Vary"] = "Origin"
            headers["Access-Control-Allow-Headers"] = (
                "Authorization, Content-Type, X-Request-ID, Idempotency-Key, If-Match, If-None-Match")
            headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
            headers["Access-Control-Expose-Headers"] = (
                "X-Request-ID, X-RateLimit-Limit, X-RateLimit-Remaining, Retry-After, ETag, "
                "Idempotent-Replayed")


class NoDelayProtocol(HttpOnlyProtocol):
    """Responses leave at once: eventlet writes an answer in 16 KiB pieces, and
    with Nagle's algorithm on, the last piece waited for the client's delayed
    ACK (about 40 ms per answer over 16 KiB)."""

    def setup(self):
        with contextlib.suppress(OSError):  # not a TCP socket
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()


class ApiServer(WebServer):
    app = None

    def get_wsgi_server(self, sock, wsgi_app, protocol=NoDelayProtocol, debug=False):
        server = super().get_wsgi_server(sock, wsgi_app, protocol=protocol, debug=debug)
        server.log = AccessLog(logging.getLogger("nameko.web.server"), {})
        server.log_format = ACCESS_FORMAT
        return server

    def get_wsgi_app(self):
        self.app = ApiWsgiApp(self)
        return TrustedProxies(self.app, self.container.config.get("TRUSTED_PROXIES"))

    def stop(self):
        super().stop()
        if self.app is not None:
            self.app.realtime.stop()

    def context_data_from_headers(self, request) -> dict:
        data = {CORRELATION_KEY: request.environ.get("workforce.request_id"),
                CLIENT_IP_KEY: client_ip(request)}  # into the envelopes of what it causes
        if getattr(request, "user_id", None):
            data["user_id"] = request.user_id
        return data


class Guard(SharedExtension):
    """Authentication, rate limits and the cached membership, shared by every
    ``@api`` route: the token is verified in process, the rest is one Redis
    call (``gateway_svc.checks``)."""

    def setup(self) -> None:
        config = self.container.config
        self.redis = make_client(config)
        self.cache_redis = make_cache_client(config, self.redis)
        self.limiter = RateLimiter(self.redis, self.container.service_name)
        self.checks = RequestChecks(self.redis, self.cache_redis)
        self.limits = {name: Limit.parse(text)
                       for name, text in (config.get("RATE_LIMITS") or {}).items()}
        self.limits.setdefault("default", Limit(600, 60))
        self.identity = Identity(config, self.redis)
        self.personal_tokens = PersonalTokens(self.redis)

    def stop(self) -> None:
        self.redis.close()
        if self.cache_redis is not self.redis:
            self.cache_redis.close()

    def check(self, request, route: str, auth: bool, limit: str | None,
              org_id: str | None = None, cached: CachedRoute | None = None) -> dict[str, str]:
        """Authenticate and count the request; returns rate-limit headers. With
        ``org_id``, also reads the caller's cached membership of it
        (``request.cached_membership``) and then the ``cached`` route's answer
        (``request.cached_answer``)."""
        request.user_id = None
        request.token_claims = None
        request.cached_membership = None
        request.cached_answer = None
        rule = None if limit is None else self.limits.get(limit, self.limits["default"])
        service = self.container.service_name
        if auth:
            token = self.identity.bearer_token(request)
            if is_personal_token(token):
                claims = self.personal_tokens.resolve(token)
            else:
                claims = self.identity.verify_signature(token)
            request.token_claims, request.user_id = claims, claims["sub"]
            _caller.user_id = request.user_id
            checked = self.checks.run(
                claims, f"{service}:ratelimit:user:{request.user_id}:{limit}", rule,
                membership_key(org_id, request.user_id) if org_id else None,
                cached.lookup(request, org_id) if cached and org_id else None)
            if checked.revoked:
                raise Unauthorized(UNKNOWN_PAT if "pat" in claims else REVOKED)
            if "pat" in claims:  # its scope and org, once it is known to be live
                check_token(claims, request.method, route[len(API_PREFIX):], org_id)
                self.personal_tokens.note_use(claims["pat"])
            request.cached_membership = checked.membership
            request.cached_answer = checked.answer
            decision = checked.decision
        elif rule is not None:
            decision = self.limiter.hit(f"{service}:ratelimit:ip:{client_ip(request)}:{limit}",
                                        rule)
        else:
            decision = None
        if decision is None:
            return {}
        if not decision.allowed:
            raise RateLimited("Too many requests; slow down.", headers=decision.headers())
        return decision.headers()


def client_ip(request) -> str:
    """The client's address: the TCP peer, or what trusted proxies forwarded
    (``TRUSTED_PROXIES``, applied to the environ by ``gateway_svc.proxies``)."""
    return request.remote_addr or "unknown"


class ApiEntrypoint(HttpRequestHandler):
    server = ApiServer()
    guard = Guard()
    access_logged = True  # the web server logs each request (shared.telemetry)

    def __init__(self, method: str, url: str, auth: bool = True, limit: str | None = "default",
                 max_body: int | str | None = None, *, body=None, query=None, response=None,
                 status: int | None = None, summary: str | None = None,
                 errors: tuple[int, ...] = (), body_media: str = JSON,
                 response_media: str | tuple[str, ...] = JSON,
                 response_headers: dict[str, str] | None = None,
                 also: dict[int, Any] | None = None, cached: CachedRoute | None = None,
                 idempotent: bool | None = None, etag: bool = False,
                 **kwargs):
        """``max_body``: this route's body limit in bytes, or the name of the
        config key holding it (default: ``MAX_BODY_BYTES``). ``body_media`` and
        ``response_media`` name what is not JSON (a multipart upload, a file,
        text); ``response_headers`` documents headers of the success answer
        (``{name: description}``); ``also`` other success answers
        (``{status: schema}``), such as a 202 beside the usual 201; ``cached``
        how an ``/orgs/<org_id>`` GET's answers are cached (``gateway_svc.cache``):
        a hit for an active member is answered before a worker starts.
        ``idempotent``: the route honours ``Idempotency-Key``
        (``gateway_svc.idempotency``; default: an authenticated POST answering
        201 or 202 with a JSON body); ``etag``: the route answers or checks
        ``ETag`` / ``If-Match`` / ``If-None-Match`` (``gateway_svc.etags``)."""
        self.auth = auth
        self.idempotent = bool(idempotent)
        self.etag = etag
        self.cached = cached
        self.limit = limit
        self.max_body = max_body
        self.max_body_bytes: int | None = None
        # for the OpenAPI document (gateway_svc.openapi): marshmallow schemas
        # (classes or instances) of the body, the query string and the answer
        self.doc = {"body": body, "query": query, "response": response, "status": status,
                    "summary": summary, "errors": tuple(errors), "body_media": body_media,
                    "response_media": ((response_media,) if isinstance(response_media, str)
                                       else tuple(response_media)),
                    "response_headers": dict(response_headers or {}), "also": dict(also or {}),
                    "idempotent": bool(idempotent), "etag": etag}
        full_url = url if url.startswith(API_PREFIX) else f"{API_PREFIX}{url}"
        super().__init__(method, full_url, expected_exceptions=(AppError,), **kwargs)

    def setup(self) -> None:
        super().setup()
        service = self.container.service_name
        # what a cached answer counts, resolved once (``labels`` takes a lock and a look-up)
        self.hit_metrics = (CACHE_REQUESTS.labels(service, "hit"),
                            ENTRYPOINT_CALLS.labels(service, self.method_name, "ok"),
                            ENTRYPOINT_LATENCY.labels(service, self.method_name))
        if isinstance(self.max_body, str):
            self.max_body_bytes = int(self.container.config.get(self.max_body) or DEFAULT_MAX_BODY)
        elif self.max_body:
            self.max_body_bytes = int(self.max_body)

    def handle_request(self, request):
        started = time.perf_counter()
        request.shallow = False
        rate_headers: dict[str, str] = {}
        in_worker = False
        try:
            rate_headers = self.guard.check(request, self.url, self.auth, self.limit,
                                            request.path_values.get("org_id") if self.auth
                                            else None, self.cached)
            if request.cached_answer is not None and is_active(request.cached_membership):
                response = self.answer_from_cache(request, started)
            else:
                in_worker = True
                response = self.run_worker(request)
        except Exception as exc:
            if not in_worker:  # a worker's failure is reported by its Telemetry
                self.report_before_worker(request, exc)
            response = self.response_from_exception(exc)
        for name, value in rate_headers.items():
            response.headers.setdefault(name, value)
        return response

    def report_before_worker(self, request, exc: Exception) -> None:
        """A failure of the checks before any worker (Redis down: 503) counts and
        reaches Sentry as a worker's would; a refusal the caller caused does not."""
        if outcome_of((type(exc), exc, None), (AppError,)) != "error":
            return
        service = self.container.service_name
        ENTRYPOINT_CALLS.labels(service, self.method_name, "error").inc()
        report_error(self.container.config, service, self.method_name,
                     request.environ.get("workforce.request_id"), exc)

    def answer_from_cache(self, request, started: float) -> Response:
        """The cached answer of a ``cached=`` route to an active member, before any
        worker starts (the worker would do the same checks and serve the same
        text); counted as the route's call and a cache hit."""
        hits, calls, latency = self.hit_metrics
        count_cache(self.container.service_name, "hit", request.path, hits)
        calls.inc()
        latency.observe(time.perf_counter() - started)
        return Response(request.cached_answer, content_type=JSON)

    def run_worker(self, request) -> Response:
        context_data = self.server.context_data_from_headers(request)
        args, kwargs = self.get_entrypoint_parameters(request)
        self.check_signature(args, kwargs)
        event = Event()
        self.container.spawn_worker(self, args, kwargs, context_data=context_data,
                                    handle_result=partial(self.handle_result, event))
        return self.response_from_result(event.wait())

    def check_signature(self, args, kwargs):
        check_signature(self, args, kwargs)

    def response_from_result(self, result: Any) -> Response:
        if isinstance(result, Response):
            return result
        status, headers = 200, None
        if isinstance(result, tuple):
            if len(result) == 3:
                status, headers, result = result
            else:
                status, result = result
        if status == 204 or result is None:
            return Response(status=status, headers=headers)
        return Response(json.dumps(result, default=str), status=status, headers=headers,
                        content_type="application/json")

    def response_from_exception(self, exc: BaseException) -> Response:
        return from_exception(exc)


def api(method: str, url: str, **kwargs):
    """Register a route (see ``ApiEntrypoint``). On an authenticated route with
    ``<org_id>`` in its path the caller must first be an active employee of
    that org (``shared.tenancy.require_member``: 404 otherwise) before anything
    else, body validation included, happens; their membership is on
    ``request.membership``."""
    if kwargs.get("idempotent") is None:
        kwargs["idempotent"] = (method == "POST" and kwargs.get("auth", True)
                                and kwargs.get("status") in (201, 202)
                                and kwargs.get("body_media", JSON) == JSON)
    register = ApiEntrypoint.decorator(method, url, **kwargs)

    def decorate(fn):
        if kwargs["idempotent"]:
            fn = idempotent(fn, read_body)
        if not kwargs.get("auth", True) or "<org_id>" not in url:
            return register(fn)

        @functools.wraps(fn)
        def member_only(self, request, *args, **kw):
            request.membership = require_member(self.redis, self.rpc_employees, kw["org_id"],
                                                request.user_id, cached=request.cached_membership)
            return fn(self, request, *args, **kw)

        return register(member_only)

    return decorate


def read_body(request) -> bytes:
    """The raw body, at most ``MAX_BODY_BYTES`` (413 past it), chunked or not; read
    once (the Idempotency-Key check reads it before the route does)."""
    cached = getattr(request, "workforce_body", None)
    if cached is not None:
        return cached
    if request.content_length is not None:
        try:
            return request.get_data(cache=True)
        except HTTPException as exc:
            if exc.code == 413:
                raise PayloadTooLarge("The body is too large.") from None
            raise
    # chunked: werkzeug will not read a body of unknown length; read it bounded
    limit = request.max_content_length or DEFAULT_MAX_BODY
    raw = request.environ["wsgi.input"].read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"The body is over the limit of {limit} bytes.")
    request.workforce_body = raw
    return raw


def json_object(request) -> dict:
    """The body as a JSON object (415/413/400 otherwise); fields are the service's
    to judge, after its permission check (so a 403 is not masked by a 422)."""
    body = read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def read_json(request, schema=None, *, partial_load: bool = False) -> Any:
    """The request body as JSON (validated by a marshmallow schema if given).

    415 unless the body is JSON, 413 over the size limit, 400 when it does not
    parse or nests deeper than MAX_JSON_DEPTH, 422 with per-field messages when
    the schema refuses it."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType("Send the body as application/json.")
    raw = read_body(request)
    try:
        data = json.loads(raw or b"null")
        too_deep = _nested_deeper(data, MAX_JSON_DEPTH)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
    except RecursionError:  # far deeper than the bound
        too_deep = True
    if too_deep:
        raise BadRequest(f"The body nests deeper than {MAX_JSON_DEPTH} levels.")
    if schema is None:
        return data
    if not isinstance(data, dict) and not getattr(schema, "many", False):
        raise BadRequest("The body must be a JSON object.")
    try:
        return schema.load(data, partial=partial_load)
    except marshmallow.ValidationError as exc:
        raise validation_error(exc) from None


def _nested_deeper(value: Any, limit: int) -> bool:
    """True when objects/arrays nest more than ``limit`` levels (no recursion)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def query_args(request, schema) -> dict:
    """Query string validated by a marshmallow schema (422 on bad values)."""
    try:
        return schema.load(request.args.to_dict())
    except marshmallow.ValidationError as exc:
        raise validation_error(exc) from None


__all__ = ["api", "read_json", "query_args", "PROBLEM_TYPE", "API_PREFIX"]
