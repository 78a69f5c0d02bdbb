"""The notifications service's MongoDB collections: indexes beside the queries."""
from shared.mongo import BaseStore


class NotificationStore(BaseStore):
    INDEXES: dict = {}
