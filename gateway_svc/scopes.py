"""What a personal access token may reach (rules, no I/O).

A token has one scope: ``read`` (GET and HEAD only), ``write`` (every route but
the admin ones) or ``admin`` (everything its user may do). Scopes add to what
the user's role allows, never to it: the services still check the role.

* Admin routes: managing the org itself (delete, transfer, settings), its
  people (employees, invitations, service accounts), its webhooks and its
  notification templates.
* Account routes are never open to a token, whatever its scope: signing in
  and out, sessions, 2FA, the profile's changes, the tokens themselves and
  invitation acceptance (a stolen token must not mint tokens or take over the
  account). ``GET /users/me`` is a read.
* A token bound to an organization reaches only ``/orgs/<that org>/...`` (any
  other org is a 404, as for a non-member) and ``GET /users/me``.
"""
from __future__ import annotations

import re

from shared.errors import Forbidden, NotFound

SCOPES = ("read", "write", "admin")
_RANK = {scope: rank for rank, scope in enumerate(SCOPES)}
READS = ("GET", "HEAD")
ACCOUNT = re.compile(r"^/(auth/|me/tokens|invitations/|users/me)")
ADMIN = re.compile(r"^/orgs/<org_id>(/(transfer-ownership|settings|employees|invitations|"
                   r"service-accounts|webhooks|notification-templates)(/.*)?)?$")
ORG_FREE_READS = ("/users/me",)


def required_scope(method: str, path: str) -> str | None:
    """The scope a token needs for ``method`` on the route ``path`` (its rule,
    without ``/api/v1``); None: no token may call it."""
    if ACCOUNT.match(path) and not (path == "/users/me" and method in READS):
        return None
    if method in READS:
        return "read"
    if ADMIN.match(path) and not (path == "/orgs/<org_id>" and method == "PATCH"):
        return "admin"
    return "write"


def allows(granted: str, needed: str) -> bool:
    return _RANK.get(granted, -1) >= _RANK[needed]


def check_token(claims: dict, method: str, path: str, org_id: str | None) -> None:
    """Refuse a personal access token's request its scope or org does not cover."""
    needed = required_scope(method, path)
    if needed is None:
        raise Forbidden("Personal access tokens cannot manage the account or its tokens; "
                        "sign in instead.")
    bound = claims.get("org_id")
    if bound is not None:
        if org_id is None and not (path in ORG_FREE_READS and method in READS):
            raise Forbidden("This token is bound to one organization; use routes under "
                            f"/orgs/{bound}.")
        if org_id is not None and org_id != bound:
            raise NotFound("No such organization.")
    if not allows(claims.get("scope", ""), needed):
        raise Forbidden(f"This token's scope is {claims.get('scope')!r}; this request needs "
                        f"{needed!r}.", errors={"scope": [f"Needs {needed}."]})
