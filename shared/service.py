"""What every service of the mesh has: telemetry, Redis, and the operator
RPCs (``health``, dead letters). A service subclasses :class:`ServiceBase`,
sets ``name`` and ``store = Mongo(ItsStore)``, and adds its own entrypoints."""
from __future__ import annotations

import time
from importlib import metadata

from nameko.dependency_providers import Config

from shared import deadletters
from shared.events import (
    OUTBOX_RELAY_INTERVAL,
    Events,
    HandlerBudget,
    HandlerQueues,
    event_queue_type,
)
from shared.mongo import Mongo
from shared.redis import Redis
from shared.rpc import CallDeadline, rpc
from shared.telemetry import Telemetry
from shared.timers import periodic


def _probe(check) -> dict:
    try:
        return {"ok": True, "latency_ms": round(check(), 3)}
    except Exception as exc:  # health reports failures, it does not raise them
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _version() -> str:
    """The mesh's version (pyproject.toml), as installed where this process runs."""
    try:
        return metadata.version("workforce-mesh")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version()


class Flows:
    """A service's work of several steps (its ``flows.py``), on one worker's
    dependencies: the store, Redis, events and config of every service, and
    the other dependencies a subclass names in ``uses`` (RPC proxies, mailers)."""

    uses: tuple[str, ...] = ()

    def __init__(self, svc) -> None:
        self.name = svc.name
        self.store = svc.store
        self.redis = svc.redis
        self.events = svc.events
        self.config = svc.config
        for dependency in self.uses:
            setattr(self, dependency, getattr(svc, dependency))


class ServiceBase:
    name: str = ""

    config = Config()
    telemetry = Telemetry()
    redis = Redis()
    store = Mongo()
    handler_queues = HandlerQueues()
    events = Events()
    deadline = CallDeadline()
    handler_budget = HandlerBudget()

    @rpc
    def health(self) -> dict:
        """MongoDB and Redis pings with their latency; AMQP is up if this answers;
        the outbox backlog (events recorded, not yet sent) when MongoDB answers.
        With the cache on its own instance (REDIS_CACHE_URI) it is ``redis_cache``,
        reported but not counted in ``ok``: the cache fails open, so its outage
        slows a service down and must not take it out of service."""
        started = time.perf_counter()
        checks = {"mongodb": _probe(self.store.ping), "redis": _probe(self.redis.ping),
                  "amqp": {"ok": True}}
        cache = _probe(self.redis.ping_cache) if self.redis.separate_cache else None
        outbox = None
        if checks["mongodb"]["ok"]:
            try:
                outbox = self.store.outbox_backlog()
            except Exception:  # health reports, it does not raise
                outbox = None
        return {"service": self.name, "ok": all(c["ok"] for c in checks.values()),
                "version": VERSION,
                "checks": checks if cache is None else {**checks, "redis_cache": cache},
                "outbox": outbox,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3)}

    @rpc
    def migrations(self) -> list[dict]:
        """Data migrations applied to this service's database."""
        return self.store.applied_migrations()

    @rpc
    def dead_letters(self, limit: int = 100) -> list[dict]:
        return deadletters.list_dead_letters(self.config['AMQP_URI'], self.handler_queues, limit,
                                             queue_type=event_queue_type(self.config))

    @rpc
    def replay_dead_letters(self, event_id: str | None = None) -> int:
        return deadletters.replay_dead_letters(self.config['AMQP_URI'], self.handler_queues, event_id,
                                               queue_type=event_queue_type(self.config))

    @rpc
    def purge_dead_letters(self) -> int:
        return deadletters.purge_dead_letters(self.config['AMQP_URI'], self.handler_queues,
                                              queue_type=event_queue_type(self.config))

    @periodic(interval=OUTBOX_RELAY_INTERVAL)
    def relay_outbox(self) -> None:
        """Publish events a crash or a broker outage left in the outbox, and make
        the cache invalidations a Redis outage left undone."""
        self.events.relay(float(self.config.get("OUTBOX_GRACE_SECONDS", 5)))
        self.redis.missed.replay()
