"""The auth service's MongoDB collections: indexes beside the queries."""
from shared.mongo import BaseStore


class AuthStore(BaseStore):
    INDEXES: dict = {}
