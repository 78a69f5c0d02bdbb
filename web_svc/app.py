"""The Flask app: sessions in Redis, CSRF on every form, one error page per kind."""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

import redis
from flask import Flask, Request, jsonify, redirect, render_template, request, session, url_for
from flask_session import Session
from flask_wtf.csrf import CSRFError, CSRFProtect

from shared.redis import make_client
from web_svc import auth
from web_svc.gateway import ApiError, Gateway
from web_svc.ops import Ops

log = logging.getLogger(__name__)
SECRET_KEY = "web:secret-key"


def _secret_key(client: redis.Redis, configured: str | None) -> str:
    """WEB_SECRET_KEY, else one generated once and shared by every replica via Redis."""
    if configured:
        return configured
    client.set(SECRET_KEY, secrets.token_urlsafe(48), nx=True)
    return client.get(SECRET_KEY).decode()


def gateway_url(config: dict) -> str:
    return config.get("GATEWAY_URL") or f"http://{config.get('WEB_SERVER_ADDRESS', '127.0.0.1:8000')}"


class WebRequest(Request):
    # werkzeug 2.3 counts its 64 KiB multipart reads (file parts too) against this
    # limit, so its 500 kB default refuses ordinary uploads; bounded, as the gateway does
    max_form_memory_size = 1024 * 1024
    max_form_parts = 50


def create_app(config: dict) -> Flask:
    app = Flask(__name__)
    app.request_class = WebRequest
    # the one client factory (a cluster with REDIS_CLUSTER_NODES); bytes: pickled sessions
    client = make_client({"REDIS_TIMEOUT": 2, **config}, decode_responses=False)
    public_url = str(config.get("PUBLIC_URL") or "http://127.0.0.1:8080")
    app.config.update(
        SECRET_KEY=_secret_key(client, config.get("WEB_SECRET_KEY")),
        SESSION_TYPE="redis", SESSION_REDIS=client, SESSION_KEY_PREFIX="web:session:",
        SESSION_PERMANENT=True,
        SESSION_REFRESH_EACH_REQUEST=False,  # save only a changed session: a page's script
        # polling beside a form post must not write back an older copy over it
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=int(config.get("REFRESH_TOKEN_TTL", 2592000))),
        SESSION_COOKIE_NAME="wf_session", SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=urlsplit(public_url).scheme == "https",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        GATEWAY_URL=gateway_url(config),
        WS_URL=config.get("GATEWAY_WS_URL") or gateway_url(config).replace("http", "ws", 1) + "/api/v1/ws",
        SWAGGER_URL=gateway_url(config) + "/api/v1/docs",
        OPS_METRICS_URL=config.get("OPS_METRICS_URL") or "",
        OPS_GRAFANA_URL=config.get("OPS_GRAFANA_URL") or "",
        VAPID_PUBLIC_KEY=(config.get("VAPID_PUBLIC_KEY") or "").strip(),  # web push: the browser's key
        MAX_CONTENT_LENGTH=int(config.get("ATTACHMENT_MAX_BODY_BYTES") or 5505024),
    )
    app.extensions["web_redis"] = client
    app.extensions["gateway"] = Gateway(app.config["GATEWAY_URL"])
    app.extensions["ops"] = Ops(config)
    Session(app)
    CSRFProtect(app)

    from web_svc.views import analytics, operator, people, task_links, teams, tokens, webhooks, work

    app.register_blueprint(people.bp)
    app.register_blueprint(work.bp)
    app.register_blueprint(task_links.bp)
    app.register_blueprint(teams.bp)
    app.register_blueprint(operator.bp)
    app.register_blueprint(analytics.bp)
    app.register_blueprint(tokens.bp)
    app.register_blueprint(webhooks.bp)

    @app.get("/sw.js")
    def service_worker():
        """The push service worker, served from the root so its scope is the whole console."""
        response = app.send_static_file("sw.js")
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/healthz")
    def healthz():
        return jsonify({"ok": True})

    @app.context_processor
    def context():
        return {"user": auth.current_user(), "is_operator_nav": bool(session.get("operator")),
                "current_org": session.get("org")}

    @app.after_request
    def headers(response):
        # emailed links carry tokens: never let them leave in a Referer
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if auth.signed_in():
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(auth.SignInRequired)
    def sign_in_again(_exc):
        return redirect(url_for("people.login", next=request.path))

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        status = exc.status if exc.status in (403, 404, 409, 422, 429) else 503
        if exc.status >= 500:
            log.warning("API answered %s on %s", exc.status, request.path)
        return render_template("error.html", status=status, detail=exc.detail), status

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_template("error.html", status=400, detail=(
            "This form has expired or did not come from this site. Reload the page and try again.")), 400

    @app.errorhandler(413)
    def too_large(_exc):
        return render_template("error.html", status=413, detail="That file is too large."), 413

    @app.errorhandler(404)
    def not_found(_exc):
        return render_template("error.html", status=404, detail="There is no such page."), 404

    @app.errorhandler(500)
    def broken(_exc):
        detail = "Something broke on our side; it is logged."
        return render_template("error.html", status=500, detail=detail), 500

    return app
