"""Wire shapes of the gateway's own routes (health, the OpenAPI document):
what the operational endpoints answer. Every other shape belongs to the
service that owns it (``<service>_svc/schemas.py``)."""
from marshmallow import Schema, fields


class CheckSchema(Schema):
    ok = fields.Boolean()
    latency_ms = fields.Float()
    error = fields.String(metadata={"description": "why the check failed"})


class ServiceHealthSchema(Schema):
    """One service's ``health`` RPC (``shared.service.ServiceBase.health``)."""
    service = fields.String(metadata={"example": "tasks"})
    ok = fields.Boolean()
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema),
                         metadata={"example": {"mongodb": {"ok": True, "latency_ms": 0.4},
                                               "redis": {"ok": True, "latency_ms": 0.2},
                                               "amqp": {"ok": True}}})
    latency_ms = fields.Float()
    error = fields.String(metadata={"description": "why the service did not answer"})


class HealthSchema(Schema):
    """200 when everything is up; the same body with 503 when something is down."""
    status = fields.String(metadata={"enum": ["ok", "degraded"]})
    down = fields.List(fields.String(), metadata={"example": []})
    services = fields.Dict(keys=fields.String(), values=fields.Nested(ServiceHealthSchema))


class OpenApiDocumentSchema(Schema):
    """An OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0)."""
    openapi = fields.String(metadata={"example": "3.1.0"})
    info = fields.Dict()
    servers = fields.List(fields.Dict())
    paths = fields.Dict()
    components = fields.Dict()
