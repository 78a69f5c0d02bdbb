"""Who is calling: access-token verification for ``@api(auth=True)`` routes.

The auth issue fills this in (JWT verified locally with auth's JWKS, ``jti``
blacklist in Redis, failing closed). Until then every authenticated route
answers 401, which is the safe default.
"""
from __future__ import annotations

from shared.errors import Unauthorized


class Identity:
    def __init__(self, config: dict, redis_client):
        self.config = config
        self.redis = redis_client

    def authenticate(self, request) -> dict:
        """The verified claims of the request's bearer token, or Unauthorized."""
        raise Unauthorized("Authentication is not available.")
