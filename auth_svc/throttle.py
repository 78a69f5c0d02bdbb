"""Failed sign-ins in Redis: the counts, the waits, the account lock and
known devices. The rules (how many, how long) are ``auth_svc.domain.LockoutPolicy``.

Every check of a secret (password at login, 2FA code at login, password or
code confirming a sensitive change, disabling 2FA) is an ``Attempt`` of one
account (``h``: a hash of its normalised email, so unknown emails count too
and no address is written in clear) from one client IP, maybe from a known
device. Redis keys:

* ``auth:fail:account:{h}``, ``auth:fail:pair:{h}:{ip}``, ``auth:fail:ip:{ip}``:
  failures in the window (``LOGIN_FAILURE_WINDOW``);
* ``auth:wait:pair:{h}:{ip}``, ``auth:wait:ip:{ip}``: no attempt until they
  expire (429 + Retry-After); set after failures past the free ones, growing;
* ``auth:lock:account:{h}`` (TTL = what is left of the lock) and
  ``auth:strikes:account:{h}`` (locks in the last 24 h: the next one doubles):
  423 for every client that is not a known device of the account;
* ``auth:fail:device:{device id}``: failures of a known device in the window;
  at ``LOGIN_MAX_FAILURES`` it is treated as a stranger.

The state lives only in Redis, so when Redis is unreachable these checks
answer 503 rather than skip the lockout (fail closed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from auth_svc.domain import LockoutPolicy
from shared.errors import Locked, RateLimited

STRIKES_TTL = 24 * 3600
LOCKED = ("Too many failed attempts; the account is locked for a while. Sign in from a "
          "device you used before, or use the unlock link sent to the account's email.")


@dataclass
class Attempt:
    key: str                  # hash of the normalised email
    ip: str
    device: str | None = None  # id of a valid known-device token of this account
    trusted: bool = False      # set by LoginThrottle.check


def _retry(milliseconds: int) -> int:
    return max(1, math.ceil(milliseconds / 1000))


class LoginThrottle:
    def __init__(self, redis_call, policy: LockoutPolicy):
        self._redis = redis_call        # runs a function with the client; 503 on RedisError
        self.policy = policy

    def check(self, attempt: Attempt) -> None:
        """423 (account locked) or 429 (wait) unless this attempt may go ahead now.
        A known device of the account is not held up by what strangers did."""
        k, ip = attempt.key, attempt.ip

        def read(client):
            pipe = client.pipeline(transaction=False)
            pipe.get(f"auth:fail:device:{attempt.device or '-'}")
            pipe.pttl(f"auth:lock:account:{k}")
            pipe.pttl(f"auth:wait:ip:{ip}")
            pipe.pttl(f"auth:wait:pair:{k}:{ip}")
            return pipe.execute()
        device_failures, lock_ms, ip_ms, pair_ms = self._redis(read)
        attempt.trusted = bool(attempt.device) and not self.policy.device_distrusted(
            int(device_failures or 0))
        if attempt.trusted:
            return
        if lock_ms and lock_ms > 0:
            retry = _retry(lock_ms)
            raise Locked(LOCKED, retry_after=retry, headers={"Retry-After": str(retry)})
        wait_ms = max(ip_ms or 0, pair_ms or 0)
        if wait_ms > 0:
            raise RateLimited("Too many failed attempts from this address; wait a little.",
                              headers={"Retry-After": str(_retry(wait_ms))})

    def failed(self, attempt: Attempt) -> bool:
        """Count a failure; True when it has just locked the account."""
        window, k, ip = self.policy.window, attempt.key, attempt.ip
        if attempt.trusted:
            def count_device(client):
                name = f"auth:fail:device:{attempt.device}"
                pipe = client.pipeline(transaction=False)
                pipe.set(name, 0, ex=window, nx=True)
                pipe.incr(name)
                pipe.execute()
            self._redis(count_device)
            return False

        def count(client):
            pipe = client.pipeline(transaction=False)
            for name in (f"auth:fail:account:{k}", f"auth:fail:pair:{k}:{ip}",
                         f"auth:fail:ip:{ip}"):
                pipe.set(name, 0, ex=window, nx=True)
                pipe.incr(name)
            replies = pipe.execute()
            return replies[1], replies[3], replies[5]
        account, pair, per_ip = self._redis(count)

        def wait(client):
            pipe = client.pipeline(transaction=False)
            for name, seconds in ((f"auth:wait:pair:{k}:{ip}", self.policy.pair_delay(pair)),
                                  (f"auth:wait:ip:{ip}", self.policy.ip_delay(per_ip))):
                if seconds:
                    pipe.set(name, 1, ex=seconds)
            pipe.execute()
        self._redis(wait)
        if not self.policy.locks_now(account):
            return False

        def lock(client):
            strikes = client.incr(f"auth:strikes:account:{k}")
            client.expire(f"auth:strikes:account:{k}", STRIKES_TTL)
            pipe = client.pipeline(transaction=False)
            pipe.set(f"auth:lock:account:{k}", 1, ex=self.policy.lock_duration(strikes))
            pipe.delete(f"auth:fail:account:{k}")
            pipe.execute()
        self._redis(lock)
        return True

    def succeeded(self, attempt: Attempt) -> None:
        """A full sign-in: this client's own count starts again (the account's
        does not: other clients' failures stay counted)."""
        names = [f"auth:fail:pair:{attempt.key}:{attempt.ip}",
                 f"auth:wait:pair:{attempt.key}:{attempt.ip}"]
        if attempt.device:
            names.append(f"auth:fail:device:{attempt.device}")
        self._redis(lambda client: client.delete(*names))

    def unlock(self, key: str) -> None:
        """The emailed unlock link (or a password reset) was used."""
        self._redis(lambda client: client.delete(
            f"auth:lock:account:{key}", f"auth:fail:account:{key}", f"auth:strikes:account:{key}"))
