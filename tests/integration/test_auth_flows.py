"""Auth through the real gateway: AuthService + GatewayService against real
RabbitMQ, Redis and SecantusDB (bcrypt cost 4 from make_config, for speed)."""
import json
import time
from concurrent.futures import ThreadPoolExecutor

import eventlet
import pyotp
import pytest
import requests
from nameko.events import event_handler
from nameko.standalone.rpc import ServiceRpcProxy

from auth_svc.service import AuthService
from gateway_svc.service import GatewayService
from shared.sealed import Unsealable
from tests.helpers import wait_until
from tests.tokens import token_of, unseal_link

PASSWORD = "correct horse battery"
EVENT_TYPES = ("user.registered", "user.email.verified", "user.login", "user.logout",
               "user.password.reset", "user.password.changed", "user.updated",
               "user.deleted", "user.email.verification.requested")


class Recorder:
    """Stands in for notifications & co: records what auth publishes."""
    name = "auth_event_recorder"
    seen: list = []


for _event in EVENT_TYPES:
    def _record(self, payload):
        Recorder.seen.append(payload)
    _record.__name__ = f"on_{_event.replace('.', '_')}"
    setattr(Recorder, _record.__name__, event_handler("auth", _event)(_record))


def events_of(event_type, **data):
    return [e for e in Recorder.seen if e["event_type"] == event_type
            and all(e["data"].get(k) == v for k, v in data.items())]


def wait_event(event_type, **data):
    return wait_until(lambda: events_of(event_type, **data), timeout=10,
                      what=f"{event_type} {data}")[0]


class Api:
    def __init__(self, config):
        self.config = config
        self.base = f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"

    def __call__(self, method, path, token=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.base + path, headers=headers, timeout=10, **kwargs)

    def register(self, email, password=PASSWORD, name="Ada Lovelace"):
        answer = self("POST", "/auth/register", json={"email": email, "password": password,
                                                       "name": name})
        assert answer.status_code == 201, answer.text
        return answer.json()

    def login(self, email, password=PASSWORD, status=200, **kwargs):
        answer = self("POST", "/auth/login", json={"email": email, "password": password},
                      **kwargs)
        assert answer.status_code == status, answer.text
        return answer.json()


def start_mesh(container_factory, config, recorder=True):
    classes = (AuthService, GatewayService) + ((Recorder,) if recorder else ())
    for cls in classes:
        container_factory(cls, config).start()
    return Api(config)


@pytest.fixture
def api(container_factory, config):
    Recorder.seen = []
    return start_mesh(container_factory, config)


def problem(answer, status):
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/problem+json"
    return answer.json()


# -- register, verify, profile -------------------------------------------------------
def test_register_verify_and_profile(api, unique):
    email = f"Ada.{unique}@Example.COM "
    body = api.register(email)
    normalised = email.strip().lower()
    assert body["user"]["email"] == normalised and body["user"]["email_verified"] is False
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert "password_hash" not in body["user"]
    event = wait_event("user.registered", email=normalised)
    token = token_of(api.config, event["data"])     # the link is sealed in the event
    assert unseal_link(api.config, event["data"]) == (
        f"http://127.0.0.1:8080/verify-email?token={token}")
    assert token not in json.dumps(event)
    me = api("GET", "/users/me", body["access_token"])
    assert me.status_code == 200 and me.json()["user_id"] == body["user"]["user_id"]

    assert api("POST", "/auth/email/verify", json={"token": token}).status_code == 204
    problem(api("POST", "/auth/email/verify", json={"token": token}), 422)   # single use
    wait_event("user.email.verified", user_id=body["user"]["user_id"])
    assert api("GET", "/users/me", body["access_token"]).json()["email_verified"] is True
    refreshed = api("POST", "/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200
    assert api("GET", "/users/me", refreshed.json()["access_token"]).json()["email_verified"]
    problem(api("POST", "/auth/email/resend", body["access_token"]), 409)   # already verified


def test_duplicate_email_is_409_even_with_other_spelling(api, unique):
    api.register(f"bob.{unique}@example.com")
    body = problem(api("POST", "/auth/register", json={
        "email": f"  BOB.{unique}@EXAMPLE.com", "password": PASSWORD, "name": "B"}), 409)
    assert "email" in body["errors"]


def test_twenty_simultaneous_registrations_make_one_account(api, unique):
    email = f"race.{unique}@example.com"

    def register(_):
        return api("POST", "/auth/register", json={"email": email, "password": PASSWORD,
                                                   "name": "Racer"}).status_code
    pool = eventlet.GreenPool(20)
    codes = sorted(pool.imap(register, range(20)))
    # one account; the others are told it exists, or (a loaded machine, past the
    # bcrypt budget) to come back later: 503 with Retry-After, never a second account
    assert codes.count(201) == 1 and set(codes) <= {201, 409, 503}, codes


@pytest.mark.parametrize("body, field", [
    ({"email": "x@example.com", "password": "short", "name": "N"}, "password"),
    ({"email": "x@example.com", "password": "password123", "name": "N"}, "password"),
    ({"email": "x@example.com", "password": "x@example.com", "name": "N"}, "password"),
    ({"email": "x@example.com", "password": "é" * 600, "name": "N"}, "password"),
    ({"email": "x@example.com", "password": PASSWORD, "name": "n" * 201}, "name"),
    ({"email": {"$ne": None}, "password": PASSWORD, "name": "N"}, "email"),
    ({"email": "x@example.com", "password": {"$gt": ""}, "name": "N"}, "password"),
    ({"email": ["x@example.com"], "password": PASSWORD, "name": 5}, "email"),
    ({"email": "not-an-email", "password": PASSWORD, "name": "N"}, "email"),
    ({"password": PASSWORD, "name": "N"}, "email"),
    ({"email": "x@example.com", "password": PASSWORD, "name": "N", "role": "admin"}, "role"),
])
def test_bad_registrations_are_422_per_field(api, body, field):
    answer = problem(api("POST", "/auth/register", json=body), 422)
    assert field in answer["errors"]


def test_malformed_bodies(api):
    url = "/auth/login"
    problem(api("POST", url, data="{not json", headers={"Content-Type": "application/json"}),
            400)
    problem(api("POST", url, data="email=x", headers={
        "Content-Type": "application/x-www-form-urlencoded"}), 415)
    problem(api("POST", url, json=["a", "b"]), 400)
    problem(api("POST", url, json={"email": {"$gt": ""}, "password": {"$ne": None}}), 422)
    problem(api("POST", url, json={"email": "a@b.co", "password": "x" * 1025}), 422)


def test_unicode_email_normalised_at_login(api, unique):
    api.register(f"ｊｏｓé.{unique}@example.com")       # full-width letters: NFKC
    body = api.login(f"  JOSé.{unique}@EXAMPLE.COM")
    assert body["user"]["email"] == f"josé.{unique}@example.com"


def test_patch_and_delete_me(api, unique):
    body = api.register(f"pat.{unique}@example.com")
    token, user_id = body["access_token"], body["user"]["user_id"]
    answer = api("PATCH", "/users/me", token, json={"name": "Patricia"})
    assert answer.status_code == 200 and answer.json()["name"] == "Patricia"
    wait_event("user.updated", user_id=user_id, name="Patricia")
    problem(api("PATCH", "/users/me", token, json={"name": {"$ne": None}}), 422)
    problem(api("PATCH", "/users/me", token, json={}), 422)

    new_email = f"pat.new.{unique}@example.com"
    answer = api("PATCH", "/users/me", token, json={"email": new_email.upper(),
                                                    "password": PASSWORD})
    assert answer.json()["email"] == f"pat.{unique}@example.com"    # not before verification
    assert answer.json()["pending_email"] == new_email
    event = wait_event("user.email.verification.requested", email=new_email)
    assert api("POST", "/auth/email/verify",
               json={"token": token_of(api.config, event["data"])}).status_code == 204
    me = api("GET", "/users/me", token).json()
    assert me["email"] == new_email and me["pending_email"] is None and me["email_verified"]

    assert api("DELETE", "/users/me", token, json={"password": PASSWORD}).status_code == 204
    wait_event("user.deleted", user_id=user_id, email=new_email)
    problem(api("GET", "/users/me", token), 401)
    problem(api("POST", "/auth/refresh", json={"refresh_token": body["refresh_token"]}), 401)
    api.login(new_email, status=401)
    api.register(new_email)          # the address is free again


# -- login and lockout -----------------------------------------------------------
def test_unknown_email_and_wrong_password_answer_alike(api, unique):
    api.register(f"carl.{unique}@example.com")
    wrong = api.login(f"carl.{unique}@example.com", "wrong password!", status=401)
    unknown = api.login(f"nobody.{unique}@example.com", "wrong password!", status=401)
    assert wrong["detail"] == unknown["detail"]
    body = api.login(f"carl.{unique}@example.com", headers={"User-Agent": "pytest-agent"})
    event = wait_event("user.login", user_id=body["user"]["user_id"])
    assert event["data"]["user_agent"] == "pytest-agent" and event["data"]["ip"] == "127.0.0.1"


def test_lockout_and_its_expiry(container_factory, make_config, unique):
    config = make_config(LOGIN_MAX_FAILURES=3, LOCKOUT_SECONDS=1)
    api = start_mesh(container_factory, config, recorder=False)
    email = f"dora.{unique}@example.com"
    api.register(email)
    for _ in range(3):
        api.login(email, "not my password", status=401)
    locked = problem(api("POST", "/auth/login", json={"email": email, "password": PASSWORD}),
                     423)
    assert int(locked["retry_after"]) >= 1
    answer = api("POST", "/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 423 and int(answer.headers["Retry-After"]) >= 1
    wait_until(lambda: api("POST", "/auth/login", json={
        "email": email, "password": PASSWORD}).status_code == 200, timeout=5,
        what="the lock to expire")
    # the second lock lasts twice as long (back-off)
    for _ in range(3):
        api.login(email, "not my password", status=401)
    assert api("POST", "/auth/login", json={"email": email, "password": PASSWORD}
               ).headers.get("Retry-After") == "2"


def test_one_ip_cannot_lock_many_accounts(container_factory, make_config, unique):
    config = make_config(LOGIN_MAX_FAILURES=3, LOGIN_IP_MAX_FAILURES=4)
    api = start_mesh(container_factory, config, recorder=False)
    # shared Redis: this IP (127.0.0.1) may carry failures of other tests; use a clean slate
    import redis as redis_lib
    redis_lib.Redis.from_url(config["REDIS_URI"]).delete("auth:fail:ip:127.0.0.1")
    statuses = [api("POST", "/auth/login", json={"email": f"v{i}.{unique}@example.com",
                                                 "password": "guess guess"}).status_code
                for i in range(6)]
    assert statuses[:4] == [401] * 4 and statuses[4:] == [429, 429]
    redis_lib.Redis.from_url(config["REDIS_URI"]).delete("auth:fail:ip:127.0.0.1",
                                                         "auth:wait:ip:127.0.0.1")


# -- tokens, refresh, logout, sessions -----------------------------------------------
def test_refresh_rotates_and_reuse_revokes_the_session(api, unique):
    body = api.register(f"eve.{unique}@example.com")
    first = body["refresh_token"]
    second = api("POST", "/auth/refresh", json={"refresh_token": first})
    assert second.status_code == 200
    second = second.json()
    assert second["refresh_token"] != first and second["access_token"] != body["access_token"]
    # the stolen old token is replayed: 401, and the whole session dies
    problem(api("POST", "/auth/refresh", json={"refresh_token": first}), 401)
    problem(api("POST", "/auth/refresh", json={"refresh_token": second["refresh_token"]}), 401)
    problem(api("GET", "/users/me", second["access_token"]), 401)
    problem(api("POST", "/auth/refresh", json={"refresh_token": "made-up"}), 401)


def test_one_refresh_token_sent_twice_at_once_rotates_once(api, unique):
    """Ten refreshes of one token at the same moment (a client retrying, or a thief
    racing it): exactly one gets the next token, the others are refused as replays."""
    first = api.register(f"gus.{unique}@example.com")["refresh_token"]
    pool = eventlet.GreenPool(10)
    answers = list(pool.imap(lambda _: api("POST", "/auth/refresh", json={"refresh_token": first}),
                             range(10)))
    assert sorted(r.status_code for r in answers) == [200] + [401] * 9


def test_logout_kills_the_access_token_at_once(api, unique):
    body = api.register(f"fay.{unique}@example.com")
    token = body["access_token"]
    assert api("GET", "/users/me", token).status_code == 200
    started = time.monotonic()
    assert api("POST", "/auth/logout", token).status_code == 204
    problem(api("GET", "/users/me", token), 401)
    assert time.monotonic() - started < 1.0
    problem(api("POST", "/auth/refresh", json={"refresh_token": body["refresh_token"]}), 401)
    wait_event("user.logout", user_id=body["user"]["user_id"])


def test_sessions_list_and_revoke(api, unique):
    email = f"gil.{unique}@example.com"
    first = api.register(email)
    second = api.login(email, headers={"User-Agent": "phone"})
    listed = api("GET", "/auth/sessions", second["access_token"]).json()["items"]
    assert len(listed) == 2
    current = [s for s in listed if s["current"]]
    assert len(current) == 1 and current[0]["user_agent"] == "phone"
    other = next(s for s in listed if not s["current"])
    problem(api("DELETE", "/auth/sessions/nope", second["access_token"]), 404)
    assert api("DELETE", f"/auth/sessions/{other['session_id']}",
               second["access_token"]).status_code == 204
    problem(api("POST", "/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401)
    problem(api("GET", "/users/me", first["access_token"]), 401)
    assert len(api("GET", "/auth/sessions", second["access_token"]).json()["items"]) == 1
    # someone else's session is not found, not revoked
    stranger = api.register(f"hal.{unique}@example.com")
    current_id = current[0]["session_id"]
    problem(api("DELETE", f"/auth/sessions/{current_id}", stranger["access_token"]), 404)


def test_jwks_and_rpcs_for_other_services(api, config, unique):
    keys = api("GET", "/auth/jwks.json").json()["keys"]
    assert len(keys) == 2 and all(k["alg"] == "EdDSA" and "d" not in k for k in keys)
    body = api.register(f"ivy.{unique}@example.com")
    user_id = body["user"]["user_id"]
    with ServiceRpcProxy("auth", config) as auth:
        assert auth.get_user(user_id)["email"] == f"ivy.{unique}@example.com"
        assert auth.get_user("missing") is None
        assert [u["user_id"] for u in auth.get_users([user_id, "missing"])] == [user_id]
        assert auth.find_user_by_email(f" IVY.{unique}@example.com")["user_id"] == user_id
        assert auth.find_user_by_email({"$ne": None}) is None
        with pytest.raises(Exception, match="user_ids"):
            auth.get_users("not a list")
        assert auth.user_exists(user_id) is True and auth.user_exists("missing") is False
        assert auth.jwks()["keys"] == keys


# -- password reset ------------------------------------------------------------------
def test_forgot_and_reset_password(api, unique):
    email = f"jo.{unique}@example.com"
    body = api.register(email)
    assert api("POST", "/auth/password/forgot", json={"email": f"nobody.{unique}@x.com"}
               ).status_code == 202
    assert api("POST", "/auth/password/forgot", json={"email": email}).status_code == 202
    event = wait_event("user.password.reset", email=email)
    token = token_of(api.config, event["data"])
    assert unseal_link(api.config, event["data"]).endswith(f"/reset-password?token={token}")
    assert token not in json.dumps(event)
    assert not events_of("user.password.reset", email=f"nobody.{unique}@x.com")

    problem(api("POST", "/auth/password/reset", json={"token": token, "password": "short"}),
            422)     # a refused password does not burn the token
    new_password = "a brand new passphrase"
    assert api("POST", "/auth/password/reset", json={"token": token, "password": new_password}
               ).status_code == 204
    problem(api("POST", "/auth/password/reset", json={"token": token,
                                                      "password": "another new passphrase"}),
            422)
    wait_event("user.password.changed", email=email)
    problem(api("GET", "/users/me", body["access_token"]), 401)     # sessions revoked
    problem(api("POST", "/auth/refresh", json={"refresh_token": body["refresh_token"]}), 401)
    api.login(email, status=401)
    api.login(email, new_password)


def test_reset_token_expires(container_factory, make_config, unique):
    Recorder.seen = []
    # 3 s: the event carrying the link must arrive before it expires (1 s did not, once,
    # on a loaded machine)
    config = make_config(PASSWORD_RESET_TTL=3)
    api = start_mesh(container_factory, config)
    email = f"kim.{unique}@example.com"
    api.register(email)
    api("POST", "/auth/password/forgot", json={"email": email})
    event = wait_event("user.password.reset", email=email)
    token = token_of(config, event["data"])
    issued = time.time()
    wait_until(lambda: time.time() > issued + 3.2, timeout=10, what="the reset token to expire")
    with pytest.raises(Unsealable):     # the sealed link expires with its token
        unseal_link(config, event["data"])
    problem(api("POST", "/auth/password/reset", json={
        "token": token, "password": "a brand new passphrase"}), 422)
    api.login(email)


# -- two-factor ----------------------------------------------------------------------
def test_two_factor_full_flow(api, unique):
    email = f"lee.{unique}@example.com"
    token = api.register(email)["access_token"]
    setup = api("POST", "/auth/mfa/setup", token).json()
    assert setup["otpauth_uri"].startswith("otpauth://totp/") and setup["secret"]
    totp = pyotp.TOTP(setup["secret"])
    problem(api("POST", "/auth/mfa/enable", token, json={"code": "000000"}), 422)
    now = time.time()
    enabled = api("POST", "/auth/mfa/enable", token, json={"code": totp.at(now)})
    assert enabled.status_code == 200, enabled.text
    recovery = enabled.json()["recovery_codes"]
    assert len(recovery) == 10

    challenge = api.login(email)
    assert challenge["mfa_required"] is True and "access_token" not in challenge
    mfa = challenge["mfa_token"]
    # the code used to enable cannot be used again
    problem(api("POST", "/auth/login/mfa", json={"mfa_token": mfa, "code": totp.at(now)}), 401)
    next_code = totp.at(now + 30)          # the next step, within the accepted window
    answer = api("POST", "/auth/login/mfa", json={"mfa_token": mfa, "code": next_code})
    assert answer.status_code == 200, answer.text
    assert api("GET", "/users/me", answer.json()["access_token"]).json()["mfa_enabled"]
    # the mfa token is single use, and the code cannot be replayed with a new one
    problem(api("POST", "/auth/login/mfa", json={"mfa_token": mfa, "code": next_code}), 401)
    again = api.login(email)["mfa_token"]
    problem(api("POST", "/auth/login/mfa", json={"mfa_token": again, "code": next_code}), 401)
    # a recovery code works once
    answer = api("POST", "/auth/login/mfa", json={"mfa_token": again, "code": recovery[0]})
    assert answer.status_code == 200, answer.text
    third = api.login(email)["mfa_token"]
    problem(api("POST", "/auth/login/mfa", json={"mfa_token": third, "code": recovery[0]}), 401)
    # disable needs a code
    problem(api("POST", "/auth/mfa/disable", token, json={"code": "123456"}), 403)
    assert api("POST", "/auth/mfa/disable", token, json={"code": recovery[1]}).status_code == 204
    assert "access_token" in api.login(email)


# -- Redis down ----------------------------------------------------------------------
def test_redis_down_fails_closed(container_factory, make_config, unique):
    config = make_config(LOGIN_MAX_FAILURES=2, LOCKOUT_SECONDS=600)
    api = start_mesh(container_factory, config, recorder=False)
    email = f"max.{unique}@example.com"
    token = api.register(email)["access_token"]
    for _ in range(2):
        api.login(email, "wrong password!", status=401)
    api.login(email, status=423)

    # the same database, but Redis "stopped" (a closed port) for auth and the gateway
    down = make_config(MONGODB_DB_PREFIX=config["MONGODB_DB_PREFIX"],
                       REDIS_URI="redis://127.0.0.1:1/0", REDIS_TIMEOUT=0.3)
    broken = start_mesh(container_factory, down, recorder=False)
    problem(broken("GET", "/users/me", token), 503)
    problem(broken("POST", "/auth/login", json={"email": email, "password": PASSWORD}), 503)
    api.login(email, status=423)            # still locked where Redis is up


def test_parallel_logins_do_not_block_each_other(api, unique):
    email = f"ned.{unique}@example.com"
    api.register(email)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: api("POST", "/auth/login", json={
            "email": email, "password": PASSWORD}).status_code, range(8)))
    assert codes == [200] * 8
