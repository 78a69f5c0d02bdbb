"""Gateway routes for notifications (api.md). Entrypoints stay thin: validate,
one RPC, shape the answer. The websocket (/ws) lives in gateway_svc.realtime."""
from gateway_svc.http import api, query_args, read_json
from notify_svc.schemas import (
    ListQuerySchema,
    NotificationPageSchema,
    PreferencesSchema,
    PushSubscriptionOutSchema,
    PushSubscriptionSchema,
    PushUnsubscribeSchema,
    ReadAllSchema,
    TemplateOutSchema,
    TemplateSchema,
    UnreadCountSchema,
)


class NotificationRoutes:
    @api("GET", "/notifications", query=ListQuerySchema, response=NotificationPageSchema,
         errors=(422,))
    def list_notifications(self, request):
        """The caller's in-app feed, newest first; `next_cursor` pages on."""
        return self.rpc_notifications.list_notifications(
            request.user_id, query_args(request, ListQuerySchema()))

    @api("GET", "/notifications/unread-count", response=UnreadCountSchema)
    def notifications_unread_count(self, request):
        return {"unread": self.rpc_notifications.unread_count(request.user_id)}

    @api("POST", "/notifications/read-all", status=200, response=ReadAllSchema)
    def notifications_read_all(self, request):
        return {"marked": self.rpc_notifications.mark_all_read(request.user_id)}

    @api("POST", "/notifications/<notification_id>/read", status=204, errors=(404,))
    def notification_read(self, request, notification_id):
        self.rpc_notifications.mark_read(request.user_id, notification_id)
        return 204, None

    @api("DELETE", "/notifications/<notification_id>", status=204, errors=(404,))
    def notification_delete(self, request, notification_id):
        self.rpc_notifications.delete_notification(request.user_id, notification_id)
        return 204, None

    @api("GET", "/notifications/preferences", response=PreferencesSchema)
    def notification_preferences(self, request):
        return self.rpc_notifications.get_preferences(request.user_id)

    @api("PUT", "/notifications/preferences", body=PreferencesSchema,
         response=PreferencesSchema, errors=(400, 413, 415, 422))
    def notification_preferences_put(self, request):
        body = read_json(request, PreferencesSchema())
        return self.rpc_notifications.set_preferences(request.user_id, body)

    @api("POST", "/notifications/push-subscriptions", body=PushSubscriptionSchema, status=201,
         response=PushSubscriptionOutSchema, errors=(400, 409, 413, 415, 422))
    def push_subscribe(self, request):
        body = read_json(request, PushSubscriptionSchema())
        return 201, self.rpc_notifications.add_push_subscription(request.user_id, body)

    @api("DELETE", "/notifications/push-subscriptions", body=PushUnsubscribeSchema, status=204,
         errors=(400, 404, 415, 422))
    def push_unsubscribe(self, request):
        body = read_json(request, PushUnsubscribeSchema())
        self.rpc_notifications.remove_push_subscription(request.user_id, body["endpoint"])
        return 204, None

    @api("GET", "/orgs/<org_id>/notification-templates/<key>", response=TemplateOutSchema,
         errors=(403, 404))
    def notification_template(self, request, org_id, key):
        return self.rpc_notifications.get_template(request.user_id, org_id, key)

    @api("PUT", "/orgs/<org_id>/notification-templates/<key>", body=TemplateSchema,
         response=TemplateOutSchema, errors=(400, 403, 404, 413, 415, 422))
    def notification_template_put(self, request, org_id, key):
        body = read_json(request, TemplateSchema())
        return self.rpc_notifications.put_template(request.user_id, org_id, key, body)
