"""The websocket at ``/api/v1/ws[?last_id=...]``: real-time in-app
notifications for the token's user.

The token is an access token (a JWT) or a personal access token (``wfp_...``),
checked as the HTTP routes check it: a personal token's record must be live,
and its scope must allow ``GET /ws`` (``read`` does, as for ``GET
/notifications``; a token bound to one organization does not, as it may not
read the feed either: ``gateway_svc.scopes``).

The access token never goes in the URL (URLs end up in access logs and
proxies' logs): the client offers it as a subprotocol, ``new WebSocket(url,
["bearer", token])`` (the server answers ``Sec-WebSocket-Protocol: bearer``),
or sends ``{"type": "auth", "token": ..., "last_id"?: ...}`` as its first
message within ``AUTH_SECONDS``. A ``?token=`` is refused (1008).

The notifications service publishes every new in-app item on the Redis
channel ``notifications:user:{user_id}`` and appends it to the capped stream
``notifications:stream:{user_id}``. Each gateway process keeps ONE pattern
subscription and fans messages out to its local sockets, so any number of
gateway processes serve any user. A reconnecting client passes the id of the
last notification it saw (``last_id``) and first receives what it missed,
oldest first, from the stream (``{"type": "resync"}`` when that id is older
than the stream holds: refetch ``GET /notifications``).

A bad, expired or revoked token is answered by closing with 1008 (policy
violation); so is a token expiring while connected, and one revoked while
connected (logout, a revoked session, a password change or reset, a personal
token revoked or its account deleted): each process checks its sockets'
tokens against auth's blacklist and token records every
``WS_REVOCATION_CHECK_SECONDS`` (one pipelined round trip for all of them).
"""
from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qs

import eventlet
import redis
from eventlet.queue import Empty, LightQueue
from eventlet.websocket import WebSocketWSGI

from gateway_svc.identity import (
    UNKNOWN_PAT,
    Identity,
    PersonalTokens,
    ask_if_revoked,
    is_personal_token,
    revoked_by,
)
from gateway_svc.scopes import check_token
from notify_svc.contract import CHANNEL_PREFIX, user_stream
from shared.errors import Unauthorized
from shared.redis import clustered, make_client

log = logging.getLogger(__name__)

WS_PATH = "/api/v1/ws"
WS_ROUTE = "/ws"  # its route as gateway_svc.scopes names routes (a read)
POLICY_VIOLATION = 1008
PING_SECONDS = 25
CATCH_UP_MAX = 500
AUTH_SECONDS = 10
BEARER = "bearer"  # the subprotocol naming the token that follows it
REVOKED = object()  # queued to a socket whose token was revoked


class Realtime:
    """The websocket WSGI app of one gateway process."""

    def __init__(self, config: dict):
        self.redis = make_client(config)
        self.identity = Identity(config, self.redis)
        self.personal_tokens = PersonalTokens(self.redis)
        self.uri = config["REDIS_URI"]
        self.sockets: dict[str, set[LightQueue]] = {}
        self.claims: dict[LightQueue, dict] = {}   # each socket's token, for revocation
        self.revocation_seconds = float(config.get("WS_REVOCATION_CHECK_SECONDS", 5))
        self.listener = None
        self.watcher = None
        self.ws_app = WebSocketWSGI.configured(self.handle, supported_protocols=[BEARER],
                                               support_legacy_versions=True)

    def __call__(self, environ, start_response):
        return self.ws_app(environ, start_response)

    # one subscription per process ------------------------------------------
    def _ensure_listener(self) -> None:
        if self.listener is None or self.listener.dead:
            ready = eventlet.event.Event()
            self.listener = eventlet.spawn(self._listen, ready)
            ready.wait()

    def _ensure_watcher(self) -> None:
        if self.watcher is None or self.watcher.dead:
            self.watcher = eventlet.spawn(self._watch_revocations)

    def _watch_revocations(self) -> None:
        while True:
            eventlet.sleep(self.revocation_seconds)
            connected = list(self.claims.items())
            if not connected:
                continue
            try:
                pipe = self.redis.pipeline(transaction=False)
                counts = [ask_if_revoked(pipe, claims) for _, claims in connected]
                replies = iter(pipe.execute())
                answers = [[next(replies) for _ in range(n)] for n in counts]
            except redis.RedisError as exc:  # checked again next round
                log.warning("cannot check websocket tokens for revocation: %s", exc)
                continue
            for (queue, claims), answer in zip(connected, answers, strict=True):
                if revoked_by(claims, answer):
                    queue.put(REVOKED)

    def _subscriber(self):
        """(a client to close, its pubsub). On a cluster a PUBLISH reaches every
        node, so the subscription is on one node the cluster client picks (another
        one after that node's loss)."""
        if clustered(self.redis):
            return None, self.redis.pubsub(ignore_subscribe_messages=True)
        client = redis.Redis.from_url(self.uri, decode_responses=True)
        return client, client.pubsub(ignore_subscribe_messages=True)

    def _listen(self, ready) -> None:
        while True:
            client, pubsub = None, None
            try:
                client, pubsub = self._subscriber()
                pubsub.psubscribe(f"{CHANNEL_PREFIX}*")
                pubsub.get_message(timeout=1)  # the subscription is confirmed
                if not ready.ready():
                    ready.send(True)
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "pmessage":
                        user_id = message["channel"][len(CHANNEL_PREFIX):]
                        for queue in list(self.sockets.get(user_id, ())):
                            queue.put(message["data"])
            except redis.RedisError as exc:
                log.warning("real-time subscription lost, reconnecting: %s", exc)
                if not ready.ready():
                    ready.send(False)
                eventlet.sleep(1)
            finally:
                if pubsub is not None:
                    pubsub.close()
                if client is not None:
                    client.close()

    def stop(self) -> None:
        for thread in (self.listener, self.watcher):
            if thread is not None:
                thread.kill()
        for queues in list(self.sockets.values()):
            for queue in list(queues):
                queue.put(None)
        self.redis.close()

    # catch-up ----------------------------------------------------------------
    def missed(self, user_id: str, last_id: str) -> list[str] | None:
        """Messages after notification ``last_id``, oldest first; None if it is
        no longer in the stream."""
        entries = self.redis.xrevrange(user_stream(user_id), count=CATCH_UP_MAX)
        newer: list[str] = []
        for _, fields in entries:
            message = fields.get("m", "")
            try:
                if json.loads(message)["notification"]["id"] == last_id:
                    return list(reversed(newer))
            except (ValueError, KeyError, TypeError):
                continue
            newer.append(message)
        return None

    # one connection -------------------------------------------------------------
    def _credentials(self, ws, query: dict) -> tuple[str, str]:
        """(token, last_id) from the subprotocol or the first message."""
        last_id = (query.get("last_id") or [""])[0]
        offered = [p.strip() for p in ws.environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "").split(",")]
        if len(offered) >= 2 and offered[0] == BEARER:
            return offered[1], last_id
        try:
            with eventlet.Timeout(AUTH_SECONDS):
                first = ws.wait()
            message = json.loads(first or "")
        except (eventlet.Timeout, ValueError, OSError):
            return "", last_id
        if not isinstance(message, dict) or message.get("type") != "auth":
            return "", last_id
        return str(message.get("token") or ""), str(message.get("last_id") or last_id)

    def authenticate(self, token: str) -> dict:
        """The claims of a live token allowed on the websocket: the checks of
        an HTTP request (gateway_svc.http.Guard), for ``GET /ws``."""
        if not is_personal_token(token):
            return self.identity.verify_token(token)
        claims = self.personal_tokens.resolve(token)
        if self.identity.is_revoked(claims):
            raise Unauthorized(UNKNOWN_PAT)
        check_token(claims, "GET", WS_ROUTE, None)
        self.personal_tokens.note_use(claims["pat"])
        return claims

    def handle(self, ws) -> None:
        query = parse_qs(ws.environ.get("QUERY_STRING", ""))
        if "token" in query:  # would sit in access logs: refused, so clients stop sending it
            ws.close((POLICY_VIOLATION, "send the token as a subprotocol or first message"))
            return
        token, last_id = self._credentials(ws, query)
        try:
            claims = self.authenticate(token)
        except Exception as exc:  # 401, 403 or 503 alike: policy violation, nothing kept
            ws.close((POLICY_VIOLATION, getattr(exc, "detail", "invalid token")[:100]))
            return
        user_id, expires = claims["sub"], float(claims.get("exp") or time.time() + 3600)
        queue: LightQueue = LightQueue()
        self._ensure_listener()
        self._ensure_watcher()
        self.sockets.setdefault(user_id, set()).add(queue)
        self.claims[queue] = claims
        reader = eventlet.spawn(self._read_until_closed, ws, queue)
        try:
            ws.send(json.dumps({"type": "hello", "user_id": user_id}))
            log.info("websocket opened", extra={"fields": {"user_id": user_id}})
            seen = set()
            if last_id:
                missed = self.missed(user_id, last_id)
                if missed is None:
                    ws.send(json.dumps({"type": "resync"}))
                for message in missed or []:
                    seen.add(_id_of(message))
                    ws.send(message)
            self._pump(ws, queue, seen, expires)
        except OSError:
            pass  # the client went away
        finally:
            reader.kill()
            self.claims.pop(queue, None)
            self.sockets.get(user_id, set()).discard(queue)
            if not self.sockets.get(user_id):
                self.sockets.pop(user_id, None)

    def _pump(self, ws, queue: LightQueue, seen: set, expires: float) -> None:
        while True:
            left = expires - time.time()
            if left <= 0:
                ws.close((POLICY_VIOLATION, "token expired"))
                return
            try:
                message = queue.get(timeout=min(PING_SECONDS, left))
            except Empty:
                if time.time() < expires:
                    ws.send(json.dumps({"type": "ping"}))
                continue
            if message is None:  # closed by the client, or the gateway stops
                return
            if message is REVOKED:
                ws.close((POLICY_VIOLATION, "token revoked"))
                return
            if seen and _id_of(message) in seen:
                continue
            ws.send(message)

    @staticmethod
    def _read_until_closed(ws, queue: LightQueue) -> None:
        try:
            while ws.wait() is not None:
                pass  # clients send nothing we need; pings are answered by eventlet
        except Exception:
            pass
        queue.put(None)


def _id_of(message: str) -> str | None:
    try:
        return json.loads(message)["notification"]["id"]
    except (ValueError, KeyError, TypeError):
        return None
