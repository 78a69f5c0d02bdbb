"""shared.telemetry.scrub_event on events as sentry_sdk builds them."""
import sys

from sentry_sdk.consts import DEFAULT_OPTIONS
from sentry_sdk.utils import event_from_exception

from shared.errors import Unavailable, ValidationFailed
from shared.telemetry import outcome_of, scrub_event

SECRET = "s3cr3t-value-42"


def failing_login(body):
    mfa_token = SECRET                           # noqa: F841  (frame locals)
    context = {"headers": {"Authorization": f"Bearer {SECRET}"},  # noqa: F841
               "user": {"profile": {"reset_token": SECRET, "name": "Ada"}}}
    raise RuntimeError(f"GET /reset-password?token={SECRET}&x=1 failed")


def real_event():
    try:
        failing_login({"email": "ada@example.com", "password": SECRET, "code": "123456"})
    except RuntimeError:
        event, _ = event_from_exception(sys.exc_info(),
                                        client_options=dict(DEFAULT_OPTIONS))
    event["request"] = {"url": f"https://api.example.com/ws?token={SECRET}",
                        "headers": [["Authorization", f"Bearer {SECRET}"], ["Accept", "*/*"]],
                        "cookies": {"session": SECRET},
                        "data": {"items": [{"new_password": SECRET, "title": "ok"}]}}
    event["extra"] = {"deep": {"a": {"b": {"c": {"client_secret": SECRET}}}}}
    event["breadcrumbs"] = {"values": [{"message": f"login password={SECRET}"}]}
    return event


def test_scrub_removes_secrets_at_every_depth_and_keeps_the_rest():
    event = real_event()
    assert SECRET in repr(event)          # the SDK really put them there
    scrubbed = scrub_event(event, {})
    assert SECRET not in repr(scrubbed)
    frames = scrubbed["exception"]["values"][0]["stacktrace"]["frames"]
    local = next(f["vars"] for f in frames if f["function"] == "failing_login")
    assert local["mfa_token"] == "[Filtered]"
    assert "ada@example.com" in str(local["body"]) and local["body"]["password"] == "[Filtered]"
    assert "[Filtered]" in str(local["context"]) and "Ada" in str(local["context"])
    assert scrubbed["request"]["headers"] == [["Authorization", "[Filtered]"], ["Accept", "*/*"]]
    assert scrubbed["request"]["data"]["items"][0]["title"] == "ok"
    assert scrubbed["exception"]["values"][0]["value"].endswith("token=[Filtered]&x=1 failed")


def test_scrub_survives_deep_nesting():
    deep = {}
    node = deep
    for _ in range(500):
        node["n"] = {}
        node = node["n"]
    node["password"] = SECRET
    assert SECRET not in repr(scrub_event({"extra": deep}))


def test_server_failures_count_as_errors_client_errors_do_not():
    expected = (Unavailable, ValidationFailed, ValueError)
    assert outcome_of(None, expected) == "ok"
    assert outcome_of((None, ValidationFailed("x"), None), expected) == "expected_error"
    assert outcome_of((None, ValueError("x"), None), expected) == "expected_error"
    assert outcome_of((None, Unavailable("x"), None), expected) == "error"
    assert outcome_of((None, KeyError("x"), None), expected) == "error"


def _log_line(exc: Exception) -> dict:
    import json
    import logging

    from shared.telemetry import JsonFormatter
    try:
        raise exc
    except Exception:
        record = logging.LogRecord("nameko.containers", logging.WARNING, __file__, 1,
                                   "(expected) error handling worker %s", ("w",), sys.exc_info())
    return json.loads(JsonFormatter().format(record))


def test_log_line_of_an_app_error_names_it_without_its_stack():
    line = _log_line(Unavailable("Too many sign-ins right now.", headers={"Retry-After": "3"}))
    assert line["exc"] == "Unavailable: Too many sign-ins right now."


def test_log_line_of_a_bug_keeps_its_traceback():
    line = _log_line(RuntimeError("boom"))
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].endswith("RuntimeError: boom")
