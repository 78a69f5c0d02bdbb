"""What operator pages read: nameko's standalone RPC proxy (health with the outbox
backlog, dead letters, bulk jobs in progress), RabbitMQ's management API (queues,
the bindings that say who consumes what), the same calls as ``ops.cli``, and the
console's own events tap (web_svc.events_tap) for the events flowing."""
from __future__ import annotations

import time
import urllib.parse
from typing import Any

import requests
from nameko.exceptions import RemoteError

from ops import cli
from shared.event_catalogue import CATALOGUE
from shared.services import SERVICES as _SERVICES
from web_svc import events_tap
from web_svc.gateway import ApiError

SERVICES = tuple(_SERVICES)  # nameko names, in the mesh's order


OPERATOR_RPCS = ("health", "dead_letters", "replay_dead_letters", "purge_dead_letters")


class Ops:
    # every RPC the console makes: its RabbitMQ user may publish exactly these
    # (shared.access.console_permissions), and calling another one fails at once
    CALLS: dict[str, tuple[str, ...]] = {
        **{service: OPERATOR_RPCS for service in SERVICES},
        "auth": (*OPERATOR_RPCS, "is_operator"),
        "tasks": (*OPERATOR_RPCS, "running_jobs"),
    }

    def __init__(self, config: dict, timeout: float = 10):
        self.config = config
        self.timeout = timeout  # operator reads (dead letters walk every handler queue) may be slow

    def rpc(self, service: str, method: str, *args):
        """The RPC's answer; a service that does not answer in time (or is refused) is
        the console's 503 page naming it, never a 500."""
        if method not in self.CALLS.get(service, ()):
            raise ValueError(f"{service}.{method} is not among Ops.CALLS (its broker user may not call it)")
        try:
            return cli.rpc_call(self.config, service, method, *args, timeout=self.timeout)
        except RemoteError:
            raise
        except Exception as exc:
            raise ApiError(503, {"detail": f"{service} did not answer {method} "
                                           f"({type(exc).__name__}); try again shortly."}) from None

    def health(self) -> list[dict]:
        """Each service's health RPC, and its replicas: the consumers of its RPC
        queue (every process of a service consumes it once)."""
        try:
            replicas = {q["name"]: q.get("consumers", 0) for q in cli.list_queues(self.config)}
        except Exception:  # the management API down: the health RPCs still answer
            replicas = {}
        rows = []
        for service in SERVICES:
            try:
                report = self.rpc(service, "health")
            except Exception as exc:  # a console reports a service that does not answer
                report = {"service": service, "ok": False, "checks": {},
                          "error": exc.detail if isinstance(exc, ApiError) else
                          f"no answer ({type(exc).__name__})"}
            rows.append({**report, "replicas": replicas.get(f"rpc-{service}")})
        return rows

    def queues(self) -> list[dict]:
        def rate(queue: dict) -> float:
            return ((queue.get("message_stats") or {}).get("publish_details") or {}).get("rate", 0.0)

        return sorted(({"name": q["name"], "ready": q.get("messages_ready", 0),
                        "unacked": q.get("messages_unacknowledged", 0),
                        "consumers": q.get("consumers", 0), "rate": rate(q)}
                       for q in cli.list_queues(self.config)), key=lambda q: q["name"])

    def dead_letters(self, service: str) -> list[dict]:
        return self.rpc(service, "dead_letters")

    def replay(self, service: str, event_id: str | None) -> int:
        return self.rpc(service, "replay_dead_letters", event_id)

    def purge(self, service: str) -> int:
        return self.rpc(service, "purge_dead_letters")

    def running_jobs(self) -> list[dict]:
        return self.rpc("tasks", "running_jobs")

    def consumers(self) -> dict[tuple[str, str], list[str]]:
        """``{(producer, event type): ["service.handler", ...]}`` from the bindings of
        the events exchanges to the handler queues (``evt-...--service.handler``)."""
        url, auth, vhost = cli.management(self.config)
        response = requests.get(f"{url}/api/bindings/{urllib.parse.quote(vhost, safe='')}",
                                auth=auth, timeout=self.timeout)
        response.raise_for_status()
        found: dict[tuple[str, str], list[str]] = {}
        for b in response.json():
            source, queue = b.get("source", ""), b.get("destination", "")
            if source.endswith(".events") and queue.startswith("evt-") and "--" in queue:
                found.setdefault((source[:-len(".events")], b.get("routing_key", "")), []).append(
                    queue.rpartition("--")[2])
        return {key: sorted(set(handlers)) for key, handlers in found.items()}

    def event_flows(self, client, now: float | None = None) -> list[dict]:
        """Every event type the catalogue names or the tap has seen: producer,
        consumers, counts per minute over the last hour (oldest first)."""
        series = events_tap.per_minute(client, events_tap.vhost_of(self.config["AMQP_URI"]),
                                       now or time.time())
        try:
            consumers = self.consumers()
        except requests.RequestException:
            consumers = {}
        keys = {(spec.producer, spec.name) for spec in CATALOGUE} | set(series)
        rows: list[dict[str, Any]] = [{"producer": producer, "type": event_type,
                 "consumers": consumers.get((producer, event_type), []),
                 "per_minute": series.get((producer, event_type), [0] * events_tap.WINDOW_MINUTES)}
                for producer, event_type in keys]
        for row in rows:
            row["last_hour"] = sum(row["per_minute"])
        return sorted(rows, key=lambda r: (-r["last_hour"], r["producer"], r["type"]))
