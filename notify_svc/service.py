"""The notifications service: entrypoints only."""
from notify_svc.store import NotificationStore
from shared import service as base
from shared.events import Events
from shared.mongo import Mongo


class NotificationService(base.ServiceBase):
    name = "notifications"

    store = Mongo(NotificationStore)
    events = Events()
