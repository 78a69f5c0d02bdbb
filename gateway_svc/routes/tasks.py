"""Gateway routes for tasks (api.md). Entrypoints stay thin: validate,
one RPC, shape the answer."""


class TaskRoutes:
    pass
