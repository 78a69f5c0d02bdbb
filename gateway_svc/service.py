"""The gateway: the only service that speaks HTTP. Routes live in
``gateway_svc.routes`` (one mixin per service); this class adds the
operational routes and the RPC proxies every route uses."""
from __future__ import annotations

from nameko.dependency_providers import Config
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.wrappers import Response

from gateway_svc.http import api
from gateway_svc.routes import auth, notifications, orgs, tasks, teams
from shared.errors import AppError
from shared.redis import Redis
from shared.rpc import ServiceRpc
from shared.telemetry import Telemetry

SERVICES = ("auth", "organizations", "employees", "teams", "tasks", "notifications")
HEALTH_TIMEOUT = 2.0


# Route mixins are referenced through their modules: nameko run treats every
# class with entrypoints in this module's namespace as a service to start.
class GatewayService(auth.AuthRoutes, orgs.OrgRoutes, teams.TeamRoutes, tasks.TaskRoutes,
                     notifications.NotificationRoutes):
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

    @api("GET", "/health", auth=False, limit=None)
    def health(self, request):
        """Every service's health (MongoDB, Redis, AMQP); 503 naming what is down."""
        services, pending = {}, {}
        for name in SERVICES:
            try:
                pending[name] = getattr(self, f"rpc_{name}").health.call_async()
            except AppError as exc:
                services[name] = {"service": name, "ok": False, "error": exc.detail}
        for name, reply in pending.items():
            try:
                services[name] = reply.result(timeout=HEALTH_TIMEOUT)
            except AppError as exc:
                services[name] = {"service": name, "ok": False, "error": exc.detail}
        try:
            gateway = {"ok": True, "checks": {"redis": {"ok": True,
                                                       "latency_ms": self.redis.ping()}}}
        except Exception as exc:
            gateway = {"ok": False, "checks": {"redis": {"ok": False, "error": str(exc)}}}
        services["gateway"] = gateway
        down = sorted(name for name, report in services.items() if not report.get("ok"))
        body = {"status": "ok" if not down else "degraded", "down": down, "services": services}
        return (503 if down else 200), body

    @api("GET", "/metrics", auth=False, limit=None)
    def metrics(self, request):
        return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)
