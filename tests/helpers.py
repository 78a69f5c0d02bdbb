"""Helpers for tests."""
import time

import eventlet


def wait_until(check, timeout=10.0, interval=0.02, what="condition"):
    """Bounded poll for an asynchronous effect; returns check()'s truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        eventlet.sleep(interval)
