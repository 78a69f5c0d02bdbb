"""Wire shapes of the gateway's own routes (health, the OpenAPI document):
what the operational endpoints answer. Every other shape belongs to the
service that owns it (``<service>_svc/schemas.py``)."""
from marshmallow import Schema, fields


class CheckSchema(Schema):
    ok = fields.Boolean(metadata={"example": True})
    latency_ms = fields.Float(metadata={"example": 0.4})
    error = fields.String(metadata={"description": "why the check failed",
                                    "example": "Connection refused"})


class ServiceHealthSchema(Schema):
    """One service's ``health`` RPC (``shared.service.ServiceBase.health``)."""
    service = fields.String(metadata={"example": "tasks"})
    ok = fields.Boolean(metadata={"example": True})
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema),
                         metadata={"example": {"mongodb": {"ok": True, "latency_ms": 0.4},
                                               "redis": {"ok": True, "latency_ms": 0.2},
                                               "amqp": {"ok": True}}})
    latency_ms = fields.Float(metadata={"example": 3.1})
    error = fields.String(metadata={"description": "why the service did not answer",
                                    "example": "The tasks service did not answer in time."})


class HealthSchema(Schema):
    """200 when everything is up; the same body with 503 when something is down."""
    status = fields.String(metadata={"enum": ["ok", "degraded"], "example": "ok"})
    down = fields.List(fields.String(), metadata={"example": []})
    services = fields.Dict(keys=fields.String(), values=fields.Nested(ServiceHealthSchema),
                           metadata={"example": {
                               "tasks": {"service": "tasks", "ok": True, "latency_ms": 3.1,
                                         "checks": {"mongodb": {"ok": True, "latency_ms": 0.4},
                                                    "redis": {"ok": True, "latency_ms": 0.2},
                                                    "amqp": {"ok": True}}},
                               "gateway": {"ok": True,
                                           "checks": {"redis": {"ok": True, "latency_ms": 0.2}}}}})


class OpenApiDocumentSchema(Schema):
    """An OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0)."""
    openapi = fields.String(metadata={"example": "3.1.0"})
    info = fields.Dict(metadata={"example": {"title": "Workforce mesh API", "version": "1.0.0"}})
    servers = fields.List(fields.Dict(), metadata={"example": [{"url": "/"}]})
    paths = fields.Dict(metadata={"example": {"/api/v1/health": {"get": {"operationId": "health"}}}})
    components = fields.Dict(metadata={"example": {"securitySchemes": {"bearerAuth": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}})
