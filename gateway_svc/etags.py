"""ETag, If-None-Match and If-Match on single objects (RFC 9110 section 13).

The owning service keeps a ``version`` per document (``shared.versions``); the
ETag is that version, strong: ``"v3"``. A GET answers it; with
``If-None-Match`` naming it (or ``*``) the answer is a 304 with no body. A
PATCH, PUT or DELETE with ``If-Match`` hands the version it names to the
service, which writes only while the document is still at that version (the
version is in the update's filter: race-free), else 412 and nothing changes.
``If-Match: *`` only asks that the object exists. A tag that is not one of
ours (a weak one, garbage) can match no version: 412 at once.
"""
from __future__ import annotations

import re

from werkzeug.wrappers import Response

from shared.errors import PreconditionFailed
from shared.versions import STALE

_TAG = re.compile(r'^"v(\d{1,18})"$')


def etag(version: int) -> str:
    return f'"v{int(version)}"'


def _tags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


def answer(request, obj: dict, status: int = 200, version: int | None = None):
    """``obj`` with its ETag (its ``version``, or ``version`` for a part of an object
    such as the org's settings), or 304 when the client's If-None-Match names it."""
    tag = etag(version if version is not None else obj.get("version") or 0)
    wanted = request.headers.get("If-None-Match")
    if wanted is not None and request.method in ("GET", "HEAD"):
        # weak comparison (RFC 9110 13.1.2): W/"v3" matches "v3"
        tags = [t[2:] if t.startswith("W/") else t for t in _tags(wanted)]
        if "*" in tags or tag in tags:
            return Response(status=304, headers={"ETag": tag})
    return status, {"ETag": tag}, obj


def if_match_version(request) -> int | None:
    """The version If-Match names; None without If-Match (or ``*``); 412 when it
    names no version this API could have given."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    tags = _tags(header)
    if tags == ["*"]:
        return None
    versions = {int(m.group(1)) for m in (_TAG.match(t) for t in tags) if m}
    if len(versions) != 1:  # several versions: no single expected state to write from
        raise PreconditionFailed(STALE if versions or tags else "If-Match is empty.")
    return versions.pop()
