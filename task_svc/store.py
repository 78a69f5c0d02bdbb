"""The tasks service's MongoDB collections: indexes beside the queries."""
from shared.mongo import BaseStore


class TaskStore(BaseStore):
    INDEXES: dict = {}
