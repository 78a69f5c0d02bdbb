"""The employees service's MongoDB collections: indexes beside the queries."""
from shared.mongo import BaseStore


class EmployeeStore(BaseStore):
    INDEXES: dict = {}
