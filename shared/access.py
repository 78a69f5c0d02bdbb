"""Least privilege on the broker and in Redis: each service has its own
RabbitMQ user and its own Redis ACL user (docs/security.md, "Broker & Redis").

A service's RabbitMQ rights are derived from its class, so they follow the
code: its ``@rpc`` queue and reply queues, the ``{source}.events`` exchanges
of its ``@handles`` (read and bind only), its own ``{service}.events`` (the
only events exchange it may write) and ``{service}.handlers`` (retries, dead
letters). RPC requests all cross the one ``nameko-rpc`` topic exchange, so
its routing keys are restricted with topic permissions: a service may
publish ``{target}.{method}`` only for the methods listed in its
``ServiceRpc(target, methods=...)`` (the gateway: every method), plus the
reply keys (uuid4), and bind only ``{service}.*`` and uuid4 keys.

A service's Redis user reads and writes its own ``{service}:*`` keys and
reads (only) the other services' keys listed in :data:`REDIS_READS`; pub/sub
channels are in :data:`REDIS_CHANNELS`. Dangerous commands (FLUSHALL, KEYS,
CONFIG, ACL, DEBUG, ...) are refused.

:func:`provision` creates the users (idempotent: run by ``make run``, the
tests and compose's ``access`` job) through the management API and an admin
Redis connection; :func:`service_uris` gives each service process its own
``AMQP_URI`` / ``REDIS_URI``.
"""
from __future__ import annotations

import importlib
import inspect
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import redis
import requests

from ops.cli import management
from shared import services
from shared.events import ReliableEventHandler
from shared.rpc import ServiceRpc

SERVICES = services.PROCESSES  # nameko name -> package, the gateway too
USER_PREFIX = "wf-"
RPC_EXCHANGE = "nameko-rpc"
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# Other services' keys a service reads; it writes only its own "{service}:*".
REDIS_READS = {
    "gateway": ["auth:blacklist:*", "auth:jwks:*", "auth:pat:*", "employees:perm:*",
                "notifications:stream:*",
                # the response cache is keyed by the owners' per-org version
                # counters (shared.redis.org_version_key), any owner's
                *(f"{name}:ver:org:*" for name in SERVICES if name != "gateway")],
    "organizations": ["employees:perm:*"],
    # when a personal access token was last used, as the gateway reports it
    "auth": ["gateway:pat:used:*"],
    "teams": ["employees:perm:*"],
    "tasks": ["employees:perm:*"],
    "notifications": ["employees:perm:*"],
    "webhooks": ["employees:perm:*"],
    "analytics": ["employees:perm:*"],
    "audit": ["employees:perm:*"],
}
# Pub/sub channels (notifications publishes a user's feed, the gateway's
# websockets subscribe to the pattern).
REDIS_CHANNELS = {
    "notifications": ["notifications:user:*"],
    "gateway": ["notifications:user:*"],
}


def user_name(service: str) -> str:
    return f"{USER_PREFIX}{service}"


def password(service: str) -> str:
    """``SERVICE_PASSWORD_<NAME>`` from the environment; the local default is
    for the machine's own servers only (make run, tests)."""
    return os.environ.get(f"SERVICE_PASSWORD_{service.upper()}", f"{user_name(service)}-local")


@dataclass(frozen=True)
class Wiring:
    """What a service does on the broker, read from its class."""

    service: str
    consumes: dict[str, tuple[str, ...]]         # source -> event types
    calls: dict[str, tuple[str, ...] | None]     # target -> methods (None: any)


def service_class(service: str) -> Any:
    module = importlib.import_module(f"{SERVICES[service]}.service")
    return next(cls for _, cls in inspect.getmembers(module, inspect.isclass)
                if getattr(cls, "name", None) == service and cls.__module__ == module.__name__)


def wiring(cls: Any) -> Wiring:
    consumes: dict[str, set[str]] = {}
    calls: dict[str, tuple[str, ...] | None] = {}
    for _, member in inspect.getmembers(cls):
        if isinstance(member, ServiceRpc):
            calls[member.target_service] = (tuple(sorted(member.methods))
                                            if member.methods is not None else None)
        for entrypoint in getattr(member, "nameko_entrypoints", ()):
            if isinstance(entrypoint, ReliableEventHandler):
                consumes.setdefault(entrypoint.source_service, set()).add(entrypoint.event_type)
    return Wiring(cls.name, {k: tuple(sorted(v)) for k, v in sorted(consumes.items())},
                  dict(sorted(calls.items())))


def _alternatives(patterns) -> str:
    return "^(" + "|".join(patterns) + ")$"


def broker_permissions(w: Wiring) -> dict:
    """``{"configure", "write", "read"}`` regexes for the service's vhost, and
    ``topic``: exchange -> ``{"write", "read"}`` routing-key regexes."""
    s = re.escape(w.service)
    queues = [f"rpc-{s}", rf"rpc\.reply-{s}-{UUID}",
              rf"evt-[a-z_]+-[a-z0-9_.]+--{s}\.[a-z0-9_]+(\.dlq|\.retry\.[0-9]+)?",
              # the container health check (ops.cli ping) asks the service
              # itself through nameko's standalone proxy
              rf"rpc\.reply-standalone_rpc_proxy-{UUID}"]
    own_exchanges = [rf"{s}\.events", rf"{s}\.handlers"]
    sources = [rf"{re.escape(source)}\.events" for source in w.consumes]
    rpc = re.escape(RPC_EXCHANGE)
    # declaring a queue declares its exchange too (nameko does), hence
    # "configure" on the consumed events exchanges; writing them is refused
    calls = [rf"{re.escape(target)}\." + ("[a-z_][a-z0-9_]*" if methods is None
                                          else "(" + "|".join(map(re.escape, methods)) + ")")
             for target, methods in w.calls.items()]
    topic = {RPC_EXCHANGE: {"write": _alternatives([*calls, rf"{s}\.health", UUID]),
                            "read": _alternatives([rf"{s}\.\*", UUID])}}
    for source, events in w.consumes.items():
        own = source == w.service  # tasks handles its own task.bulk.created
        topic[f"{source}.events"] = {"write": ".*" if own else "^$",
                                     "read": _alternatives(map(re.escape, events))}
    return {
        "configure": _alternatives([*queues, *own_exchanges, rpc, *sources]),
        "write": _alternatives([*queues, *own_exchanges, rpc]),
        "read": _alternatives([*queues, rf"{s}\.handlers", rpc, *sources]),
        "topic": topic,
    }


def redis_rules(service: str) -> list[str]:
    """``ACL SETUSER`` rules (after ``reset``: nothing else is allowed)."""
    return ["on", f">{password(service)}", f"~{service}:*",
            *(f"%R~{pattern}" for pattern in REDIS_READS.get(service, ())),
            *(f"&{channel}" for channel in REDIS_CHANNELS.get(service, ())),
            "+@all", "-@dangerous"]


def _with_credentials(uri: str, user: str, secret: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or "127.0.0.1"
    netloc = (f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(secret, safe='')}@"
              f"{host}" + (f":{parts.port}" if parts.port else ""))
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def service_uris(service: str, amqp_uri: str, redis_uri: str,
                 redis_cache_uri: str | None = None) -> dict:
    """The environment of one service process: its own users on the same servers
    (the cache instance's too, when it has one)."""
    user, secret = user_name(service), password(service)
    uris = {"AMQP_URI": _with_credentials(amqp_uri, user, secret),
            "REDIS_URI": _with_credentials(redis_uri, user, secret)}
    if redis_cache_uri:
        uris["REDIS_CACHE_URI"] = _with_credentials(redis_cache_uri, user, secret)
    return uris


def provision_broker(config: dict, services=SERVICES) -> None:
    """Create (or update) each service's RabbitMQ user and its rights on the
    vhost of ``AMQP_URI``, through the management API (``RABBITMQ_MANAGEMENT_URL``)."""
    api, auth, vhost = management(config)
    quoted_vhost = urllib.parse.quote(vhost, safe="")
    with requests.Session() as http:
        http.auth = auth
        for service in services:
            user = urllib.parse.quote(user_name(service), safe="")
            rights = broker_permissions(wiring(service_class(service)))
            topic = rights.pop("topic")
            http.put(f"{api}/api/users/{user}", timeout=10,
                     json={"password": password(service), "tags": ""}).raise_for_status()
            http.put(f"{api}/api/permissions/{quoted_vhost}/{user}", timeout=10,
                     json=rights).raise_for_status()
            for exchange, keys in topic.items():
                http.put(f"{api}/api/topic-permissions/{quoted_vhost}/{user}", timeout=10,
                         json={"exchange": exchange, **keys}).raise_for_status()


def _cache_uri(config: dict) -> str | None:
    from shared.redis import separate_cache

    return config["REDIS_CACHE_URI"] if separate_cache(config) else None


def _redis_nodes(config: dict) -> list[redis.Redis]:
    """Admin connections to every Redis node: ``REDIS_URI``'s, or with
    ``REDIS_SENTINELS`` the primary and replicas the sentinels name (ACL users
    are not replicated, and a replica may become the primary), or with
    ``REDIS_CLUSTER_NODES`` every primary and replica of the cluster; and the
    cache instance ``REDIS_CACHE_URI`` when it has its own."""
    cache_uri = _cache_uri(config)
    cache = [redis.Redis.from_url(cache_uri)] if cache_uri else []
    return _state_nodes(config) + cache


def _state_nodes(config: dict) -> list[redis.Redis]:
    if config.get("REDIS_CLUSTER_NODES"):
        from redis.connection import parse_url

        from shared.redis import make_client

        url = parse_url(config["REDIS_URI"])
        cluster = make_client({"REDIS_URI": config["REDIS_URI"],
                               "REDIS_CLUSTER_NODES": config["REDIS_CLUSTER_NODES"]})
        try:
            return [redis.Redis(host=node.host, port=node.port, username=url.get("username"),
                                password=url.get("password")) for node in cluster.get_nodes()]
        finally:
            cluster.close()
    if not config.get("REDIS_SENTINELS"):
        return [redis.Redis.from_url(config["REDIS_URI"])]
    from redis.connection import parse_url
    from redis.sentinel import Sentinel

    from shared.redis import sentinel_hosts

    url = parse_url(config["REDIS_URI"])
    master = config.get("REDIS_SENTINEL_MASTER") or "workforce"
    sentinel = Sentinel(sentinel_hosts(config["REDIS_SENTINELS"]), sentinel_kwargs={
        "password": config.get("REDIS_SENTINEL_PASSWORD") or None})
    addresses = [sentinel.discover_master(master), *sentinel.discover_slaves(master)]
    return [redis.Redis(host=host, port=port, username=url.get("username"),
                        password=url.get("password")) for host, port in addresses]


def provision_redis(config: dict, services=SERVICES) -> None:
    """Create (or reset) each service's Redis ACL user on every node (needs admin rights)."""
    for client in _redis_nodes(config):
        try:
            for service in services:
                client.execute_command("ACL", "SETUSER", user_name(service), "reset",
                                       *redis_rules(service))
        finally:
            client.close()


# -- the web console (web_svc) ----------------------------------------------------
# Not a nameko service: its rights are derived from what its operator pages call
# (``web_svc.ops.Ops.CALLS``) and its events tap. It reaches people's data only
# through the gateway's HTTP API, as a browser does.
CONSOLE = "web"


def console_calls() -> dict[str, tuple[str, ...]]:
    """target service -> the RPC methods the console calls (nameko's standalone proxy)."""
    return importlib.import_module("web_svc.ops").Ops.CALLS


def console_permissions() -> dict:
    """Its standalone proxy's reply queues and its events tap queue (bound to every
    ``<service>.events``, reading only); publish only the RPCs it calls."""
    tap = importlib.import_module("web_svc.events_tap").TAP_QUEUE
    queues = [rf"rpc\.reply-standalone_rpc_proxy-{UUID}", re.escape(tap)]
    sources = [rf"{re.escape(source)}\.events" for source in services.SERVICES]
    rpc = re.escape(RPC_EXCHANGE)
    calls = [rf"{re.escape(target)}\.(" + "|".join(map(re.escape, methods)) + ")"
             for target, methods in sorted(console_calls().items())]
    topic = {RPC_EXCHANGE: {"write": _alternatives([*calls, UUID]), "read": _alternatives([UUID])}}
    for source in services.SERVICES:
        topic[f"{source}.events"] = {"write": "^$", "read": "^#$"}
    return {"configure": _alternatives([*queues, rpc]),
            "write": _alternatives([*queues, rpc]),
            "read": _alternatives([*queues, rpc, *sources]),
            "topic": topic}


def console_uris(amqp_uri: str, redis_uri: str, management_url: str | None,
                 redis_cache_uri: str | None = None) -> dict:
    """The console's environment: its own users, and the management API (queues,
    bindings) as that same user (tagged ``monitoring``: read only)."""
    base = management_url or "http://127.0.0.1:15672"
    return {**service_uris(CONSOLE, amqp_uri, redis_uri, redis_cache_uri),
            "RABBITMQ_MANAGEMENT_URL": _with_credentials(base, user_name(CONSOLE), password(CONSOLE))}


def provision_console(config: dict) -> None:
    api, auth, vhost = management(config)
    quoted_vhost = urllib.parse.quote(vhost, safe="")
    user = urllib.parse.quote(user_name(CONSOLE), safe="")
    rights = console_permissions()
    topic = rights.pop("topic")
    with requests.Session() as http:
        http.auth = auth
        http.put(f"{api}/api/users/{user}", timeout=10,
                 json={"password": password(CONSOLE), "tags": "monitoring"}).raise_for_status()
        http.put(f"{api}/api/permissions/{quoted_vhost}/{user}", timeout=10, json=rights).raise_for_status()
        for exchange, keys in topic.items():
            http.put(f"{api}/api/topic-permissions/{quoted_vhost}/{user}", timeout=10,
                     json={"exchange": exchange, **keys}).raise_for_status()
    provision_redis(config, services=[CONSOLE])


def provision(config: dict) -> dict[str, dict]:
    """Every service's users (and the web console's) on the servers of ``config``
    (``AMQP_URI``, ``RABBITMQ_MANAGEMENT_URL``, ``REDIS_URI``, ``REDIS_SENTINELS``,
    ``REDIS_CLUSTER_NODES``, ``REDIS_CACHE_URI``...:
    admin rights); returns each one's environment."""
    provision_broker(config)
    provision_redis(config)
    provision_console(config)
    cache_uri = _cache_uri(config)
    return {**{service: service_uris(service, config["AMQP_URI"], config["REDIS_URI"], cache_uri)
               for service in SERVICES},
            CONSOLE: console_uris(config["AMQP_URI"], config["REDIS_URI"],
                                  config.get("RABBITMQ_MANAGEMENT_URL"), cache_uri)}
