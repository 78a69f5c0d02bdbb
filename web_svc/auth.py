"""The signed-in person: API tokens kept server side, refreshed when they expire.

The browser holds only the session cookie (Flask-Session, data in Redis under
``web:session:``). The tokens live apart under ``web:tokens:<key>`` so that two
requests of one person see each other's refresh; a refresh token is used once
(auth revokes the whole session when one is reused), so refreshing is done
under a Redis lock and re-reads the tokens first.
"""
from __future__ import annotations

import json
import secrets
import time
from functools import wraps

from flask import current_app, g, redirect, request, session, url_for

from web_svc.gateway import ApiError

TOKENS = "web:tokens:"
EARLY_REFRESH_SECONDS = 30  # refresh this long before the access token expires


class SignInRequired(Exception):
    pass


def _redis():
    return current_app.extensions["web_redis"]


def _gateway():
    return current_app.extensions["gateway"]


def _ttl() -> int:
    return int(current_app.config["PERMANENT_SESSION_LIFETIME"].total_seconds())


def _store(key: str, answer: dict) -> dict:
    tokens = {"access": answer["access_token"], "refresh": answer["refresh_token"],
              "expires_at": time.time() + int(answer.get("expires_in") or 900)}
    _redis().set(TOKENS + key, json.dumps(tokens), ex=_ttl())
    return tokens


def _load(key: str) -> dict | None:
    raw = _redis().get(TOKENS + key)
    return json.loads(raw) if raw else None


def sign_in(answer: dict) -> None:
    """Start a fresh session (new id: no fixation) for a login/register answer;
    an emailed link being followed (``link:*``, e.g. an invitation) is kept."""
    pending_links = {k: v for k, v in session.items() if k.startswith("link:")}
    # flask-session's interface (web_svc.app) has regenerate; Flask's base type does not
    current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]
    session.clear()
    session.update(pending_links)
    key = secrets.token_urlsafe(24)
    _store(key, answer)
    session["tokens_key"] = key
    session["user"] = {"user_id": answer["user"]["user_id"], "email": answer["user"]["email"],
                       "name": answer["user"].get("name") or ""}
    session.permanent = True


def sign_out() -> None:
    key = session.get("tokens_key")
    if key:
        tokens = _load(key)
        if tokens:
            try:
                _gateway().call("POST", "/auth/logout", tokens["access"])
            except ApiError:
                pass  # signed out here whatever the API says
        _redis().delete(TOKENS + key)
    session.clear()


def signed_in() -> bool:
    return bool(session.get("tokens_key"))


def current_user() -> dict | None:
    return session.get("user")


def _refresh(key: str, stale_access: str | None) -> dict:
    with _redis().lock(f"web:lock:refresh:{key}", timeout=20, blocking_timeout=20):
        tokens = _load(key)
        if tokens is None:
            raise SignInRequired
        if tokens["access"] != stale_access and tokens["expires_at"] - EARLY_REFRESH_SECONDS > time.time():
            return tokens  # another request refreshed meanwhile
        try:
            answer = _gateway().call("POST", "/auth/refresh", json={"refresh_token": tokens["refresh"]})
        except ApiError as exc:
            if exc.status in (401, 422):
                _redis().delete(TOKENS + key)
                session.clear()
                raise SignInRequired from None
            raise
        return _store(key, answer)


def access_token() -> str:
    key = session.get("tokens_key")
    tokens = _load(key) if key else None
    if not key or tokens is None:
        session.clear()
        raise SignInRequired
    if tokens["expires_at"] - EARLY_REFRESH_SECONDS <= time.time():
        tokens = _refresh(key, tokens["access"])
    return tokens["access"]


def api(method: str, path: str, **kwargs):
    """Call the API as the signed-in person; one refresh and retry on a 401."""
    token = access_token()
    try:
        return _gateway().call(method, path, token, **kwargs)
    except ApiError as exc:
        if exc.status != 401:
            raise
    token = _refresh(session["tokens_key"], token)["access"]
    return _gateway().call(method, path, token, **kwargs)


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not signed_in():
            return redirect(url_for("people.login", next=request.path))
        return view(*args, **kwargs)
    return wrapper


def operator_required(view):
    """Operators only; everyone else gets the 403 page (raised for the app's handler)."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not signed_in():
            return redirect(url_for("people.login", next=request.path))
        if not is_operator():
            raise ApiError(403, {"detail": "Operator pages are for operators."})
        return view(*args, **kwargs)
    return wrapper


def is_operator() -> bool:
    """Asked of auth on every operator request (a flag can be taken away)."""
    if "is_operator" not in g:
        user = current_user()
        g.is_operator = user is not None and bool(
            current_app.extensions["ops"].rpc("auth", "is_operator", user["user_id"]))
    return g.is_operator
