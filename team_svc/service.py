"""The teams service: entrypoints only."""
from shared import service as base
from shared.events import Events
from shared.mongo import Mongo
from team_svc.store import TeamStore


class TeamService(base.ServiceBase):
    name = "teams"

    store = Mongo(TeamStore)
    events = Events()
