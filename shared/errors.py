"""The errors services raise on purpose.

They cross RPC by name: nameko serialises an exception as its class path and
``str(exc)``, and re-creates registered classes from that string on the caller
side. ``str()`` of an :class:`AppError` is therefore a small JSON document, so
the detail and the per-field errors survive the trip. The gateway maps them to
HTTP status codes and problem+json bodies in one place (``gateway_svc.problems``).
"""
from __future__ import annotations

import json
from typing import Any

from nameko.exceptions import deserialize_to_instance

_MARK = "__app_error__"


class AppError(Exception):
    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(self, detail: str = "", errors: dict | None = None, **extra: Any):
        if isinstance(detail, str) and detail.startswith("{") and _MARK in detail:
            data = json.loads(detail)
            detail, errors, extra = data["detail"], data.get("errors"), data.get("extra") or {}
        self.detail = detail or self.title
        self.errors = errors
        self.extra = extra
        # nameko re-creates registered exceptions from their args: carry everything
        super().__init__(str(self))

    def __str__(self) -> str:
        return json.dumps({_MARK: 1, "detail": self.detail, "errors": self.errors,
                           "extra": self.extra}, default=str)

    def to_problem(self) -> dict:
        body = {"type": f"https://errors.workforce.dev/{self.slug}", "title": self.title,
                "status": self.status, "detail": self.detail}
        if self.errors:
            body["errors"] = self.errors
        # extra "headers" are for the HTTP response (e.g. Retry-After), not the body
        body.update({k: v for k, v in self.extra.items() if k not in body and k != "headers"})
        return body


def _register(cls):
    return deserialize_to_instance(cls)


@_register
class BadRequest(AppError):
    status, title, slug = 400, "Bad request", "bad-request"


@_register
class Unauthorized(AppError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


@_register
class Forbidden(AppError):
    status, title, slug = 403, "Forbidden", "forbidden"


@_register
class PlanLimitExceeded(AppError):
    status, title, slug = 403, "Plan limit reached", "plan-limit"


@_register
class NotFound(AppError):
    status, title, slug = 404, "Not found", "not-found"


@_register
class MethodNotAllowed(AppError):
    status, title, slug = 405, "Method not allowed", "method-not-allowed"


@_register
class Conflict(AppError):
    status, title, slug = 409, "Conflict", "conflict"


@_register
class PreconditionFailed(AppError):
    status, title, slug = 412, "Precondition failed", "precondition-failed"


@_register
class PayloadTooLarge(AppError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


@_register
class UnsupportedMediaType(AppError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


@_register
class ValidationFailed(AppError):
    status, title, slug = 422, "Validation failed", "validation"


@_register
class Locked(AppError):
    status, title, slug = 423, "Locked", "locked"


@_register
class RateLimited(AppError):
    status, title, slug = 429, "Too many requests", "rate-limited"


@_register
class Unavailable(AppError):
    status, title, slug = 503, "Service unavailable", "unavailable"


@_register
class Timeout(AppError):
    status, title, slug = 504, "Service timed out", "timeout"


def validation_error(exc) -> ValidationFailed:
    """Turn a marshmallow ValidationError into ours (field messages kept)."""
    messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    return ValidationFailed("Some fields are invalid.", errors=messages)
