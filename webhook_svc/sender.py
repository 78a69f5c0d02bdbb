"""Sends one delivery: the signed POST, with the SSRF check made again right
before it (the name may resolve elsewhere than when the URL was accepted), no
redirects followed, a short timeout, and at most the first 500 characters of
the answer kept for the log."""
from __future__ import annotations

import json
import time

import requests
from nameko.extensions import DependencyProvider

from shared.mongo import utcnow
from shared.outbound import UnsafeUrl, allowed_networks, check_public_url
from webhook_svc.domain import SIGNATURE_HEADER, sign

SNIPPET = 500


class Sender:
    def __init__(self, config: dict):
        self.allowed = allowed_networks(config)
        self.verify = config.get("WEBHOOK_CA_BUNDLE") or True  # a private CA, for tests and relays
        self.timeout = float(config.get("WEBHOOK_TIMEOUT_SECONDS", 5))
        self.session = requests.Session()

    def check(self, url: str) -> None:
        """Raises ``UnsafeUrl`` for an address users may not make us call."""
        check_public_url(url, self.allowed)

    def send(self, endpoint: dict, delivery: dict) -> dict:
        """One attempt; returns what the delivery log keeps of it."""
        body = json.dumps(delivery["payload"], separators=(",", ":"), default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "workforce-webhooks/1",
                   "Workforce-Event": delivery["event_type"], "Workforce-Delivery": delivery["_id"],
                   SIGNATURE_HEADER: sign(endpoint["secret"], int(time.time()), body)}
        attempt = {"at": utcnow(), "status_code": None, "latency_ms": 0.0, "response": "",
                   "error": None}
        started = time.perf_counter()
        try:
            self.check(endpoint["url"])
            with self.session.post(endpoint["url"], data=body, headers=headers,
                                   timeout=(min(3.0, self.timeout), self.timeout),
                                   allow_redirects=False, verify=self.verify, stream=True) as answer:
                attempt["status_code"] = answer.status_code
                first = next(answer.iter_content(SNIPPET), b"")
                attempt["response"] = first[:SNIPPET].decode("utf-8", "replace")
        except UnsafeUrl as exc:
            attempt["error"] = f"refused: {exc}"
        except requests.RequestException as exc:
            attempt["error"] = f"{type(exc).__name__}: {exc}"[:SNIPPET]
        attempt["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return attempt


class WebhookSender(DependencyProvider):
    def setup(self) -> None:
        self.sender = Sender(self.container.config)

    def get_dependency(self, worker_ctx) -> Sender:
        return self.sender
