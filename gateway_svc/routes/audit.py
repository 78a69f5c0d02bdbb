"""Audit routes (owners and admins: ``audit.read``): an org's records, newest
first, filtered, and the same as a streamed CSV export. The audit service
authorizes and validates; nothing here is cached (audit logs stay in the
database, and ``Cache-Control: no-store`` keeps them out of other caches)."""
from __future__ import annotations

from audit_svc.schemas import (
    MAX_EXPORT_ROWS,
    FilterSchema,
    ListArgsSchema,
    RecordPageSchema,
    csv_text,
)
from gateway_svc.csvstream import NO_STORE, export_args, stream_csv
from gateway_svc.http import api

AUDIT = "/orgs/<org_id>/audit"


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
        args, user_id = export_args(request.args.to_dict()), request.user_id
        return stream_csv(
            lambda cursor: self.rpc_audit.list_records(
                user_id, org_id, {**args, **({"cursor": cursor} if cursor else {})}),
            csv_text, MAX_EXPORT_ROWS, f"audit-{org_id}.csv", f"audit of {org_id}")
