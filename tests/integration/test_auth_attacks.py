"""Attacks on sign-in, and the real user during them (issue 12, items 3-5 and
re-authentication): AuthService + GatewayService (+ NotificationService and a
real SMTP server for the unlock email) over real HTTP, RabbitMQ, Redis and
SecantusDB. Clients' addresses come from X-Forwarded-For (TRUSTED_PROXIES=1)
so one test can be many clients; each test's addresses are its own (the
counters live in the shared Redis)."""
import hashlib
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pyotp
import pytest
import requests
from pymongo import MongoClient

from auth_svc.service import AuthService
from gateway_svc.service import GatewayService
from notify_svc.service import NotificationService
from tests.helpers import wait_until
from tests.smtp_sink import body_text, smtp_sink  # noqa: F401  (fixture)

PASSWORD = "correct horse battery"
WRONG = "not the password!"


class Client:
    """One client: its address and, once it has signed in, its device token."""

    def __init__(self, base, ip, device_token=None):
        self.base, self.ip, self.device_token = base, ip, device_token

    def __call__(self, method, path, token=None, **kwargs):
        headers = {"X-Forwarded-For": self.ip}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.device_token:
            headers["X-Device-Token"] = self.device_token
        return requests.request(method, self.base + path, headers=headers, timeout=10, **kwargs)

    def login(self, email, password=PASSWORD):
        return self("POST", "/auth/login", json={"email": email, "password": password})


class Mesh:
    def __init__(self, config, unique):
        self.config, self.unique = config, unique
        self.base = f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"
        self.count = 0

    def client(self, device_token=None):
        self.count += 1
        return Client(self.base, f"2001:db8:{self.unique[:4]}:{self.unique[4:8]}::{self.count}",
                      device_token)

    def register(self, email):
        phone = self.client()
        body = phone("POST", "/auth/register", json={"email": email, "password": PASSWORD,
                                                      "name": "Ada"})
        assert body.status_code == 201, body.text
        body = body.json()
        phone.device_token = body["device_token"]
        return phone, body


def start(container_factory, make_config, unique, services=(AuthService, GatewayService),
          **overrides):
    config = make_config(TRUSTED_PROXIES="1", **overrides)
    for cls in services:
        container_factory(cls, config).start()
    return Mesh(config, unique)


def status(answer, expected):
    assert answer.status_code == expected, answer.text
    return answer.json() if answer.content else None


def enable_mfa(client, token):
    secret = status(client("POST", "/auth/mfa/setup", token), 200)["secret"]
    totp = pyotp.TOTP(secret)
    codes = status(client("POST", "/auth/mfa/enable", token,
                          json={"code": totp.at(time.time() - 30)}), 200)["recovery_codes"]
    return totp, codes


def wrong_code(totp):
    real = {totp.at(time.time() + 30 * step) for step in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in real)


# -- item 4: throttling strangers, and the real user during an attack -----------
def test_a_stranger_is_throttled_and_the_account_locks_but_known_devices_get_in(
        container_factory, make_config, unique, smtp_sink):  # noqa: F811
    mesh = start(container_factory, make_config, unique,
                 services=(AuthService, GatewayService, NotificationService),
                 SMTP_URL=smtp_sink.url, OUTBOX_GRACE_SECONDS=0.2)
    email = f"ada.{unique}@example.com"
    phone, _ = mesh.register(email)

    # one stranger: 3 free guesses, the 4th sets a wait, then 429 with Retry-After
    stranger = mesh.client()
    assert [stranger.login(email, WRONG).status_code for _ in range(4)] == [401] * 4
    throttled = stranger.login(email, PASSWORD)       # even the right password waits
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1

    # a botnet: one more guess from elsewhere makes 5: the account locks for strangers
    status(mesh.client().login(email, WRONG), 401)
    locked = mesh.client().login(email, PASSWORD)
    assert status(locked, 423)["retry_after"] >= 900
    status(stranger.login(email, PASSWORD), 423)

    # the real user's phone signed in before: it gets in, even from the attacker's address
    phone.ip = stranger.ip
    signed_in = status(phone.login(email), 200)
    assert signed_in["access_token"] and signed_in["device_token"]
    # the device token is no access token
    status(phone("GET", "/users/me", signed_in["device_token"]), 401)
    # nor is someone else's device token a key to this account
    _, other = mesh.register(f"bob.{unique}@example.com")
    status(mesh.client(other["device_token"]).login(email, PASSWORD), 423)

    # a new laptop of the real user: locked out, until the emailed link is used
    laptop = mesh.client()
    status(laptop.login(email), 423)
    mail = wait_until(lambda: next((m for m in smtp_sink.to(email)
                                    if "locked" in m["Subject"]), None), what="the unlock email")
    token = re.search(r"/unlock-account\?token=([\w-]+)", body_text(mail)).group(1)
    # the link is in the email only: the in-app item says a link was sent
    feed = status(phone("GET", "/notifications", signed_in["access_token"]), 200)
    assert token not in str(feed) and "unlock" in str(feed)
    status(laptop("POST", "/auth/unlock", json={"token": token}), 204)
    status(laptop.login(email), 200)
    status(laptop("POST", "/auth/unlock", json={"token": token}), 422)   # single use
    status(laptop("POST", "/auth/unlock", json={"token": "made-up"}), 422)


def test_a_stolen_device_token_is_trusted_for_a_few_guesses_only(container_factory,
                                                                 make_config, unique):
    mesh = start(container_factory, make_config, unique)
    email = f"cyd.{unique}@example.com"
    phone, _ = mesh.register(email)
    for _ in range(5):                      # strangers lock the account
        status(mesh.client().login(email, WRONG), 401)
    status(mesh.client().login(email, PASSWORD), 423)
    thief = mesh.client(phone.device_token)
    # the device is not held up by the lock or the waits, but has its own count
    assert [thief.login(email, WRONG).status_code for _ in range(5)] == [401] * 5
    status(thief.login(email, PASSWORD), 423)      # now it is a stranger too


# -- item 3: 2FA codes -----------------------------------------------------------
def test_wrong_2fa_codes_count_per_account_across_fresh_logins(container_factory,
                                                               make_config, unique):
    mesh = start(container_factory, make_config, unique)
    email = f"dee.{unique}@example.com"
    phone, body = mesh.register(email)
    totp, _ = enable_mfa(phone, body["access_token"])
    guess = wrong_code(totp)
    # an attacker with the password: a fresh mfa_token per guess, from many addresses
    spare = None
    for attempt in range(5):
        attacker = mesh.client()
        challenge = status(attacker.login(email), 200)
        assert challenge["mfa_required"]
        if attempt == 4:
            spare = (attacker, status(attacker.login(email), 200)["mfa_token"])
        status(attacker("POST", "/auth/login/mfa",
                        json={"mfa_token": challenge["mfa_token"], "code": guess}), 401)
    # five wrong codes lock the account: no more tokens, and a pending one is useless
    status(mesh.client().login(email), 423)
    attacker, pending = spare
    status(attacker("POST", "/auth/login/mfa",
                    json={"mfa_token": pending, "code": totp.now()}), 423)
    # the real user's phone still signs in, second step included
    challenge = status(phone.login(email), 200)
    answer = phone("POST", "/auth/login/mfa", json={"mfa_token": challenge["mfa_token"],
                                                   "code": totp.at(time.time() + 30)})
    assert "access_token" in status(answer, 200)


def test_parallel_guesses_on_one_mfa_token_get_five_tries_in_all(container_factory,
                                                                 make_config, unique):
    # account and address limits out of the way: only the token's own 5 strikes count
    mesh = start(container_factory, make_config, unique, LOGIN_MAX_FAILURES=1000,
                 LOGIN_PAIR_FREE_FAILURES=1000)
    email = f"eli.{unique}@example.com"
    phone, body = mesh.register(email)
    totp, _ = enable_mfa(phone, body["access_token"])
    attacker = mesh.client()
    mfa_token = status(attacker.login(email), 200)["mfa_token"]
    guesses = [f"{n:06d}" for n in range(100000, 100040)]
    real = {totp.at(time.time() + 30 * step) for step in (-1, 0, 1)}
    guesses = [g for g in guesses if g not in real][:30]

    def guess(code):
        answer = attacker("POST", "/auth/login/mfa", json={"mfa_token": mfa_token, "code": code})
        return answer.status_code, answer.json()["detail"]
    with ThreadPoolExecutor(15) as pool:
        answers = list(pool.map(guess, guesses))
    tried = [a for a in answers if a == (401, "The code is not valid.")]
    assert len(tried) == 5, answers
    assert all(code == 401 for code, _ in answers)
    # and the token is spent: even the right code is refused
    answer = attacker("POST", "/auth/login/mfa",
                      json={"mfa_token": mfa_token, "code": totp.at(time.time() + 30)})
    assert status(answer, 401)["detail"].startswith("The MFA token is invalid")


def test_a_stolen_access_token_cannot_guess_codes_to_disable_2fa(container_factory,
                                                                make_config, unique):
    mesh = start(container_factory, make_config, unique)
    email = f"fay.{unique}@example.com"
    phone, body = mesh.register(email)
    totp, _ = enable_mfa(phone, body["access_token"])
    thief = mesh.client()
    guess = wrong_code(totp)
    assert [thief("POST", "/auth/mfa/disable", body["access_token"],
                  json={"code": guess}).status_code for _ in range(4)] == [403] * 4
    waiting = thief("POST", "/auth/mfa/disable", body["access_token"], json={"code": guess})
    assert waiting.status_code == 429 and int(waiting.headers["Retry-After"]) >= 1
    # five wrong codes from anywhere lock it (as sign-in) for strangers
    status(mesh.client()("POST", "/auth/mfa/disable", body["access_token"],
                         json={"code": guess}), 403)
    status(mesh.client()("POST", "/auth/mfa/disable", body["access_token"],
                         json={"code": totp.now()}), 423)
    assert status(phone("GET", "/users/me", body["access_token"]), 200)["mfa_enabled"]


# -- recent re-authentication ------------------------------------------------------
@pytest.mark.parametrize("method, path, body", [
    ("PATCH", "/users/me", {"email": "new.{u}@example.com"}),
    ("DELETE", "/users/me", {}),
])
def test_a_stolen_access_token_alone_cannot_change_email_or_delete(
        container_factory, make_config, unique, method, path, body):
    mesh = start(container_factory, make_config, unique)
    email = f"gus.{unique}@example.com"
    phone, registered = mesh.register(email)
    token = registered["access_token"]
    body = {k: v.format(u=unique) for k, v in body.items()}
    thief = mesh.client()
    assert "password" in status(thief(method, path, token, json=body), 422)["errors"]
    assert "password" in status(thief(method, path, token,
                                      json={**body, "password": WRONG}), 403)["errors"]
    me = status(phone("GET", "/users/me", token), 200)
    assert me["email"] == email and me["pending_email"] is None
    # the owner, who knows the password, can
    answer = phone(method, path, token, json={**body, "password": PASSWORD})
    assert answer.status_code == (200 if method == "PATCH" else 204), answer.text
    if method == "DELETE":
        status(phone("GET", "/users/me", token), 401)
    else:
        assert answer.json()["pending_email"] == f"new.{unique}@example.com"
    # a name change needs nothing more
    if method == "PATCH":
        assert status(thief("PATCH", path, token, json={"name": "Gus"}), 200)["name"] == "Gus"


def test_new_recovery_codes_need_a_current_code(container_factory, make_config, unique):
    mesh = start(container_factory, make_config, unique)
    email = f"hal.{unique}@example.com"
    phone, body = mesh.register(email)
    token = body["access_token"]
    totp, old_codes = enable_mfa(phone, token)
    status(phone("POST", "/auth/mfa/recovery-codes", token, json={}), 422)
    status(phone("POST", "/auth/mfa/recovery-codes", token, json={"code": wrong_code(totp)}), 403)
    fresh = status(phone("POST", "/auth/mfa/recovery-codes", token,
                         json={"code": totp.now()}), 200)["recovery_codes"]
    assert len(fresh) == 10 and not set(fresh) & set(old_codes)
    challenge = status(phone.login(email), 200)["mfa_token"]
    status(phone("POST", "/auth/login/mfa", json={"mfa_token": challenge,
                                                 "code": old_codes[0]}), 401)
    status(phone("POST", "/auth/login/mfa", json={"mfa_token": challenge,
                                                 "code": fresh[0]}), 200)


# -- 2FA data at rest ----------------------------------------------------------------
def users_collection(config):
    client = MongoClient(config["MONGODB_URI"])
    return client[f"{config['MONGODB_DB_PREFIX']}_auth"].users


def test_totp_secrets_are_encrypted_and_recovery_codes_keyed_at_rest(container_factory,
                                                                     make_config, unique):
    mesh = start(container_factory, make_config, unique)
    email = f"ivy.{unique}@example.com"
    phone, body = mesh.register(email)
    totp, codes = enable_mfa(phone, body["access_token"])
    stored = users_collection(mesh.config).find_one({"email": email})["mfa"]
    # a copy of the database gives neither the secret nor codes to check offline
    assert totp.secret not in str(stored) and "secret" not in stored
    assert not {hashlib.sha256(c.encode()).hexdigest() for c in codes} & set(
        stored["recovery_codes"])
    challenge = status(phone.login(email), 200)["mfa_token"]
    status(phone("POST", "/auth/login/mfa", json={"mfa_token": challenge,
                                                 "code": totp.at(time.time() + 30)}), 200)


def test_secrets_and_codes_stored_before_encryption_keep_working(container_factory,
                                                                 make_config, unique):
    mesh = start(container_factory, make_config, unique)
    email = f"jon.{unique}@example.com"
    phone, body = mesh.register(email)
    # 2FA as an older version stored it: the secret in clear, codes as plain SHA-256
    secret, legacy_code = pyotp.random_base32(), "52jq6-rxg9m"
    users = users_collection(mesh.config)
    users.update_one({"email": email}, {"$set": {"mfa": {
        "enabled": True, "secret": secret, "last_step": 0,
        "recovery_codes": [hashlib.sha256(legacy_code.encode()).hexdigest()]}}})
    totp = pyotp.TOTP(secret)
    challenge = status(phone.login(email), 200)["mfa_token"]
    status(phone("POST", "/auth/login/mfa", json={"mfa_token": challenge,
                                                 "code": totp.now()}), 200)
    stored = users.find_one({"email": email})["mfa"]
    assert "secret" not in stored and secret not in str(stored)      # migrated on use
    challenge = status(phone.login(email), 200)["mfa_token"]
    status(phone("POST", "/auth/login/mfa", json={"mfa_token": challenge,
                                                 "code": legacy_code}), 200)
    challenge = status(phone.login(email), 200)["mfa_token"]
    status(phone("POST", "/auth/login/mfa", json={"mfa_token": challenge,
                                                 "code": totp.at(time.time() + 30)}), 200)
