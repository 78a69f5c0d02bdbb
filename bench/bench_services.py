"""Services used by bench/rpc_roundtrip.py: a trivial RPC target and a
gateway built from the real gateway machinery (gateway_svc.http: ``@api``,
problem+json, request ids, the per-request checks) and the real Redis cache.

``/bench/rpc`` is an anonymous route without a rate limit that makes one RPC.
``/orgs/<org_id>/bench/cached`` is declared as the real cached routes are
(``cached=CachedRoute``, as ``GET /orgs/<org_id>/tasks``): a real access
token, its blacklist keys and the rate limit (``RATE_LIMIT_DEFAULT``, set
high by the bench so that none is refused), the caller's cached membership and
the cached answer, all in the one Redis call of ``gateway_svc.checks``; a hit
is answered before any worker starts. The worker runs on a miss only (the
first call), through the same tenancy check the real routes use."""
from nameko.dependency_providers import Config

from gateway_svc.cache import CachedRoute
from gateway_svc.http import api
from shared.redis import Redis
from shared.rpc import ServiceRpc, rpc

BENCH_ANSWERS = CachedRoute("bench:cached", "bench", ttl=300)


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
    rpc_employees = ServiceRpc("employees")  # asked only if the membership is not cached

    @api("GET", "/bench/rpc", auth=False, limit=None)
    def via_rpc(self, request):
        return {"value": self.echo.echo("pong")}

    @api("GET", "/orgs/<org_id>/bench/cached", cached=BENCH_ANSWERS)
    def via_cache(self, request, org_id):
        return BENCH_ANSWERS.response(self.redis, request, org_id,
                                      lambda: {"value": self.echo.echo("pong")})
