"""Gateway routes for notifications (api.md). Entrypoints stay thin: validate,
one RPC, shape the answer."""


class NotificationRoutes:
    pass
