"""What reaches Sentry: a real sentry_sdk client posting to a real HTTP
server (the "Sentry" of this test) from a service in a real container."""
import gzip
import json
import logging
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import eventlet
import pytest
import requests
import sentry_sdk
from nameko.dependency_providers import Config
from nameko.exceptions import IncorrectSignature
from nameko.standalone.rpc import ServiceRpcProxy

from gateway_svc.http import api
from ops import mesh
from shared import service as base
from shared.errors import Timeout, Unavailable
from shared.redis import Redis
from shared.rpc import rpc
from shared.telemetry import ENTRYPOINT_CALLS, Telemetry
from tests.helpers import wait_until
from tests.tokens import auth_headers

SECRET = "hunter2-correct-horse"


class SentrySink(BaseHTTPRequestHandler):
    events: list = []

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        for line in raw.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and "exception" in item:
                SentrySink.events.append(item)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def sentry_dsn():
    SentrySink.events = []
    port = mesh.free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), SentrySink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://publickey@127.0.0.1:{port}/1"
    sentry_sdk.get_client().close(timeout=1)
    sentry_sdk.get_global_scope().set_client(None)
    server.shutdown()


class Failing(base.ServiceBase):
    name = "telemetry_probe"

    @rpc
    def unavailable(self, form):
        password = SECRET                          # noqa: F841  (a frame local)
        nested = {"user": {"reset_token": SECRET, "Authorization": f"Bearer {SECRET}"}}  # noqa: F841
        raise Unavailable(f"The database is unavailable (url ?token={SECRET}).")

    @rpc
    def timeout(self):
        raise Timeout("The tasks service did not answer in time.")


def errors(entrypoint):
    return ENTRYPOINT_CALLS.labels("telemetry_probe", entrypoint, "error")._value.get()


def test_503_and_504_reach_sentry_and_the_error_count_scrubbed(container_factory, make_config,
                                                                sentry_dsn):
    config = make_config(SENTRY_DSN=sentry_dsn)
    container_factory(Failing, config).start()
    before = errors("unavailable"), errors("timeout")
    with ServiceRpcProxy("telemetry_probe", config) as probe:
        with pytest.raises(Exception, match="unavailable"):
            probe.unavailable({"client_secret": SECRET, "note": f"code={SECRET}"})
        with pytest.raises(Exception, match="did not answer"):
            probe.timeout()
    # the error panel (outcome="error"): 503 and 504 are server failures
    wait_until(lambda: (errors("unavailable"), errors("timeout")) == (before[0] + 1, before[1] + 1),
               timeout=5, what="both calls counted as errors")

    wait_until(lambda: len(SentrySink.events) >= 2, timeout=10, what="two Sentry events")
    types = {e["exception"]["values"][-1]["type"] for e in SentrySink.events}
    assert types == {"Unavailable", "Timeout"}
    sent = json.dumps(SentrySink.events)
    assert SECRET not in sent                       # not in locals, message, arguments
    frame = next(f for e in SentrySink.events for v in e["exception"]["values"]
                 for f in (v.get("stacktrace") or {}).get("frames", [])
                 if f.get("function") == "unavailable")
    assert frame["vars"]["password"] == "[Filtered]"
    assert "[Filtered]" in json.dumps(frame["vars"]["nested"])


class CheckedGateway:
    """A gateway route whose checks (token, blacklist, rate limit) need Redis."""

    name = "checkedgw"
    config = Config()
    telemetry = Telemetry()
    redis = Redis()

    @api("GET", "/mine")
    def mine(self, request):
        return {"user_id": request.user_id}


def test_a_503_from_the_gateways_checks_reaches_sentry_and_the_error_count(
        container_factory, make_config, sentry_dsn):
    """Redis down at the gateway: the request fails closed (503) before any worker runs,
    and that outage is counted and reported like a worker's."""
    config = make_config(SENTRY_DSN=sentry_dsn)
    headers = auth_headers(config, "ann")  # a good token; then the gateway loses Redis
    down = {**config, "REDIS_URI": f"redis://127.0.0.1:{mesh.free_port()}/0", "REDIS_TIMEOUT": 0.3}
    container_factory(CheckedGateway, down).start()
    before = ENTRYPOINT_CALLS.labels("checkedgw", "mine", "error")._value.get()
    answer = requests.get(f"http://{down['WEB_SERVER_ADDRESS']}/api/v1/mine", headers=headers,
                          timeout=10)
    assert answer.status_code == 503, answer.text
    wait_until(lambda: any(e["exception"]["values"][-1]["type"] == "Unavailable"
                           for e in SentrySink.events), timeout=10, what="the 503 in Sentry")
    assert ENTRYPOINT_CALLS.labels("checkedgw", "mine", "error")._value.get() == before + 1


class Paced(base.ServiceBase):
    name = "telemetry_paced"

    @rpc
    def quick(self, n):
        return n

    @rpc
    def slow(self):
        eventlet.sleep(0.15)  # past LOG_SLOW_CALL_MS=100 below: the call being slow is the point

    @rpc
    def refused(self):
        raise Unavailable("down")


def test_an_rpc_that_went_well_and_fast_is_logged_at_debug_others_at_info(
        container_factory, make_config, caplog):
    """One log line per request at INFO (the gateway's access line): a service's fast
    successful call is a DEBUG line; a slow one, a failure and a call with the wrong
    arguments are INFO lines an operator sees."""
    config = make_config(LOG_SLOW_CALL_MS=100)
    container_factory(Paced, config).start()
    caplog.set_level(logging.DEBUG, logger="workforce.entrypoint")
    with ServiceRpcProxy("telemetry_paced", config) as probe:
        assert probe.quick(3) == 3
        probe.slow()
        with pytest.raises(Exception, match="down"):
            probe.refused()
        with pytest.raises(IncorrectSignature):
            probe.quick(1, 2)

    def level(entrypoint):
        wait_until(lambda: any(r.fields["entrypoint"] == entrypoint for r in logged()),
                   timeout=5, what=f"{entrypoint} logged")
        return next(r.levelno for r in logged() if r.fields["entrypoint"] == entrypoint)

    def logged():
        return [r for r in caplog.records if r.name == "workforce.entrypoint"
                and r.fields.get("service") == "telemetry_paced"]

    assert level("quick") == logging.DEBUG
    assert level("slow") == logging.INFO
    assert level("refused") == logging.INFO
