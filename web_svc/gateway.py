"""The gateway's public HTTP API as the web app calls it: the only way the
web app reaches what users do (it holds no privilege a browser lacks)."""
from __future__ import annotations

import requests


class ApiError(Exception):
    """A 4xx/5xx answer of the API: its status, problem detail and field errors."""

    def __init__(self, status: int, body: dict | None):
        body = body if isinstance(body, dict) else {}
        self.status = status
        self.detail = body.get("detail") or body.get("title") or f"HTTP {status}"
        self.errors = body.get("errors") or {}
        super().__init__(f"{status} {self.detail}")

    def field_errors(self) -> dict[str, str]:
        """``{field: "message; message"}`` for the form beside each field (nested
        errors under their top-level field)."""
        return {name: _flatten(value) for name, value in self.errors.items()}


def _flatten(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "; ".join(_flatten(v) for v in value)
    return str(value)


class Gateway:
    def __init__(self, base_url: str, timeout: float = 15):
        self.api = f"{base_url.rstrip('/')}/api/v1"
        self.timeout = timeout
        self.http = requests.Session()

    def call(self, method: str, path: str, token: str | None = None, *, json=None,
             params=None, files=None, user_agent: str | None = None, raw: bool = False):
        """The answer's JSON (None for 204); ``raw=True``: the response itself, with
        redirects not followed (a download may be a 302 to a presigned URL)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if user_agent:
            headers["User-Agent"] = user_agent[:256]
        try:
            response = self.http.request(method, f"{self.api}{path}", json=json, params=params,
                                         files=files, headers=headers, timeout=self.timeout,
                                         allow_redirects=not raw, stream=raw)
        except requests.RequestException:
            raise ApiError(503, {"detail": "The service is not reachable; try again shortly."}) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise ApiError(response.status_code, body)
        if raw:
            return response
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
