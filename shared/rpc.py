"""RPC both ways: entrypoints that report our errors cleanly, and proxies
that never wait forever (nameko 2's RpcProxy has no timeout: docs/stack.md).

The caller's deadline travels with every call (the nameko context header
``deadline``, epoch seconds, set by :class:`ServiceRpc` a little before its own
timeout and never later than a deadline it got itself), and an ``@rpc`` runs
its MongoDB operations under it (``pymongo.timeout``, :class:`CallDeadline`):
an operation started after it fails, and a write made with
``shared.mongo.write_at_version`` / ``BaseStore.insert_in_time`` is refused by the server when
it executes it later, so a write the caller has given up on (a 504 at the
gateway) does not land later unseen."""
from __future__ import annotations

import inspect
import logging
import sys
import time
import uuid

import eventlet
import eventlet.semaphore
import kombu.serialization
import marshmallow
import pymongo
import pymongo.errors
import redis
from eventlet.event import Event
from kombu import Queue
from kombu.exceptions import OperationalError
from nameko.constants import (
    DEFAULT_SERIALIZER,
    SERIALIZER_CONFIG_KEY,
)
from nameko.exceptions import (
    IncorrectSignature,
    UnserializableValueError,
    deserialize,
    serialize,
)
from nameko.extensions import DependencyProvider
from nameko.messaging import HeaderEncoder
from nameko.rpc import (
    RPC_QUEUE_TEMPLATE,
    Rpc,
    RpcConsumer,
    RpcProxy,
    get_rpc_exchange,
)

from shared.amqp import UNROUTABLE, AmqpLink
from shared.errors import AppError, Timeout, Unavailable, validation_error
from shared.events import DEADLINE_KEY, event_queue_type, queue_arguments, record_events
from shared.mongo import CALL_DEADLINE
from shared.telemetry import RPC_TIMEOUTS

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
DEADLINE_MARGIN = 1.0      # the callee gives up this long (at most 20%) before the caller


def call_deadline(timeout: float, inherited: float | None = None) -> float:
    """The deadline a call with ``timeout`` sends: before the caller's own."""
    own = time.time() + timeout - min(DEADLINE_MARGIN, timeout * 0.2)
    return min(own, float(inherited)) if inherited else own


def as_app_error(exc: BaseException, deadline: float | None = None) -> BaseException:
    """Failures of our own dependencies become 503s, bad input a 422; a MongoDB
    operation cut by the caller's deadline a 504."""
    if isinstance(exc, marshmallow.ValidationError):
        return validation_error(exc)
    if (deadline is not None and isinstance(exc, pymongo.errors.PyMongoError) and exc.timeout
            and time.time() >= deadline - 0.05):
        return Timeout("The caller's deadline passed before this call finished; "
                       "nothing more was written.")
    if isinstance(exc, (pymongo.errors.ConnectionFailure, pymongo.errors.ServerSelectionTimeoutError)):
        return Unavailable("The database is unavailable.")
    if isinstance(exc, pymongo.errors.PyMongoError) and exc.has_error_label("TransientTransactionError"):
        return Unavailable("A concurrent change got in the way; try again.",
                           headers={"Retry-After": "1"})
    if isinstance(exc, redis.ConnectionError):
        return Unavailable("The cache is unavailable.")
    return exc


_SIGNATURES: dict = {}


def check_signature(entrypoint, args, kwargs) -> None:
    """nameko's ``Entrypoint.check_signature`` (IncorrectSignature when the call's
    arguments do not fit the method) on a signature built once per method: nameko
    builds it again for every call (``inspect.getcallargs``), 5x the time."""
    key = (entrypoint.container.service_cls, entrypoint.method_name)
    signature = _SIGNATURES.get(key)
    if signature is None:
        signature = _SIGNATURES[key] = inspect.signature(getattr(*key), follow_wrapped=False)
    try:
        signature.bind(None, *args, **kwargs)
    except TypeError as exc:
        raise IncorrectSignature(str(exc)) from None


def _serialized(result, exc_info, content_type: str):
    """nameko's reply payload, serialised once (nameko serialises it twice: once
    to check it can be); a result that cannot be is replaced by nameko's
    ``UnserializableValueError``."""
    serializer = kombu.serialization.registry.type_to_name[content_type]
    error = serialize(exc_info[1]) if exc_info is not None else None
    try:
        encoded = kombu.serialization.dumps({"result": result, "error": error}, serializer)
    except Exception:  # noqa: BLE001 - as nameko: the caller gets the error instead
        exc_info = sys.exc_info()
        error = serialize(UnserializableValueError(result))
        result = None
        encoded = kombu.serialization.dumps({"result": None, "error": error}, serializer)
    return encoded, result, exc_info


def rpc_queue_type(config: dict) -> str:
    """``RPC_QUEUE_TYPE`` (classic or quorum); unset, the ``EVENT_QUEUE_TYPE``:
    on a cluster the ``rpc-<service>`` queues must survive a node too."""
    return str(config.get("RPC_QUEUE_TYPE") or event_queue_type(config))


class AppRpcConsumer(RpcConsumer):
    """nameko's RpcConsumer, whose ``rpc-<service>`` queue is declared with the
    arguments of :func:`rpc_queue_type` (the one change: a quorum queue lives on
    every node of a cluster; a classic one dies with its node)."""

    queue: Queue | None

    def setup(self) -> None:
        if self.queue is None:
            config = self.container.config
            service_name = self.container.service_name
            self.queue = Queue(RPC_QUEUE_TEMPLATE.format(service_name),
                               exchange=get_rpc_exchange(config),
                               routing_key=f"{service_name}.*", durable=True,
                               queue_arguments=queue_arguments(rpc_queue_type(config)))
            self.queue_consumer.register_provider(self)  # as RpcConsumer.setup does
            self._registered = True


class AppRpc(Rpc):
    """``@rpc``: AppErrors are expected (logged as such, not sent to Sentry);
    dependency failures are turned into ``Unavailable`` for the caller. Replies
    go on the container's :class:`shared.amqp.AmqpLink` (transient, no confirm: a reply lost
    with a broker is a timeout for the caller)."""

    link = AmqpLink()

    rpc_consumer = AppRpcConsumer()

    def __init__(self, expected_exceptions=(), sensitive_arguments=(), **kwargs):
        super().__init__(expected_exceptions=(AppError, *tuple(expected_exceptions or ())),
                         sensitive_arguments=sensitive_arguments, **kwargs)

    def check_signature(self, args, kwargs):
        check_signature(self, args, kwargs)

    def _reply(self, message, result, exc_info):
        """nameko's ``RpcConsumer.handle_result``: reply, then ack the request."""
        properties = message.properties
        (content_type, encoding, body), result, exc_info = _serialized(
            result, exc_info, properties["content_type"])
        self.link.publish(body, routing_key=properties["reply_to"], content_type=content_type,
                          content_encoding=encoding,
                          correlation_id=properties.get("correlation_id"))
        self.rpc_consumer.queue_consumer.ack_message(message)
        return result, exc_info

    def handle_result(self, message, worker_ctx, result, exc_info):
        deadline = leave_deadline(self.container, worker_ctx)  # the outbox write is not cut
        if exc_info is None:
            # the events of this call reach the outbox before the caller hears it
            # succeeded; if MongoDB refuses now, Events.worker_result still sends them
            record_events(self.container, worker_ctx)
        if exc_info is not None:
            mapped = as_app_error(exc_info[1], deadline)
            if mapped is not exc_info[1]:
                exc_info = (type(mapped), mapped, exc_info[2])
        return self._reply(message, result, exc_info)


rpc = AppRpc.decorator


class CallDeadline(DependencyProvider):
    """Runs an ``@rpc`` call's MongoDB operations under the caller's deadline
    (``pymongo.timeout``: an operation started after it raises at once, one in
    flight is cut at it, and the server gets it as ``maxTimeMS``), and makes it
    the deadline of the call's writes (``shared.mongo.CALL_DEADLINE``: the server
    refuses one it executes later). Left when the method has returned, so
    recording its events and replying are never cut (``AppRpc.handle_result``)."""

    def setup(self) -> None:
        self.active: dict = {}

    def worker_setup(self, worker_ctx) -> None:
        deadline = worker_ctx.data.get(DEADLINE_KEY)
        if deadline is None or not isinstance(worker_ctx.entrypoint, AppRpc):
            return
        scope = pymongo.timeout(max(0.001, float(deadline) - time.time()))
        scope.__enter__()
        CALL_DEADLINE.set(float(deadline))
        self.active[worker_ctx] = (scope, float(deadline))

    def leave(self, worker_ctx) -> float | None:
        scope, deadline = self.active.pop(worker_ctx, (None, None))
        if scope is not None:
            CALL_DEADLINE.set(None)
            scope.__exit__(None, None, None)
        return deadline

    def worker_teardown(self, worker_ctx) -> None:
        self.leave(worker_ctx)


def leave_deadline(container, worker_ctx) -> float | None:
    """End the worker's deadline scope; returns the deadline it had, if any."""
    found = None
    for dependency in container.dependencies:
        if isinstance(dependency, CallDeadline):
            found = dependency.leave(worker_ctx) or found
    return found


_HEADERS = HeaderEncoder()  # the worker's context data as nameko's message headers


class _Method:
    def __init__(self, provider: "ServiceRpc", worker_ctx, name: str):
        self._provider = provider
        self._worker_ctx = worker_ctx
        self._name = name
        self._target = provider.target_service
        self._timeout = provider.timeout
        self._service = provider.container.service_name

    def __call__(self, *args, **kwargs):
        return self.call_async(*args, **kwargs).result()

    def call_async(self, *args, **kwargs) -> "_Reply":
        """Publish the request (nameko's wire format: its reply queue, headers and
        body) on the container's :class:`shared.amqp.AmqpLink`."""
        provider, worker_ctx = self._provider, self._worker_ctx
        data = worker_ctx.data  # the deadline goes as a header of this call only
        inherited = data.get(DEADLINE_KEY)
        data[DEADLINE_KEY] = call_deadline(self._timeout, inherited)
        try:
            headers = _HEADERS.get_message_headers(worker_ctx)
        finally:
            if inherited is None:
                data.pop(DEADLINE_KEY, None)
            else:
                data[DEADLINE_KEY] = inherited
        link = provider.link
        correlation_id = str(uuid.uuid4())
        event = link.reply_events[correlation_id] = Event()
        try:
            link.publish({"args": args, "kwargs": kwargs},
                         routing_key=f"{self._target}.{self._name}", mandatory=True,
                         reply_to=link.reply_to, correlation_id=correlation_id,
                         headers=headers, serializer=provider.serializer,
                         expiration=provider.timeout)
        except BaseException as exc:
            link.reply_events.pop(correlation_id, None)
            if isinstance(exc, (OperationalError, OSError)):
                raise Unavailable("The message broker is unavailable.") from exc
            raise
        return _Reply(event, correlation_id, self)


class _Reply:
    def __init__(self, event, correlation_id: str, method: _Method):
        self._event = event
        self._correlation_id = correlation_id
        self._method = method

    def result(self, timeout: float | None = None):
        method = self._method
        timeout = timeout or method._timeout
        try:
            with eventlet.Timeout(timeout):
                body = self._event.wait()
        except eventlet.Timeout:
            method._provider.link.reply_events.pop(self._correlation_id, None)
            RPC_TIMEOUTS.labels(method._service, method._target).inc()
            raise Timeout(f"The {method._target} service did not answer within "
                          f"{timeout:g} s.") from None
        if body is UNROUTABLE:
            raise Unavailable(f"The {method._target} service is not running.")
        error = body.get("error")
        if error:
            raise deserialize(error)
        return body["result"]


class _Service:
    def __init__(self, provider: "ServiceRpc", worker_ctx):
        self._provider, self._worker_ctx = provider, worker_ctx

    def __getattr__(self, name: str) -> _Method:
        provider = self._provider
        if provider.methods is not None and name not in provider.methods:
            # the broker would refuse it too (shared.access): say so before sending
            raise AttributeError(f"{provider.container.service_name} may not call "
                                 f"{provider.target_service}.{name}: "
                                 "add it to the ServiceRpc's methods")
        return _Method(provider, self._worker_ctx, name)


# what a worker's ``ServiceRpc`` attribute is, for annotations (``shared.service.Flows.uses``)
ServiceProxy = _Service


class ServiceRpc(RpcProxy):
    """A proxy whose calls time out (``RPC_TIMEOUT`` seconds, default 5) with
    :class:`shared.errors.Timeout`; a call to a service that never ran here
    becomes :class:`shared.errors.Unavailable` at once, and so does a broker
    outage. Requests expire in the queue after the same time, so a service
    that comes back does not work through stale calls. Requests and their
    replies go on the container's :class:`shared.amqp.AmqpLink` (nameko's wire format, so
    nameko's own clients and services still talk to ours).

    ``methods``: the only methods of the target this service may call (None:
    all). Its broker user gets exactly these routing keys (shared.access)."""

    link = AmqpLink()
    rpc_reply_listener = None  # replies come to the link, not to nameko's ReplyListener

    def __init__(self, target_service: str, timeout: float | None = None,
                 methods: tuple[str, ...] | None = None, **options):
        self._timeout = timeout
        self.methods = frozenset(methods) if methods is not None else None
        super().__init__(target_service, **options)

    def setup(self) -> None:
        super().setup()
        config = self.container.config
        self.timeout = float(self._timeout or config.get("RPC_TIMEOUT", DEFAULT_TIMEOUT))
        self.serializer = self.options.get("serializer") or config.get(SERIALIZER_CONFIG_KEY,
                                                                       DEFAULT_SERIALIZER)
        self.link.listen()

    def get_dependency(self, worker_ctx) -> _Service:
        return _Service(self, worker_ctx)
