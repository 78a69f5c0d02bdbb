"""Document versions for conditional requests (ETag / If-Match).

An owning service keeps a ``version`` on each document it serves as a single
object (1 when inserted, ``$inc`` by 1 on every write); the gateway derives
the ETag from it (``gateway_svc.etags``). A conditional write passes the
version the client saw: the service checks it, then puts it in the update's
filter, so two writers racing on one version cannot both succeed (the loser
gets 412 and changes nothing). Documents written before versions existed
count as version 0.
"""
from __future__ import annotations

from shared.errors import PreconditionFailed

STALE = "The object changed since you read it (If-Match); read it again and retry."


def version_of(doc: dict) -> int:
    return int(doc.get("version") or 0)


def expect_version(version: int | None) -> dict:
    """The update filter that holds only while the document has ``version``."""
    if version is None:
        return {}
    return {"version": version} if version else {"version": {"$in": [0, None]}}


def require_version(doc: dict, version: int | None) -> None:
    """412 unless ``doc`` is at ``version`` (None: the request had no If-Match)."""
    if version is not None and version_of(doc) != version:
        raise PreconditionFailed(STALE)
