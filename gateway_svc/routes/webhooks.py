"""Webhook routes (org admins): endpoints, their signing secret and their
delivery log. The webhooks service validates, authorizes (``webhook.manage``)
and decides tenancy (404 outside the org) before it does anything."""
from __future__ import annotations

from gateway_svc.http import api, read_json
from shared.pagination import PageArgsSchema
from webhook_svc.schemas import (
    DeliveryPageSchema,
    DeliverySchema,
    SecretSchema,
    WebhookCreatedSchema,
    WebhookCreateSchema,
    WebhookPageSchema,
    WebhookSchema,
    WebhookUpdateSchema,
)

HOOKS = "/orgs/<org_id>/webhooks"
HOOK = f"{HOOKS}/<webhook_id>"


class WebhookRoutes:
    @api("POST", HOOKS, body=WebhookCreateSchema, response=WebhookCreatedSchema, status=201,
         errors=(403, 404))
    def create_webhook(self, request, org_id):
        """Register an endpoint; the answer shows its signing secret, once."""
        return 201, self.rpc_webhooks.create_webhook(request.user_id, org_id, read_json(request))

    @api("GET", HOOKS, query=PageArgsSchema, response=WebhookPageSchema, errors=(403, 404))
    def list_webhooks(self, request, org_id):
        return self.rpc_webhooks.list_webhooks(request.user_id, org_id, request.args.to_dict())

    @api("GET", HOOK, response=WebhookSchema, errors=(403, 404))
    def get_webhook(self, request, org_id, webhook_id):
        return self.rpc_webhooks.get_webhook(request.user_id, org_id, webhook_id)

    @api("PATCH", HOOK, body=WebhookUpdateSchema, response=WebhookSchema, errors=(403, 404))
    def update_webhook(self, request, org_id, webhook_id):
        """Change the URL or event types, or enable a disabled endpoint again."""
        return self.rpc_webhooks.update_webhook(request.user_id, org_id, webhook_id,
                                                read_json(request))

    @api("DELETE", HOOK, status=204, errors=(403, 404))
    def delete_webhook(self, request, org_id, webhook_id):
        self.rpc_webhooks.delete_webhook(request.user_id, org_id, webhook_id)
        return 204, None

    @api("POST", f"{HOOK}/rotate-secret", response=SecretSchema, status=200, errors=(403, 404))
    def rotate_webhook_secret(self, request, org_id, webhook_id):
        """A new signing secret, shown once; deliveries are signed with it at once."""
        return self.rpc_webhooks.rotate_secret(request.user_id, org_id, webhook_id)

    @api("GET", f"{HOOK}/deliveries", query=PageArgsSchema, response=DeliveryPageSchema,
         errors=(403, 404))
    def list_webhook_deliveries(self, request, org_id, webhook_id):
        """Every delivery, newest first: state, attempts, status, latency, answer."""
        return self.rpc_webhooks.list_deliveries(request.user_id, org_id, webhook_id,
                                                 request.args.to_dict())

    @api("POST", f"{HOOK}/deliveries/<delivery_id>/redeliver", response=DeliverySchema,
         status=202, errors=(403, 404))
    def redeliver_webhook(self, request, org_id, webhook_id, delivery_id):
        """Send a delivery again now."""
        return 202, self.rpc_webhooks.redeliver(request.user_id, org_id, webhook_id, delivery_id)
