"""Wire shapes of the gateway's own routes (health, the OpenAPI document):
what the operational endpoints answer. Every other shape belongs to the
service that owns it (``<service>_svc/schemas.py``)."""
from marshmallow import Schema, fields


class HealthSchema(Schema):
    """200 when everything is up; the same body with 503 when something is down.
    Only up/down: why a service is down is in the gateway's log, not here."""
    status = fields.String(metadata={"enum": ["ok", "degraded"], "example": "ok"})
    down = fields.List(fields.String(), metadata={"example": []})
    services = fields.Dict(keys=fields.String(), values=fields.String(
                               metadata={"enum": ["up", "down"]}),
                           metadata={"example": {"auth": "up", "tasks": "up", "gateway": "up"}})


class OpenApiDocumentSchema(Schema):
    """An OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0)."""
    openapi = fields.String(metadata={"example": "3.1.0"})
    info = fields.Dict(metadata={"example": {"title": "Workforce mesh API", "version": "1.0.0"}})
    servers = fields.List(fields.Dict(), metadata={"example": [{"url": "/"}]})
    paths = fields.Dict(metadata={"example": {"/api/v1/health": {"get": {"operationId": "health"}}}})
    components = fields.Dict(metadata={"example": {"securitySchemes": {"bearerAuth": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}})
