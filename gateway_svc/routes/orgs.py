"""Gateway routes for organizations and employees (api.md). Entrypoints stay thin: validate,
one RPC, shape the answer."""


class OrgRoutes:
    pass
