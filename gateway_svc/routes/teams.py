"""Gateway routes for teams (api.md). Entrypoints stay thin: validate,
one RPC, shape the answer."""


class TeamRoutes:
    pass
