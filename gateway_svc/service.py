"""The gateway: the only service that speaks HTTP. Routes live in
``gateway_svc.routes`` (one mixin per service); this class adds the
operational routes and the RPC proxies every route uses."""
from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

import swagger_ui_bundle
from nameko.dependency_providers import Config
from werkzeug.wrappers import Response

from gateway_svc.http import api
from gateway_svc.openapi import cached_spec
from gateway_svc.routes import (
    analytics,
    audit,
    auth,
    csv_files,
    notifications,
    orgs,
    search,
    service_accounts,
    task_links,
    task_views,
    tasks,
    teams,
    tokens,
    webhooks,
)
from gateway_svc.schemas import HealthSchema, OpenApiDocumentSchema
from shared.errors import AppError, NotFound
from shared.redis import Redis
from shared.rpc import ServiceRpc
from shared.services import SERVICES
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0
SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Workforce mesh API</title>
<link rel="stylesheet" href="docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/swagger-init.js"></script>
</body></html>"""
# a separate file, not inline, so a strict Content-Security-Policy can forbid inline scripts
DOCS_INIT = """window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui",
  deepLinking: true, persistAuthorization: true});"""


# Route mixins are referenced through their modules: nameko run treats every
# class with entrypoints in this module's namespace as a service to start.
class GatewayService(auth.AuthRoutes, orgs.OrgRoutes, teams.TeamRoutes, tasks.TaskRoutes,
                     task_links.TaskLinkRoutes,
                     notifications.NotificationRoutes, webhooks.WebhookRoutes,
                     analytics.AnalyticsRoutes, search.SearchRoutes, audit.AuditRoutes,
                     tokens.TokenRoutes, service_accounts.ServiceAccountRoutes,
                     task_views.TaskViewRoutes, csv_files.CsvRoutes):
    name = "gateway"

    config = Config()
    telemetry = Telemetry()
    redis = Redis()

    rpc_auth = ServiceRpc("auth")
    rpc_organizations = ServiceRpc("organizations")
    rpc_employees = ServiceRpc("employees")
    rpc_teams = ServiceRpc("teams")
    rpc_tasks = ServiceRpc("tasks")
    rpc_notifications = ServiceRpc("notifications")
    rpc_webhooks = ServiceRpc("webhooks")
    rpc_analytics = ServiceRpc("analytics")
    rpc_search = ServiceRpc("search")
    rpc_audit = ServiceRpc("audit")

    @api("GET", "/health", auth=False, limit="public", response=HealthSchema)
    def health(self, request):
        """Every service up or down (503 naming what is down); why, only in the logs."""
        reports, pending = {}, {}
        for name in SERVICES:
            try:
                pending[name] = getattr(self, f"rpc_{name}").health.call_async()
            except AppError as exc:
                reports[name] = {"ok": False, "error": exc.detail}
        for name, reply in pending.items():
            try:
                reports[name] = reply.result(timeout=HEALTH_TIMEOUT)
            except AppError as exc:
                reports[name] = {"ok": False, "error": exc.detail}
        try:
            self.redis.ping()
            reports["gateway"] = {"ok": True}
        except Exception as exc:
            reports["gateway"] = {"ok": False, "error": f"Redis: {exc}"}
        down = sorted(name for name, report in reports.items() if not report.get("ok"))
        for name in down:
            log.warning("health: %s is down: %s", name, reports[name])
        body = {"status": "ok" if not down else "degraded", "down": down,
                "services": {name: "down" if name in down else "up" for name in reports}}
        return (503 if down else 200), body

    @api("GET", "/openapi.json", auth=False, limit=None, response=OpenApiDocumentSchema)
    def openapi(self, request):
        """The OpenAPI 3.1 document of this API."""
        return cached_spec(type(self))

    @api("GET", "/docs", auth=False, limit=None, response_media="text/html")
    def docs(self, request):
        """Swagger UI (served from the packaged copy: no CDN)."""
        return Response(DOCS_PAGE, content_type="text/html; charset=utf-8")

    @api("GET", "/docs/<asset>", auth=False, limit=None,
         response_media=("text/css", "text/javascript"))
    def docs_asset(self, request, asset):
        """Swagger UI's files."""
        if asset == "swagger-init.js":
            return Response(DOCS_INIT, content_type="text/javascript")
        if asset not in {"swagger-ui.css", "swagger-ui-bundle.js"}:
            raise NotFound("No such file.")
        content_type = mimetypes.guess_type(asset)[0] or "application/octet-stream"
        response = Response((SWAGGER_DIR / asset).read_bytes(), content_type=content_type)
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response
