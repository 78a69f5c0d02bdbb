"""The auth service: entrypoints only."""
from auth_svc.store import AuthStore
from shared import service as base
from shared.events import Events
from shared.mongo import Mongo


class AuthService(base.ServiceBase):
    name = "auth"

    store = Mongo(AuthStore)
    events = Events()
