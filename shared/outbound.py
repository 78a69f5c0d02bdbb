"""Requests to addresses that users give us (web push endpoints; webhooks).

Such a URL must never reach inside our network (SSRF): Redis on 127.0.0.1,
the cloud metadata service on 169.254.169.254, a database on 10.x. One check,
:func:`check_public_url`, run when the URL is accepted and again right before
every request (the name may resolve elsewhere by then: DNS rebinding).
Callers also refuse redirects, which would skip the check.

``OUTBOUND_ALLOWED_NETWORKS`` (CIDRs) lets an operator reach a relay of their
own on a private network (and the tests a local server); https stays required.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit


class UnsafeUrl(ValueError):
    """Not https, carries credentials, or resolves to a non-public address."""


class Unresolvable(UnsafeUrl):
    """The name does not resolve (now): may work later."""


def allowed_networks(config: dict) -> tuple:
    value = config.get("OUTBOUND_ALLOWED_NETWORKS") or []
    items = value.split(",") if isinstance(value, str) else value
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


def _public(address, allowed: Iterable) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address in network for network in allowed):
        return True
    return address.is_global and not (
        address.is_multicast or address.is_private or address.is_loopback
        or address.is_link_local or address.is_reserved or address.is_unspecified)


def check_public_url(url: str, allowed: Iterable = ()) -> None:
    """Raise :class:`UnsafeUrl` unless ``url`` is https, without userinfo, and
    every address its host resolves to is public (or in ``allowed``)."""
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    if parts.scheme != "https":
        raise UnsafeUrl("only https URLs are accepted")
    if "@" in parts.netloc:
        raise UnsafeUrl("credentials in the URL are not accepted")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(f"{parts.hostname} does not resolve: {exc}") from None
    allowed = tuple(allowed)
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not _public(address, allowed):
            raise UnsafeUrl(f"{parts.hostname} is not a public address ({address})")
