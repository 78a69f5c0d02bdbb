"""A CSV file streamed page by page: the one way the gateway exports a list
(audit records, tasks, employees) without building the file in memory.

The first page is fetched before the answer starts, so a 403, 404 or 422 is
still an ordinary problem answer; then the header and one page at a time go out
as they come (``werkzeug`` sends a generator chunked). A page that fails later
cuts the stream (the status is sent already), so a client sees a broken
transfer, never a file that looks complete."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from werkzeug.wrappers import Response

log = logging.getLogger(__name__)

EXPORT_PAGE = 200  # rows per RPC while exporting (shared.pagination's largest page)
NO_STORE = {"Cache-Control": "no-store"}


def export_args(args: dict) -> dict:
    """The list arguments of an export: the caller's filters; the export pages itself."""
    return {**{k: v for k, v in args.items() if k not in ("limit", "cursor")}, "limit": EXPORT_PAGE}


def stream_csv(fetch: Callable[[str | None], dict], to_text: Callable[..., str], max_rows: int,
               filename: str, what: str) -> Response:
    """``fetch(cursor)`` answers a ``{items, next_cursor}`` page; ``to_text(items,
    header=...)`` makes CSV text of its items. At most ``max_rows`` rows."""
    first = fetch(None)  # 403/404/422 before any row

    def rows() -> Iterator[str]:
        page, sent = first, 0
        yield to_text(page["items"][:max_rows], header=True)
        sent += len(page["items"])
        while page["next_cursor"] and sent < max_rows:
            try:
                page = fetch(page["next_cursor"])
            except Exception:  # the status is sent already: cut the stream, never end it clean
                log.exception("%s export stopped after %d rows", what, sent)
                raise
            yield to_text(page["items"][:max_rows - sent])
            sent += len(page["items"])

    return Response(rows(), mimetype="text/csv", headers={
        **NO_STORE, "Content-Disposition": f'attachment; filename="{filename}"'})
