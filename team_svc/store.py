"""The teams service's MongoDB collections: indexes beside the queries."""
from shared.mongo import BaseStore


class TeamStore(BaseStore):
    INDEXES: dict = {}
