"""The employees service: entrypoints only."""
from employee_svc.store import EmployeeStore
from shared import service as base
from shared.events import Events
from shared.mongo import Mongo


class EmployeeService(base.ServiceBase):
    name = "employees"

    store = Mongo(EmployeeStore)
    events = Events()
