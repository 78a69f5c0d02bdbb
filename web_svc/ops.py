"""What operator pages read: nameko's standalone RPC proxy (health, dead letters)
and RabbitMQ's management API (queues), the same calls as ``ops.cli``."""
from __future__ import annotations

from ops import cli
from shared.services import SERVICES as _SERVICES

SERVICES = tuple(_SERVICES)  # nameko names, in the mesh's order


class Ops:
    def __init__(self, config: dict, timeout: float = 5):
        self.config = config
        self.timeout = timeout

    def rpc(self, service: str, method: str, *args):
        return cli.rpc_call(self.config, service, method, *args, timeout=self.timeout)

    def health(self) -> list[dict]:
        rows = []
        for service in SERVICES:
            try:
                report = self.rpc(service, "health")
            except Exception as exc:  # a console reports a service that does not answer
                report = {"service": service, "ok": False, "checks": {},
                          "error": f"no answer ({type(exc).__name__})"}
            rows.append(report)
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
