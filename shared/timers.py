"""``@periodic``: a nameko timer whose work runs once per period across every
replica of a service.

Each tick claims ``{service}:timer:{deployment}:{method}:{period}`` in Redis
(``SET NX``, ``period = floor(now / interval)``; the deployment is
``MONGODB_DB_PREFIX``, so two meshes sharing one Redis never share a claim);
the replica that wins runs the worker, the others skip that tick. With one
process nothing changes; with N replicas the overdue sweep, digests, outbox
relay and JWKS refresh still run once per interval, not N times. When Redis
does not answer, the tick runs: timer work here is idempotent, and skipping it
would hold back what it does (the relay's events, say) while Redis is down.

    @periodic(interval=60)                                   # seconds
    @periodic(interval=60, config_key="TASK_OVERDUE_INTERVAL")  # overridable in config
"""
from __future__ import annotations

import logging
import math
import time

import redis
from nameko.timer import Timer

from shared.redis import make_client

log = logging.getLogger(__name__)


def period_key(service: str, deployment: str, timer: str, interval: float,
               now: float) -> tuple[str, int]:
    period = int(now // interval)
    return f"{service}:timer:{deployment}:{timer}:{period}", period


class PeriodicTimer(Timer):
    def __init__(self, interval: float, config_key: str | None = None, **kwargs):
        self.config_key = config_key
        super().__init__(interval, **kwargs)

    def setup(self) -> None:
        config = self.container.config
        if self.config_key and config.get(self.config_key):
            self.interval = float(config[self.config_key])
        self.redis = make_client(config)
        self.ttl = max(1, math.ceil(self.interval * 2))
        self.deployment = str(config.get("MONGODB_DB_PREFIX", "workforce"))

    def stop(self) -> None:
        super().stop()
        self.redis.close()

    def claim(self) -> bool:
        """True when this replica does this period's work."""
        key, period = period_key(self.container.service_name, self.deployment, self.method_name,
                                 self.interval, time.time())
        try:
            won = bool(self.redis.set(key, "1", nx=True, ex=self.ttl))
        except redis.RedisError as exc:
            log.warning("timer %s: Redis unreachable, running this tick: %s", self.method_name, exc)
            return True
        if won:
            log.info("timer %s claimed period %s", self.method_name, period,
                      extra={"fields": {"timer": self.method_name, "period": period}})
        return won

    def handle_timer_tick(self) -> None:
        if self.claim():
            super().handle_timer_tick()
        else:  # another replica has this period; Timer._run waits for a worker's end
            self.worker_complete.send()


periodic = PeriodicTimer.decorator
