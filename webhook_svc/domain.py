"""Webhook rules, no I/O: which events an endpoint gets, what a delivery
carries, how it is signed, and when it is tried again.

Signing follows Stripe and GitHub: ``Workforce-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256 of "<t>.<body>" with the endpoint's secret>``. A receiver
recomputes it over the raw body, compares in constant time, and refuses a
timestamp older than a few minutes (a replayed delivery).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

SIGNATURE_HEADER = "Workforce-Signature"
ALL_EVENTS = "*"
# keys never sent to a receiver, at any depth: secrets travel only their own channel
_SECRET_KEY = re.compile(r"(token|secret|password|sealed|code)", re.IGNORECASE)


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does (and the tests): True for a fresh, authentic delivery."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")


def deliverable(event_type: str, producer: str, field_names: list[str]) -> bool:
    """Events an endpoint may subscribe to: those of an org (a user's own events
    belong to no org's endpoints), not our own (no loops), and none whose data
    names a secret (reset, verification, invitation tokens)."""
    return ("org_id" in field_names and producer != "webhooks"
            and not any(_SECRET_KEY.search(name) for name in field_names))


def wants(endpoint: dict, event_type: str) -> bool:
    return endpoint.get("enabled", False) and (
        ALL_EVENTS in endpoint["event_types"] or event_type in endpoint["event_types"])


def public(value):
    """The envelope as a receiver gets it: every secret-looking key dropped."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


def payload(envelope: dict) -> dict:
    keep = ("event_id", "event_type", "version", "occurred_at", "producer", "org_id", "actor_id",
            "correlation_id", "data")
    return public({k: envelope.get(k) for k in keep})


def next_attempt(attempts: int, schedule: tuple[float, ...], now: datetime) -> datetime | None:
    """After ``attempts`` failed tries: when to try again, or None (given up)."""
    if attempts > len(schedule):
        return None
    return now + timedelta(seconds=schedule[attempts - 1])


def parse_schedule(text) -> tuple[float, ...]:
    values = text.split(",") if isinstance(text, str) else list(text or ())
    return tuple(float(v) for v in values if str(v).strip())


def succeeded(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300
