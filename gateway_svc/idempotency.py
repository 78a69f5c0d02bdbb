"""``Idempotency-Key`` on the POSTs that create something (Stripe's contract).

A client that sends ``Idempotency-Key: <1..255 printable ASCII>`` on a
creating POST (``@api("POST", ..., status=201 | 202)`` with a JSON body, or
``idempotent=True``) may retry it safely:

* the first request claims ``gateway:idem:{user}:{token}:{sha256(key)}`` in
  Redis (``SET NX``, with a short ``IDEMPOTENCY_PENDING_SECONDS`` TTL while it
  runs) and, when the route answers 2xx, stores the answer (status,
  ``Location``, body) there for ``IDEMPOTENCY_TTL_SECONDS`` (24 h);
* the same key with the same request (method, path, canonical JSON body)
  answers that stored answer with ``Idempotent-Replayed: true`` and runs
  nothing;
* the same key with another request is a 422 and runs nothing;
* the same key while the first is still running is a 409 with
  ``Retry-After: 1`` (Stripe does the same; waiting would hold a worker);
* a first request that fails (4xx, 5xx, a crash) keeps nothing: its key is
  released and a retry runs again;
* a secret shown once (a personal access token's ``token``, a webhook's
  ``secret``) is not kept: the replay has it ``null`` (Redis never holds it).

Keys belong to the caller: a user's access tokens share them, and each
personal access token has its own (``gateway_svc.identity``). Redis
unreachable is a 503 (the request checks before would have refused anyway).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import uuid
from typing import Any, Callable

import redis
from werkzeug.wrappers import Response

from shared.errors import Conflict, Unavailable, ValidationFailed

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEY_PREFIX = "gateway:idem:"
DEFAULT_TTL = 24 * 3600
MAX_KEY_LENGTH = 255
KEPT_HEADERS = ("Location",)
SHOWN_ONCE = ("token", "secret")  # fields of a creating answer that Redis must not hold

# delete the claim only while it is still ours (a pending claim that outlived its
# TTL may have been taken by a retry since)
RELEASE_LUA = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['claim'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def valid_key(value: str) -> bool:
    return 0 < len(value) <= MAX_KEY_LENGTH and value.isascii() and value.isprintable()


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What "the same request" means: method, path and the body as canonical JSON
    (key order and spacing do not matter), or its bytes when it is not JSON."""
    try:
        canonical = json.dumps(json.loads(body or b"null"), sort_keys=True,
                               separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError, RecursionError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def storage_key(user_id: str, token_id: str | None, key: str) -> str:
    return f"{KEY_PREFIX}{user_id}:{token_id or '-'}:{hashlib.sha256(key.encode()).hexdigest()}"


def as_parts(result: Any) -> tuple[int, dict, Any] | None:
    """(status, headers, value) of a route's result, or None for a Response."""
    if isinstance(result, Response):
        return None
    if isinstance(result, tuple):
        if len(result) == 3:
            return result[0], dict(result[1] or {}), result[2]
        return result[0], {}, result[1]
    return 200, {}, result


def replay(stored: dict) -> Response:
    headers = {**stored.get("headers", {}), REPLAYED: "true"}
    if stored["body"] is None:
        return Response(status=stored["status"], headers=headers)
    return Response(stored["body"], status=stored["status"], headers=headers,
                    content_type="application/json")


class Idempotency:
    def __init__(self, client: redis.Redis, config: dict):
        self.client = client
        self.ttl = int(config.get("IDEMPOTENCY_TTL_SECONDS", DEFAULT_TTL))
        # longer than any request can run: an RPC times out after RPC_TIMEOUT
        self.pending_ttl = int(config.get("IDEMPOTENCY_PENDING_SECONDS")
                               or max(60, 4 * float(config.get("RPC_TIMEOUT", 5))))
        self._release = client.register_script(RELEASE_LUA)

    def run(self, request, run: Callable[[], Any], body: Callable[[Any], bytes]) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            return run()
        if not valid_key(key):
            raise ValidationFailed("The Idempotency-Key header must be 1 to 255 printable "
                                   "ASCII characters.", errors={HEADER: ["Invalid."]})
        token_id = (getattr(request, "token_claims", None) or {}).get("pat")
        where = storage_key(request.user_id, token_id, key)
        print_ = fingerprint(request.method, request.path, body(request))
        claim = uuid.uuid4().hex
        try:
            stored = self._claim(where, print_, claim)
        except redis.RedisError as exc:
            log.warning("idempotency keys unreachable: %s", exc)
            raise Unavailable("Cannot check the Idempotency-Key right now; retry shortly.") from None
        if stored is not None:
            return self._answer_again(stored, print_)
        try:
            result = run()
        except BaseException:
            self._give_up(where, claim)
            raise
        parts = as_parts(result)
        if parts is None or not 200 <= parts[0] < 300:
            self._give_up(where, claim)
            return result
        status, headers, value = parts
        if isinstance(value, dict):
            value = {k: (None if k in SHOWN_ONCE else v) for k, v in value.items()}
        text = None if status == 204 or value is None else json.dumps(value, default=str)
        record = {"state": "done", "fingerprint": print_, "claim": claim, "status": status,
                  "headers": {k: v for k, v in headers.items() if k in KEPT_HEADERS},
                  "body": text}
        try:
            self.client.set(where, json.dumps(record), ex=self.ttl)
        except redis.RedisError as exc:  # the object exists; a retry would make another
            log.warning("could not store an idempotent answer: %s", exc)
        return result

    def _claim(self, where: str, print_: str, claim: str) -> dict | None:
        """None when this request now holds the key, else what the key holds."""
        pending = json.dumps({"state": "pending", "fingerprint": print_, "claim": claim})
        for _ in range(3):  # the holder may release or expire between SET and GET
            if self.client.set(where, pending, nx=True, ex=self.pending_ttl):
                return None
            raw = self.client.get(where)
            if raw is not None:
                return json.loads(raw)
        raise Unavailable("The Idempotency-Key is contended; retry shortly.")

    @staticmethod
    def _answer_again(stored: dict, print_: str) -> Response:
        if stored.get("fingerprint") != print_:
            raise ValidationFailed(
                "This Idempotency-Key was used with another request; use a new key.",
                errors={HEADER: ["Used with another request."]})
        if stored.get("state") != "done":
            raise Conflict("A request with this Idempotency-Key is still in progress; "
                           "retry shortly.", headers={"Retry-After": "1"})
        return replay(stored)

    def _give_up(self, where: str, claim: str) -> None:
        try:
            self._release(keys=[where], args=[claim])
        except redis.RedisError as exc:  # the pending claim expires on its own
            log.warning("could not release an idempotency key: %s", exc)


def idempotent(fn: Callable, body: Callable[[Any], bytes]) -> Callable:
    """Wrap a route so an ``Idempotency-Key`` makes it safe to retry; ``body``
    reads the request's body (chunked or not) once."""

    @functools.wraps(fn)
    def route(self, request, *args, **kwargs):
        return Idempotency(self.redis.client, self.config).run(
            request, lambda: fn(self, request, *args, **kwargs), body)

    return route
