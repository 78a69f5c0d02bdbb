"""Gateway routes for auth (api.md). Entrypoints stay thin: validate,
one RPC, shape the answer."""


class AuthRoutes:
    pass
