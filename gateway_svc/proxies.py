"""Which address is the client's, behind reverse proxies (``TRUSTED_PROXIES``).

Without the setting (or ``0``) the gateway believes only the TCP peer
(``REMOTE_ADDR``): ``X-Forwarded-For`` is a header any client can write, so
it is ignored, as rate limits and lockout must not trust it. With it,
werkzeug's ``ProxyFix`` takes the address the last trusted proxy saw:

* a count ``N``: exactly ``N`` proxies sit in front and each appends to
  X-Forwarded-For; the client is the N-th entry from the right (fewer
  entries: the header is ignored);
* CIDRs (``10.0.0.0/8,192.168.1.7/32``): only when the peer is in one of
  them is the header read, from the right, skipping addresses in them, up
  to the first one that is not (the client).
"""
from __future__ import annotations

import ipaddress

from werkzeug.middleware.proxy_fix import ProxyFix

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(setting) -> tuple[int, tuple[Network, ...]]:
    """``(count, networks)``; ``(0, ())`` trusts nobody. Bad values raise ValueError."""
    text = str(setting if setting is not None else "").strip()
    if not text:
        return 0, ()
    if text.isdigit():
        return int(text), ()
    return 0, tuple(ipaddress.ip_network(part.strip(), strict=False)
                    for part in text.split(",") if part.strip())


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


class TrustedProxies:
    """WSGI middleware applying ``ProxyFix`` as far as ``TRUSTED_PROXIES`` allows."""

    def __init__(self, app, setting):
        self.app = app
        self.count, self.networks = parse_trusted_proxies(setting)
        self.by_count = ProxyFix(app, x_for=self.count) if self.count else None

    def hops(self, environ) -> int:
        """Trusted proxies between us and the client (by CIDR), 0 if the peer is not one."""
        if not _trusted(environ.get("REMOTE_ADDR") or "", self.networks):
            return 0
        forwarded = [a for a in (environ.get("HTTP_X_FORWARDED_FOR") or "").split(",") if a.strip()]
        hops = 1
        while hops < len(forwarded) and _trusted(forwarded[-hops], self.networks):
            hops += 1
        return hops if forwarded else 0

    def __call__(self, environ, start_response):
        if self.by_count is not None:
            return self.by_count(environ, start_response)
        hops = self.hops(environ) if self.networks else 0
        if hops:
            return ProxyFix(self.app, x_for=hops)(environ, start_response)
        return self.app(environ, start_response)
