"""Structured logs, Prometheus metrics and Sentry for every service.

``Telemetry`` is a DependencyProvider that every service has (through
``shared.service.ServiceBase``). Around each entrypoint call it

* binds the request's correlation id (the gateway's X-Request-ID, carried in
  nameko's context data over RPC and events) to the current green thread so
  every log line of that call carries it;
* writes one JSON log line: service, entrypoint, duration, outcome (at DEBUG
  for an HTTP entrypoint's success: the web server's access line, JSON
  too, already records that request; and for an RPC's success faster than
  ``LOG_SLOW_CALL_MS``: the request that caused it has its access line, and
  its count and latency are in the metrics);
* observes the entrypoint counter and latency histogram;
* reports unexpected errors to Sentry (expected ones are not, except
  503/504: an ``AppError`` with a 5xx status is the server failing, so it
  counts as ``outcome="error"`` and goes to Sentry too).

Everything sent to Sentry passes ``scrub_event`` first: any value under a key
whose name contains password, token, secret, code or authorization is
replaced, at any depth (request data, headers, frame locals, breadcrumbs,
extra), and ``token=…``-style pairs inside strings (a logged URL) are masked.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import eventlet.corolocal
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from prometheus_client import Counter, Histogram, start_http_server

from shared.errors import AppError

if TYPE_CHECKING:
    from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

CORRELATION_KEY = "correlation_id"
_local = eventlet.corolocal.local()

ENTRYPOINT_CALLS = Counter(
    "entrypoint_calls_total", "Entrypoint calls", ["service", "entrypoint", "outcome"])
ENTRYPOINT_LATENCY = Histogram(
    "entrypoint_duration_seconds", "Entrypoint latency", ["service", "entrypoint"],
    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
EVENT_RETRIES = Counter("event_retries_total", "Event handler retries scheduled",
                        ["service", "handler"])
EVENT_DEAD_LETTERS = Counter("event_dead_letters_total", "Events parked in a dead-letter queue",
                             ["service", "handler"])
EVENT_DUPLICATES = Counter("event_duplicates_total", "Redelivered events skipped",
                           ["service", "handler"])
EVENT_HANDLED = Counter("events_handled_total", "Events whose handler ran without error",
                        ["service", "handler"])
CACHE_REQUESTS = Counter("cache_requests_total", "Cache look-ups", ["service", "result"])
RPC_TIMEOUTS = Counter("rpc_timeouts_total", "RPC calls that timed out", ["service", "target"])
REDIS_ERRORS = Counter("redis_errors_total", "Redis failures tolerated (fail open)",
                       ["service", "what"])


_cache_log = logging.getLogger("workforce.cache")


def count_cache(service: str, result: str, key: str, counter=None) -> None:
    """Every cache look-up: the hit/miss/error counter (``counter``: that child of
    ``CACHE_REQUESTS``, resolved once by a caller on a hot path), and a debug line
    naming the key."""
    (counter or CACHE_REQUESTS.labels(service, result)).inc()
    if _cache_log.isEnabledFor(logging.DEBUG):
        _cache_log.debug("cache %s %s", result, key,
                         extra={"fields": {"service": service, "cache": result, "key": key}})


def current_correlation_id() -> str | None:
    return getattr(_local, "correlation_id", None)


def bind_correlation_id(value: str | None) -> None:
    _local.correlation_id = value


class JsonFormatter(logging.Formatter):
    """One JSON object per line; correlation id of the current call included."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "correlation_id": current_correlation_id(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.describe(record.exc_info)
        return json.dumps(entry, default=str)

    def describe(self, exc_info) -> str:
        """The traceback; for an error raised on purpose (an ``AppError``: a
        problem+json answer, nameko logs each with its stack) only its class
        and detail: a refused login is not a bug, and formatting its stack
        (~1 ms, on the event loop) for every 401, 429 or shed 503 taxed a
        login storm twice (auth and gateway). Sentry still gets the stack
        of a 5xx one."""
        exc = exc_info[1]
        if isinstance(exc, AppError):
            return f"{type(exc).__name__}: {exc.detail}"
        return self.formatException(exc_info)


_log = logging.getLogger("workforce.entrypoint")


SENSITIVE_NAME = re.compile(r"password|passwd|token|secret|code|authorization|cookie|"
                            r"api[_-]?key", re.I)
# name=value pairs inside a string (a URL, a query string, a log message)
SENSITIVE_PAIR = re.compile(
    r"((?:[\w-]*(?:password|token|secret|code|authorization)[\w-]*)[\"']?\s*[=:]\s*[\"']?)"
    r"(?:Bearer\s+)?[^\s&\"',;}]+", re.I)
SCRUBBED = "[Filtered]"
MAX_SCRUB_DEPTH = 64


def scrub(value, depth: int = 0):
    """``value`` with every secret-looking entry replaced, recursively."""
    if depth > MAX_SCRUB_DEPTH:
        return SCRUBBED
    if isinstance(value, dict):
        return {key: (SCRUBBED if isinstance(key, str) and SENSITIVE_NAME.search(key)
                      and item not in (None, "", [], {}) else scrub(item, depth + 1))
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        # headers and form data as [name, value] pairs
        if len(value) == 2 and isinstance(value[0], str) and SENSITIVE_NAME.search(value[0]):
            return [value[0], SCRUBBED]
        return [scrub(item, depth + 1) for item in value]
    if isinstance(value, str):
        return SENSITIVE_PAIR.sub(lambda m: m.group(1) + SCRUBBED, value)
    return value


def scrub_event(event: Event, hint: Hint | None = None) -> Event:
    """Sentry ``before_send`` / ``before_send_transaction``: see the module docstring."""
    return scrub(event)


def scrub_breadcrumb(crumb: Breadcrumb, hint: BreadcrumbHint | None = None) -> Breadcrumb:
    return scrub(crumb)


def init_sentry(config: dict, service_name: str) -> None:
    dsn = config.get("SENTRY_DSN")
    if not dsn:
        return
    import sentry_sdk

    sentry_sdk.init(dsn=dsn, environment=config.get("ENVIRONMENT", "development"),
                    release=config.get("RELEASE") or os.environ.get("RELEASE"),
                    server_name=service_name, traces_sample_rate=0,
                    send_default_pii=False, before_send=scrub_event,
                    before_send_transaction=scrub_event, before_breadcrumb=scrub_breadcrumb)


def outcome_of(exc_info, expected) -> str:
    """ok, expected_error (a 4xx the caller caused) or error (a bug, or 503/504)."""
    if exc_info is None:
        return "ok"
    exc = exc_info[1]
    status = getattr(exc, "status", None)
    server_side = isinstance(status, int) and status >= 500
    if expected and isinstance(exc, expected) and not server_side:
        return "expected_error"
    return "error"


def report_error(config: dict, service: str, entrypoint: str, correlation_id: str | None,
                 exc: BaseException) -> None:
    """An unexpected error, or a 503/504, to Sentry (when SENTRY_DSN is set)."""
    if not config.get("SENTRY_DSN"):
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        scope.set_tag("service", service)
        scope.set_tag("entrypoint", entrypoint)
        scope.set_tag(CORRELATION_KEY, correlation_id)
        sentry_sdk.capture_exception(exc)


class Telemetry(DependencyProvider):
    """Per-call logging, metrics and error reporting (see module docstring)."""

    _metrics_started: set = set()

    def setup(self) -> None:
        config = self.container.config
        init_sentry(config, self.container.service_name)
        port = int((config.get("METRICS_PORTS") or {}).get(self.container.service_name) or 0)
        if port and port not in Telemetry._metrics_started:
            start_http_server(port, addr=config.get("METRICS_ADDRESS", "127.0.0.1"))
            Telemetry._metrics_started.add(port)
        self._started: dict = {}
        self.slow_call_s = float(config.get("LOG_SLOW_CALL_MS", 500)) / 1000

    def worker_setup(self, worker_ctx) -> None:
        cid = worker_ctx.data.get(CORRELATION_KEY)
        if not cid:
            cid = uuid.uuid4().hex
            worker_ctx.data[CORRELATION_KEY] = cid
        bind_correlation_id(cid)
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None) -> None:
        duration = time.perf_counter() - self._started.pop(worker_ctx, time.perf_counter())
        service = self.container.service_name
        entrypoint = worker_ctx.entrypoint.method_name
        expected = getattr(worker_ctx.entrypoint, "expected_exceptions", ())
        outcome = outcome_of(exc_info, expected)
        ENTRYPOINT_CALLS.labels(service, entrypoint, outcome).inc()
        ENTRYPOINT_LATENCY.labels(service, entrypoint).observe(duration)
        # an HTTP request that went well already has its one access line (the web
        # server's); an RPC that went well and fast is one step of such a request
        level = logging.DEBUG if outcome == "ok" and (
            getattr(worker_ctx.entrypoint, "access_logged", False)
            or (isinstance(worker_ctx.entrypoint, Rpc) and duration < self.slow_call_s)) \
            else logging.INFO
        if _log.isEnabledFor(level):
            fields = {"service": service, "entrypoint": entrypoint, "outcome": outcome,
                      "duration_ms": round(duration * 1000, 3)}
            if exc_info is not None:
                fields["error"] = f"{type(exc_info[1]).__name__}: {exc_info[1]}"[:500]
            _log.log(level, "%s.%s %s", service, entrypoint, outcome, extra={"fields": fields})
        if outcome == "error":
            report_error(self.container.config, service, entrypoint,
                         worker_ctx.data.get(CORRELATION_KEY), exc_info[1])

    def get_dependency(self, worker_ctx):
        return worker_ctx.data.get(CORRELATION_KEY)
