"""Services used by bench/rpc_roundtrip.py: a trivial RPC target and a
gateway built from the real gateway machinery (gateway_svc.http: ``@api``,
problem+json, request ids, rate-limit-free routes) and the real Redis cache."""
from nameko.dependency_providers import Config

from gateway_svc.http import api
from shared.redis import Redis
from shared.rpc import ServiceRpc, rpc


class EchoService:
    name = "bench_echo"

    @rpc
    def echo(self, value=None):
        return value


class BenchGateway:
    name = "bench_gateway"
    config = Config()
    redis = Redis()
    echo = ServiceRpc("bench_echo")

    @api("GET", "/bench/rpc", auth=False, limit=None)
    def via_rpc(self, request):
        return {"value": self.echo.echo("pong")}

    @api("GET", "/bench/cached", auth=False, limit=None)
    def via_cache(self, request):
        return {"value": self.redis.cache.get_or_set("bench:cached", lambda: self.echo.echo("pong"),
                                                      ttl=300)}
