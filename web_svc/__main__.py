"""``python -m web_svc``: the web console on WEB_PORT (config.yaml), an eventlet WSGI server.
Every line it writes is one JSON object, as with ``shared.run``: warnings go
through logging, eventlet's import-time deprecation notice is filtered out."""
import logging
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
logging.captureWarnings(True)

import eventlet  # noqa: E402
import eventlet.wsgi  # noqa: E402

eventlet.monkey_patch()  # noqa: E402  before sockets are imported

import logging.config  # noqa: E402
import os  # noqa: E402

from ops.cli import ROOT, load_config  # noqa: E402
from web_svc.app import create_app  # noqa: E402


class _Quiet:
    """eventlet's access log would write each URL, query (emailed tokens) included."""

    def write(self, _line):
        pass


def main() -> None:
    config = load_config(os.environ.get("WEB_CONFIG", str(ROOT / "config.yaml")))
    logging.config.dictConfig(config["LOGGING"])
    app = create_app(config)
    if str(config.get("WEB_EVENTS_TAP", "true")).lower() not in ("0", "false", "no", "off"):
        from web_svc.events_tap import EventTap

        eventlet.spawn(EventTap(config["AMQP_URI"], app.extensions["web_redis"]).run)
    host = config.get("WEB_HOST") or "127.0.0.1"
    port = int(config.get("WEB_PORT") or 8080)
    logging.getLogger("web_svc").info("web console on http://%s:%s", host, port)
    eventlet.wsgi.server(eventlet.listen((host, port)), app, log=_Quiet(), log_output=False)


if __name__ == "__main__":
    main()
