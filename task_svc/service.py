"""The tasks service: entrypoints only."""
from shared import service as base
from shared.events import Events
from shared.mongo import Mongo
from task_svc.store import TaskStore


class TaskService(base.ServiceBase):
    name = "tasks"

    store = Mongo(TaskStore)
    events = Events()
