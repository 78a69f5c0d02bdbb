"""The organizations service: entrypoints only."""
from org_svc.store import OrganizationStore
from shared import service as base
from shared.events import Events
from shared.mongo import Mongo


class OrganizationService(base.ServiceBase):
    name = "organizations"

    store = Mongo(OrganizationStore)
    events = Events()
