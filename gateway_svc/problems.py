"""Every failure the gateway answers with, as RFC 9457 problem+json.
The one place where errors become HTTP statuses."""
from __future__ import annotations

import json
import logging

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from shared.errors import AppError
from shared.rpc import as_app_error

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"


def problem_response(status: int, title: str, detail: str = "", *, slug: str | None = None,
                     errors: dict | None = None, headers: dict | None = None,
                     extra: dict | None = None) -> Response:
    body = {"type": f"https://errors.workforce.dev/{slug or status}", "title": title,
            "status": status, "detail": detail or title}
    if errors:
        body["errors"] = errors
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return Response(json.dumps(body), status=status, headers=headers,
                    content_type=PROBLEM_TYPE)


def from_exception(exc: BaseException) -> Response:
    exc = as_app_error(exc)
    if isinstance(exc, AppError):
        body = exc.to_problem()
        headers = exc.extra.get("headers") or {}
        return Response(json.dumps(body), status=exc.status, headers=headers,
                        content_type=PROBLEM_TYPE)
    if isinstance(exc, HTTPException):
        headers = dict(exc.get_headers())
        headers.pop("Content-Type", None)
        return problem_response(exc.code or 500, exc.name, exc.description or "",
                                slug=exc.name.lower().replace(" ", "-"), headers=headers)
    log.error("unhandled error answering a request", exc_info=exc)
    return problem_response(500, "Internal error", "Something went wrong on our side.",
                            slug="internal")
