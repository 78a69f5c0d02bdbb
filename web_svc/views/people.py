"""Accounts: sign up, sign in (2FA step), the pages of emailed links, profile, sessions.

An emailed link's token is moved from the URL into the session at once and
the browser redirected to a token-free URL, so it stays out of history, logs
and Referer headers."""
from __future__ import annotations

from functools import wraps

import qrcode
import qrcode.image.svg
from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from markupsafe import Markup

from auth_svc.domain import MIN_PASSWORD_LENGTH
from notify_svc.domain import CHANNELS, KINDS
from web_svc import auth
from web_svc.gateway import ApiError

bp = Blueprint("people", __name__)
PREFERENCE_KINDS = [kind for kind, (_event, critical) in KINDS.items() if not critical]
PASSWORD_RULES = [f"At least {MIN_PASSWORD_LENGTH} characters.", "Not your email address.",
                  "Not a commonly used password."]


def _gateway():
    return current_app.extensions["gateway"]


def _public(method, path, **kwargs):
    return _gateway().call(method, path, user_agent=request.headers.get("User-Agent"), **kwargs)


def _next_url() -> str:
    target = request.values.get("next") or ""
    return target if target.startswith("/") and not target.startswith("//") else url_for("work.home")


def _after_sign_in(answer: dict, next_url: str | None = None):
    next_url = next_url or _next_url()
    auth.sign_in(answer)
    try:
        session["operator"] = bool(current_app.extensions["ops"].rpc(
            "auth", "is_operator", answer["user"]["user_id"]))
    except Exception:  # the nav link only; operator pages ask again
        session["operator"] = False
    return redirect(next_url)


@bp.route("/register", methods=["GET", "POST"])
def register():
    form, errors, detail = request.form.to_dict(), {}, None
    if request.method == "POST":
        try:
            answer = _public("POST", "/auth/register", json={
                "email": form.get("email", ""), "password": form.get("password", ""),
                "name": form.get("name", "")})
            return _after_sign_in(answer)
        except ApiError as exc:
            if exc.status >= 500:
                raise
            errors, detail = exc.field_errors(), exc.detail
    form.pop("password", None)
    return render_template("register.html", form=form, errors=errors, detail=detail,
                           rules=PASSWORD_RULES, next=request.values.get("next", "")), \
        (422 if errors or detail else 200)


@bp.route("/login", methods=["GET", "POST"])
def login():
    form, errors, detail = request.form.to_dict(), {}, None
    if request.method == "POST":
        try:
            answer = _public("POST", "/auth/login", json={
                "email": form.get("email", ""), "password": form.get("password", "")})
            if answer.get("mfa_required"):
                session["mfa"] = {"token": answer["mfa_token"], "next": _next_url()}
                return redirect(url_for("people.login_mfa"))
            return _after_sign_in(answer)
        except ApiError as exc:
            if exc.status >= 500:
                raise
            errors, detail = exc.field_errors(), exc.detail
    form.pop("password", None)
    status = 401 if detail else 200
    return render_template("login.html", form=form, errors=errors, detail=detail,
                           next=request.values.get("next", "")), status


@bp.route("/login/2fa", methods=["GET", "POST"])
def login_mfa():
    pending = session.get("mfa")
    if not pending:
        return redirect(url_for("people.login"))
    errors, detail = {}, None
    if request.method == "POST":
        try:
            answer = _public("POST", "/auth/login/mfa", json={
                "mfa_token": pending["token"], "code": request.form.get("code", "").strip()})
            session.pop("mfa", None)
            return _after_sign_in(answer, pending["next"])
        except ApiError as exc:
            if exc.status >= 500:
                raise
            errors, detail = exc.field_errors(), exc.detail
    return render_template("login_mfa.html", errors=errors, detail=detail), 401 if detail else 200


@bp.post("/logout")
def logout():
    auth.sign_out()
    return redirect(url_for("people.login"))


# -- emailed links ---------------------------------------------------------------
LINKS = {"verify": "verification", "reset": "password reset", "invitation": "invitation"}


def emailed_link(kind: str):
    """The page of an emailed link: ``?token=`` moves into the session at once (the
    answer is the token-free redirect); with no token kept, the clear invalid-link
    page; otherwise the view runs with the token as its first argument."""
    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            token = request.args.get("token")
            if token:
                session[f"link:{kind}"] = token
                return redirect(request.path)
            token = session.get(f"link:{kind}")
            if not token:
                return link_invalid(kind)
            return view(token, *args, **kwargs)
        return wrapper
    return decorate


def link_invalid(kind: str, detail: str | None = None, **extra):
    """A used, expired or unknown link: forgotten, and said so (400)."""
    session.pop(f"link:{kind}", None)
    return render_template("link_invalid.html", what=LINKS[kind], detail=detail, **extra), 400


def _link_refused(kind: str, exc: ApiError):
    if exc.status >= 500:
        raise exc
    return link_invalid(kind, exc.detail)


@bp.route("/verify-email", methods=["GET", "POST"])
@emailed_link("verify")
def verify_email(token):
    if request.method == "GET":  # a button, so a mail scanner's prefetch does not use the link
        return render_template("verify_email.html")
    try:
        _public("POST", "/auth/email/verify", json={"token": token})
    except ApiError as exc:
        return _link_refused("verify", exc)
    session.pop("link:verify", None)
    return render_template("verified.html")


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password():
    form, errors, sent = request.form.to_dict(), {}, False
    if request.method == "POST":
        try:
            _public("POST", "/auth/password/forgot", json={"email": form.get("email", "")})
            sent = True
        except ApiError as exc:
            if exc.status >= 500:
                raise
            errors = exc.field_errors()
    return render_template("forgot.html", form=form, errors=errors, sent=sent), 422 if errors else 200


@bp.route("/reset-password", methods=["GET", "POST"])
@emailed_link("reset")
def reset_password(token):
    errors, detail = {}, None
    if request.method == "POST":
        try:
            _public("POST", "/auth/password/reset", json={
                "token": token, "password": request.form.get("password", "")})
            session.pop("link:reset", None)
            return render_template("reset_done.html")
        except ApiError as exc:
            if exc.status >= 500 or "token" in exc.errors:  # used, expired or unknown: nothing to retry
                return _link_refused("reset", exc)
            errors, detail = exc.field_errors(), exc.detail
    return render_template("reset.html", errors=errors, detail=detail, rules=PASSWORD_RULES), \
        422 if errors else 200


@bp.route("/invitations/<token>")
def invitation_link(token):
    session["link:invitation"] = token
    return redirect(url_for("people.invitation"))


@bp.route("/invitation", methods=["GET", "POST"])
@emailed_link("invitation")
def invitation(token):
    if not auth.signed_in():
        return render_template("invitation.html", signed_in=False)
    if request.method == "GET":
        return render_template("invitation.html", signed_in=True)
    try:
        employee = auth.api("POST", f"/invitations/{token}/accept")
    except ApiError as exc:
        if exc.status >= 500 or exc.status == 401:
            raise
        if exc.status in (403, 409):  # e.g. verify your email first: the link stays usable
            return render_template("invitation.html", signed_in=True, detail=exc.detail), exc.status
        # signing up (or verifying) with the invited address joins by itself, which
        # uses the invitation: show where this person is a member now
        return link_invalid("invitation", exc.detail, orgs=auth.api("GET", "/orgs")["items"])
    session.pop("link:invitation", None)
    return redirect(url_for("work.org", org_id=employee["org_id"], joined=1))


# -- the account ------------------------------------------------------------------
@bp.route("/account", methods=["GET", "POST"])
@auth.login_required
def account():
    errors, saved = {}, False
    if request.method == "POST":
        try:
            auth.api("PATCH", "/users/me", json={"name": request.form.get("name", "")})
            saved = True
        except ApiError as exc:
            if exc.status not in (409, 422):
                raise
            errors = exc.field_errors()
    me = auth.api("GET", "/users/me")
    sessions = auth.api("GET", "/auth/sessions")["items"]
    return render_template("account.html", me=me, sessions=sessions, errors=errors, saved=saved), \
        422 if errors else 200


@bp.post("/account/sessions/<session_id>/revoke")
@auth.login_required
def revoke_session(session_id):
    auth.api("DELETE", f"/auth/sessions/{session_id}")
    return redirect(url_for("people.account"))


@bp.post("/account/resend-verification")
@auth.login_required
def resend_verification():
    auth.api("POST", "/auth/email/resend")
    return redirect(url_for("people.account", resent=1))


# -- notification preferences (every non-security email links here) ---------------
@bp.route("/settings/notifications", methods=["GET", "POST"])
@auth.login_required
def preferences():
    errors, saved, body = {}, False, None
    if request.method == "POST":
        body = {"channels": {kind: {channel: f"{kind}:{channel}" in request.form for channel in CHANNELS}
                             for kind in PREFERENCE_KINDS},
                "digest": request.form.get("digest") or None,
                "timezone": request.form.get("timezone", "UTC")}
        try:
            auth.api("PUT", "/notifications/preferences", json=body)
            saved = True
        except ApiError as exc:
            if exc.status not in (400, 422):
                raise
            errors = exc.field_errors()
    prefs = body if errors else auth.api("GET", "/notifications/preferences")  # refused: as sent
    return render_template("preferences.html", prefs=prefs, kinds=PREFERENCE_KINDS, channels=CHANNELS,
                           focus=request.args.get("kind"), errors=errors, saved=saved), \
        422 if errors else 200


# -- two-factor sign-in -----------------------------------------------------------
def _qr_svg(uri: str) -> Markup:
    """The otpauth URI as an inline SVG QR code, drawn here (no image leaves the server)."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return Markup(image.to_string(encoding="unicode"))


@bp.route("/account/2fa", methods=["GET", "POST"])
@auth.login_required
def two_factor():
    """GET: the state; POST: a new secret and its QR code, to confirm with a first code."""
    if request.method == "GET":
        return render_template("two_factor.html", me=auth.api("GET", "/users/me"), setup=None, errors={})
    setup = auth.api("POST", "/auth/mfa/setup")
    return render_template("two_factor.html", me=None, setup=setup, qr=_qr_svg(setup["otpauth_uri"]),
                           errors={})


@bp.post("/account/2fa/enable")
@auth.login_required
def two_factor_enable():
    try:
        codes = auth.api("POST", "/auth/mfa/enable", json={"code": request.form.get("code", "").strip()})
    except ApiError as exc:
        if exc.status not in (409, 422):
            raise
        setup = {"secret": request.form.get("secret", ""), "otpauth_uri": request.form.get("otpauth_uri", "")}
        return render_template("two_factor.html", me=None, setup=setup, qr=_qr_svg(setup["otpauth_uri"]),
                               errors=exc.field_errors() or {"code": exc.detail}), 422
    return render_template("recovery_codes.html", codes=codes["recovery_codes"])


@bp.post("/account/2fa/disable")
@auth.login_required
def two_factor_disable():
    try:
        auth.api("POST", "/auth/mfa/disable", json={"code": request.form.get("code", "").strip()})
    except ApiError as exc:
        if exc.status not in (409, 422):
            raise
        return render_template("two_factor.html", me=auth.api("GET", "/users/me"), setup=None,
                               errors=exc.field_errors() or {"code": exc.detail}), 422
    return redirect(url_for("people.two_factor"))
