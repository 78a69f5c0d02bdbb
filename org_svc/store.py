"""The organizations service's MongoDB collections: indexes beside the queries."""
from shared.mongo import BaseStore


class OrganizationStore(BaseStore):
    INDEXES: dict = {}
