"""Rules of personal access token scopes, ETags and Idempotency-Key (no I/O)."""
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from werkzeug.datastructures import Headers

from auth_svc import domain as auth_domain
from gateway_svc import etags, idempotency, scopes
from shared.errors import Forbidden, NotFound, PreconditionFailed
from shared.versions import expect_version, require_version, version_of


# --- scopes ------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,needed", [
    ("GET", "/orgs/<org_id>/tasks", "read"),
    ("HEAD", "/orgs/<org_id>/tasks/<task_id>", "read"),
    ("POST", "/orgs/<org_id>/tasks", "write"),
    ("PATCH", "/orgs/<org_id>/tasks/<task_id>", "write"),
    ("DELETE", "/orgs/<org_id>/teams/<team_id>", "write"),
    ("PATCH", "/orgs/<org_id>", "write"),
    ("DELETE", "/orgs/<org_id>", "admin"),
    ("POST", "/orgs/<org_id>/transfer-ownership", "admin"),
    ("PATCH", "/orgs/<org_id>/settings", "admin"),
    ("POST", "/orgs/<org_id>/employees", "admin"),
    ("DELETE", "/orgs/<org_id>/employees/<employee_id>", "admin"),
    ("POST", "/orgs/<org_id>/webhooks", "admin"),
    ("POST", "/orgs/<org_id>/webhooks/<webhook_id>/rotate-secret", "admin"),
    ("PUT", "/orgs/<org_id>/notification-templates/<key>", "admin"),
    ("GET", "/orgs/<org_id>/webhooks", "read"),
    ("GET", "/users/me", "read"),
    ("PATCH", "/users/me", None), ("DELETE", "/users/me", None),
    ("GET", "/me/tokens", None), ("POST", "/me/tokens", None),
    ("DELETE", "/me/tokens/<token_id>", None),
    ("POST", "/auth/logout", None), ("GET", "/auth/sessions", None),
    ("POST", "/auth/mfa/disable", None), ("POST", "/invitations/<token>/accept", None),
])
def test_each_route_needs_the_scope_it_should(method, path, needed):
    assert scopes.required_scope(method, path) == needed


def test_scopes_are_ordered_and_unknown_scopes_allow_nothing():
    assert scopes.allows("admin", "write") and scopes.allows("write", "read")
    assert not scopes.allows("read", "write") and not scopes.allows("write", "admin")
    assert not scopes.allows("root", "read")


def test_a_token_is_refused_past_its_scope_and_outside_its_org():
    claims = {"sub": "u1", "pat": "t1", "scope": "write", "org_id": "o1"}
    scopes.check_token(claims, "POST", "/orgs/<org_id>/tasks", "o1")
    with pytest.raises(Forbidden):
        scopes.check_token(claims, "DELETE", "/orgs/<org_id>", "o1")
    with pytest.raises(NotFound):
        scopes.check_token(claims, "GET", "/orgs/<org_id>/tasks", "o2")
    with pytest.raises(Forbidden):
        scopes.check_token(claims, "GET", "/me/tasks", None)
    scopes.check_token(claims, "GET", "/users/me", None)
    free = {**claims, "org_id": None}
    scopes.check_token(free, "GET", "/me/tasks", None)
    scopes.check_token(free, "GET", "/orgs/<org_id>/tasks", "o2")
    with pytest.raises(Forbidden):
        scopes.check_token({**free, "scope": "admin"}, "POST", "/me/tokens", None)


# --- ETags ---------------------------------------------------------------------------
def request(method="GET", **headers):
    return SimpleNamespace(method=method, headers=Headers(headers))


def test_get_answers_the_etag_and_304_when_if_none_match_names_it():
    obj = {"task_id": "k1", "version": 3}
    assert etags.answer(request(), obj) == (200, {"ETag": '"v3"'}, obj)
    for header in ('"v3"', '"v1", "v3"', 'W/"v3"', "*"):
        answer = etags.answer(request(**{"If-None-Match": header}), obj)
        assert answer.status_code == 304 and answer.headers["ETag"] == '"v3"', header
    assert etags.answer(request(**{"If-None-Match": '"v2"'}), obj)[0] == 200
    # If-None-Match does not turn a write's answer into a 304
    assert etags.answer(request("PATCH", **{"If-None-Match": '"v3"'}), obj)[0] == 200
    assert etags.answer(request(), {"version": None})[1] == {"ETag": '"v0"'}


def test_if_match_names_one_version_or_fails_at_once():
    assert etags.if_match_version(request("PATCH")) is None
    assert etags.if_match_version(request("PATCH", **{"If-Match": "*"})) is None
    assert etags.if_match_version(request("PATCH", **{"If-Match": '"v7"'})) == 7
    assert etags.if_match_version(request("PATCH", **{"If-Match": '"v7", "v7"'})) == 7
    for header in ('W/"v7"', "v7", '"7"', '"v1", "v2"', "", '"v-1"'):
        with pytest.raises(PreconditionFailed):
            etags.if_match_version(request("PATCH", **{"If-Match": header}))


def test_versions_filter_and_check():
    assert version_of({}) == 0 and version_of({"version": 4}) == 4
    assert expect_version(None) == {}
    assert expect_version(4) == {"version": 4}
    assert expect_version(0) == {"version": {"$in": [0, None]}}  # written before versions
    require_version({"version": 4}, 4)
    require_version({"version": 4}, None)
    with pytest.raises(PreconditionFailed):
        require_version({"version": 5}, 4)


# --- Idempotency-Key -----------------------------------------------------------------
def test_the_same_request_is_the_same_whatever_the_json_spacing_or_key_order():
    body = b'{"title": "x", "priority": "high"}'
    a = idempotency.fingerprint("POST", "/api/v1/orgs/o1/tasks", body)
    b = idempotency.fingerprint("POST", "/api/v1/orgs/o1/tasks", b'{"priority":"high","title":"x"}')
    assert a == b
    assert a != idempotency.fingerprint("POST", "/api/v1/orgs/o2/tasks", body)
    assert a != idempotency.fingerprint("POST", "/api/v1/orgs/o1/tasks", body.replace(b"x", b"y"))
    assert idempotency.fingerprint("POST", "/p", b"not json") != idempotency.fingerprint("POST", "/p", b"")


def test_keys_are_bounded_printable_ascii_and_scoped_to_the_caller():
    assert idempotency.valid_key("a") and idempotency.valid_key("k" * 255)
    for bad in ("", "k" * 256, "caf\u00e9", "tab\there", "new\nline"):
        assert not idempotency.valid_key(bad)
    key = idempotency.storage_key("u1", None, "order-42")
    assert key.startswith("gateway:idem:u1:-:") and "order-42" not in key  # hashed
    assert idempotency.storage_key("u1", "t1", "order-42") != key
    assert idempotency.storage_key("u2", None, "order-42") != key


def test_results_are_split_into_status_headers_and_body():
    assert idempotency.as_parts({"a": 1}) == (200, {}, {"a": 1})
    assert idempotency.as_parts((201, {"a": 1})) == (201, {}, {"a": 1})
    assert idempotency.as_parts((202, {"Location": "/x"}, {"a": 1})) == (202, {"Location": "/x"}, {"a": 1})
    replayed = idempotency.replay({"status": 201, "headers": {"Location": "/x"}, "body": '{"a": 1}'})
    assert replayed.status_code == 201 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.headers["Location"] == "/x" and replayed.get_json() == {"a": 1}


# --- personal access tokens (auth) ------------------------------------------------------
def test_a_token_record_holds_no_secret_and_a_token_lives_until_revoked_or_expired():
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    token = {"_id": "t1", "user_id": "u1", "scope": "read", "org_id": None,
             "token_hash": "h" * 64, "prefix": "wfp_abcdef", "expires_at": now + timedelta(days=1),
             "revoked_at": None}
    record = auth_domain.pat_record(token)
    assert record == {"token_id": "t1", "user_id": "u1", "scope": "read", "org_id": None,
                      "expires_at": int((now + timedelta(days=1)).timestamp())}
    assert auth_domain.pat_live(token, now)
    assert not auth_domain.pat_live({**token, "revoked_at": now}, now)
    assert not auth_domain.pat_live(token, now + timedelta(days=2))
    assert auth_domain.pat_display("abcdefghij") == "wfp_abcdef"
