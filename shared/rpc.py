"""RPC both ways: entrypoints that report our errors cleanly, and proxies
that never wait forever (nameko 2's RpcProxy has no timeout: docs/stack.md).

The caller's deadline travels with every call (the nameko context header
``deadline``, epoch seconds, set by :class:`ServiceRpc` a little before its own
timeout and never later than a deadline it got itself), and an ``@rpc`` runs
its MongoDB operations under it (``pymongo.timeout``, :class:`CallDeadline`):
an operation started after it fails, so a write the caller has given up on
(a 504 at the gateway) does not land later unseen."""
from __future__ import annotations

import time

import eventlet
import marshmallow
import pymongo
import pymongo.errors
import redis
from kombu import Queue
from kombu.exceptions import OperationalError
from nameko.amqp.publish import Publisher
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY,
    AMQP_URI_CONFIG_KEY,
    DEFAULT_SERIALIZER,
    LOGIN_METHOD_CONFIG_KEY,
    SERIALIZER_CONFIG_KEY,
)
from nameko.exceptions import UnknownService
from nameko.extensions import DependencyProvider
from nameko.rpc import (
    RPC_QUEUE_TEMPLATE,
    RPC_REPLY_QUEUE_TTL,
    ReplyListener,
    Responder,
    Rpc,
    RpcConsumer,
    RpcProxy,
    get_rpc_exchange,
)

from shared.errors import AppError, Timeout, Unavailable, validation_error
from shared.events import DEADLINE_KEY, event_queue_type, queue_arguments, record_events
from shared.telemetry import RPC_TIMEOUTS

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


class ReplyPublisher(Publisher):
    # A reply goes to the caller's own non-durable reply queue, without
    # ``mandatory``: a broker confirm cannot make it safer, only slower (one more
    # round trip per call). A reply lost with a broker is a timeout for the caller.
    use_confirms = False


class ReplyResponder(Responder):
    publisher_cls = ReplyPublisher


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
    are published without broker confirms (``ReplyPublisher``), through an
    exchange declared once rather than per reply."""

    rpc_consumer = AppRpcConsumer()

    def __init__(self, expected_exceptions=(), sensitive_arguments=(), **kwargs):
        super().__init__(expected_exceptions=(AppError, *tuple(expected_exceptions or ())),
                         sensitive_arguments=sensitive_arguments, **kwargs)

    def setup(self) -> None:
        super().setup()
        config = self.container.config
        self._reply_with = dict(amqp_uri=config[AMQP_URI_CONFIG_KEY],
                                exchange=get_rpc_exchange(config),
                                serializer=config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER),
                                ssl=config.get(AMQP_SSL_CONFIG_KEY),
                                login_method=config.get(LOGIN_METHOD_CONFIG_KEY))

    def _reply(self, message, result, exc_info):
        """nameko's ``RpcConsumer.handle_result``: reply, then ack the request."""
        result, exc_info = ReplyResponder(message=message, **self._reply_with).send_response(
            result, exc_info)
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
    flight is cut at it). Left when the method has returned, so recording its
    events and replying are never cut (``AppRpc.handle_result``)."""

    def setup(self) -> None:
        self.active: dict = {}

    def worker_setup(self, worker_ctx) -> None:
        deadline = worker_ctx.data.get(DEADLINE_KEY)
        if deadline is None or not isinstance(worker_ctx.entrypoint, AppRpc):
            return
        scope = pymongo.timeout(max(0.001, float(deadline) - time.time()))
        scope.__enter__()
        self.active[worker_ctx] = (scope, float(deadline))

    def leave(self, worker_ctx) -> float | None:
        scope, deadline = self.active.pop(worker_ctx, (None, None))
        if scope is not None:
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


class _Method:
    def __init__(self, method_proxy, target: str, timeout: float, service: str):
        self._proxy = method_proxy
        self._target = target
        self._timeout = timeout
        self._service = service

    def __call__(self, *args, **kwargs):
        return self.call_async(*args, **kwargs).result()

    def call_async(self, *args, **kwargs) -> "_Reply":
        data = self._proxy.worker_ctx.data  # the deadline goes as a header of this call only
        inherited = data.get(DEADLINE_KEY)
        data[DEADLINE_KEY] = call_deadline(self._timeout, inherited)
        try:
            reply = self._proxy.call_async(*args, **kwargs)
        except UnknownService:
            raise Unavailable(f"The {self._target} service is not running.") from None
        except (OperationalError, OSError) as exc:
            raise Unavailable("The message broker is unavailable.") from exc
        finally:
            if inherited is None:
                data.pop(DEADLINE_KEY, None)
            else:
                data[DEADLINE_KEY] = inherited
        return _Reply(reply, self)


class _Reply:
    def __init__(self, reply, method: _Method):
        self._reply = reply
        self._method = method

    def result(self, timeout: float | None = None):
        method = self._method
        timeout = timeout or method._timeout
        try:
            with eventlet.Timeout(timeout):
                return self._reply.result()
        except eventlet.Timeout:
            RPC_TIMEOUTS.labels(method._service, method._target).inc()
            raise Timeout(f"The {method._target} service did not answer within "
                          f"{timeout:g} s.") from None


class _Service:
    def __init__(self, proxy, target: str, timeout: float, service: str,
                 methods: frozenset[str] | None = None):
        self._proxy, self._target, self._timeout, self._service = proxy, target, timeout, service
        self._methods = methods

    def __getattr__(self, name: str) -> _Method:
        if self._methods is not None and name not in self._methods:
            # the broker would refuse it too (shared.access): say so before sending
            raise AttributeError(f"{self._service} may not call {self._target}.{name}: "
                                 "add it to the ServiceRpc's methods")
        return _Method(getattr(self._proxy, name), self._target, self._timeout, self._service)


class TransientReplyListener(ReplyListener):
    """nameko's ReplyListener with a non-durable reply queue: a durable classic
    queue whose node stopped cannot be declared again on another node of a
    cluster ("home node is down"), a transient one is simply made there again
    when the proxy's consumer fails over (calls in flight then time out: 504)."""

    queue: Queue

    def setup(self) -> None:
        super().setup()
        queue = self.queue
        self.queue = Queue(queue.name, exchange=queue.exchange, routing_key=queue.routing_key,
                           queue_arguments={"x-expires": RPC_REPLY_QUEUE_TTL}, durable=False)


class ServiceRpc(RpcProxy):
    """``RpcProxy`` whose calls time out (``RPC_TIMEOUT`` seconds, default 5)
    with :class:`shared.errors.Timeout`; an undeliverable call becomes
    :class:`shared.errors.Unavailable`. Requests expire in the queue after the
    same time, so a service that comes back does not work through stale calls.

    ``methods``: the only methods of the target this service may call (None:
    all). Its broker user gets exactly these routing keys (shared.access)."""

    rpc_reply_listener = TransientReplyListener()

    def __init__(self, target_service: str, timeout: float | None = None,
                 methods: tuple[str, ...] | None = None, **options):
        self._timeout = timeout
        self.methods = frozenset(methods) if methods is not None else None
        super().__init__(target_service, **options)

    def setup(self) -> None:
        super().setup()
        self.timeout = float(self._timeout or self.container.config.get("RPC_TIMEOUT",
                                                                       DEFAULT_TIMEOUT))
        self.options.setdefault("expiration", self.timeout)
        # a broker outage must fail the call quickly (503), not hang on reconnects
        self.options.setdefault("retry_policy", {"max_retries": 1, "interval_start": 0,
                                                 "interval_step": 0.2, "interval_max": 0.2})

    def get_dependency(self, worker_ctx) -> _Service:
        return _Service(super().get_dependency(worker_ctx), self.target_service, self.timeout,
                        self.container.service_name, self.methods)


