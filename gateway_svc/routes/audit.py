"""Audit routes (owners and admins: ``audit.read``): an org's records, newest
first, filtered, and the same as a streamed CSV export. The audit service
authorizes and validates; nothing here is cached (audit logs stay in the
database, and ``Cache-Control: no-store`` keeps them out of other caches)."""
from __future__ import annotations

import logging

from werkzeug.wrappers import Response

from audit_svc.schemas import (
    MAX_EXPORT_ROWS,
    FilterSchema,
    ListArgsSchema,
    RecordPageSchema,
    csv_text,
)
from gateway_svc.http import api

log = logging.getLogger(__name__)

AUDIT = "/orgs/<org_id>/audit"
NO_STORE = {"Cache-Control": "no-store"}
EXPORT_PAGE = 200  # rows per RPC while exporting (shared.pagination's largest page)


class AuditRoutes:
    @api("GET", AUDIT, query=ListArgsSchema, response=RecordPageSchema, errors=(403, 404))
    def list_audit_records(self, request, org_id):
        """Who did what to which object, when, from which request: newest first."""
        return 200, NO_STORE, self.rpc_audit.list_records(request.user_id, org_id,
                                                          request.args.to_dict())

    @api("GET", f"{AUDIT}.csv", query=FilterSchema, response_media="text/csv",
         errors=(403, 404),
         response_headers={"Content-Disposition": "attachment; filename=audit-<org_id>.csv"})
    def export_audit_records(self, request, org_id):
        """The filtered records as a streamed CSV file, newest first (at most 100,000 rows).

        One header line, then a page of records at a time."""
        # the export pages itself: a limit or cursor of the caller's is not one of its filters
        args = {**{k: v for k, v in request.args.to_dict().items() if k not in ("limit", "cursor")},
                "limit": EXPORT_PAGE}
        first = self.rpc_audit.list_records(request.user_id, org_id, args)  # 403/422 before any row
        user_id, rpc = request.user_id, self.rpc_audit

        def rows():
            page, sent = first, 0
            yield csv_text(page["items"], header=True)
            sent += len(page["items"])
            while page["next_cursor"] and sent < MAX_EXPORT_ROWS:
                try:
                    page = rpc.list_records(user_id, org_id, {**args, "cursor": page["next_cursor"]})
                except Exception:  # the status is sent already: cut the stream, never end it clean
                    log.exception("audit export of %s stopped after %d rows", org_id, sent)
                    raise
                yield csv_text(page["items"][:MAX_EXPORT_ROWS - sent])
                sent += len(page["items"])

        return Response(rows(), mimetype="text/csv", headers={
            **NO_STORE, "Content-Disposition": f'attachment; filename="audit-{org_id}.csv"'})
