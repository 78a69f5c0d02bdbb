"""The auth flows: domain rules (auth_svc.domain) applied with the store,
Redis, the signing keys and the event bus. ``service.py`` entrypoints call
one method each.

Redis keys (docs/architecture.md naming):

* ``auth:fail:account:{h}`` / ``auth:fail:ip:{ip}``: failed logins in the
  window (``LOGIN_FAILURE_WINDOW``); ``h`` is a hash of the normalised email,
  so unknown emails are counted too and no address is written in clear;
* ``auth:lock:account:{h}``: the lock (TTL = its remaining time) and
  ``auth:strikes:account:{h}``: locks in the last 24 h (doubles the next one);
* ``auth:blacklist:jti:{jti}`` / ``auth:blacklist:sid:{sid}``: revoked access
  tokens / sessions, until the last access token they cover has expired;
* ``auth:mfa:{h}``: a pending second login step (hash: user_id, ip, user agent,
  attempts), ``MFA_TOKEN_TTL`` seconds, single use.

Lockout state lives only in Redis, so when Redis is unreachable login answers
503 rather than skip the lockout check (fail closed).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
import uuid
from datetime import timedelta
from functools import lru_cache

import bcrypt
import pyotp
import redis
from eventlet import tpool
from eventlet.semaphore import Semaphore

from auth_svc import domain
from auth_svc.store import utcnow
from auth_svc.tokens import digest, mint_access_token, new_secret
from shared.errors import (
    Conflict,
    Locked,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from shared.sealed import seal

log = logging.getLogger(__name__)

RESET = "password_reset_tokens"
VERIFY = "email_verification_tokens"
MFA_MAX_ATTEMPTS = 5
STRIKES_TTL = 24 * 3600
BAD_LOGIN = "Invalid email or password."


# bcrypt runs in real OS threads (eventlet.tpool), else it blocks the hub.
# At most BCRYPT_CONCURRENCY at a time (default: one less than the cores) and
# at a lower OS priority, so a login storm queues logins (cheap greenlets)
# instead of taking every core from the event loop that answers everything else.
BCRYPT_SLOTS = int(os.environ.get("BCRYPT_CONCURRENCY", 0)) or max(1, (os.cpu_count() or 2) - 1)
_bcrypt_slots = Semaphore(BCRYPT_SLOTS)
_thread_state = threading.local()
BCRYPT_NICE = 5


def _in_background(function, *args):
    """Runs in a tpool thread: lower that thread's priority once (Linux: per thread)."""
    if not getattr(_thread_state, "niced", False):
        _thread_state.niced = True
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BCRYPT_NICE)
        except (AttributeError, OSError):
            pass
    return function(*args)


class _BcryptLoad:
    """Sheds load instead of queueing without bound: when the expected wait for
    a bcrypt slot passes BCRYPT_MAX_WAIT seconds, answer 503 + Retry-After at
    once, so waiting logins do not hold every worker of the service."""

    def __init__(self):
        self.average = 0.0          # seconds per bcrypt call (moving average)
        self.max_wait = float(os.environ.get("BCRYPT_MAX_WAIT", 2.0))

    def expected_wait(self) -> float:
        """Seconds a new caller would wait for a slot (0 if one is free)."""
        balance = _bcrypt_slots.balance
        if balance > 0:
            return 0.0
        return (1 - balance) * self.average / BCRYPT_SLOTS

    def record(self, seconds: float) -> None:
        self.average = seconds if not self.average else 0.8 * self.average + 0.2 * seconds


_load = _BcryptLoad()


def _bcrypt(function, *args):
    if _load.expected_wait() > _load.max_wait:
        raise Unavailable("Too many sign-ins right now; try again in a moment.",
                          headers={"Retry-After": "1"})
    with _bcrypt_slots:
        started = time.perf_counter()
        try:
            return tpool.execute(_in_background, function, *args)
        finally:
            _load.record(time.perf_counter() - started)


def hash_password(password: str, rounds: int) -> str:
    return _bcrypt(bcrypt.hashpw, domain.prehash(password), bcrypt.gensalt(rounds)).decode()


def check_password(password: str, hashed: str) -> bool:
    return bool(_bcrypt(bcrypt.checkpw, domain.prehash(password), hashed.encode()))


@lru_cache(maxsize=8)
def dummy_hash(rounds: int) -> str:
    """Checked against for unknown emails, so they cost what a real one does."""
    return hash_password(uuid.uuid4().hex, rounds)


def email_key(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()[:32]


class Accounts:
    def __init__(self, store, redis_client, events, config: dict, ring):
        self.store = store
        self.redis = redis_client
        self.events = events
        self.config = config
        self.ring = ring
        self.policy = domain.LockoutPolicy.from_config(config)
        self.rounds = int(config.get("BCRYPT_ROUNDS", 12))
        self.access_ttl = int(config.get("ACCESS_TOKEN_TTL", 900))
        self.refresh_ttl = int(config.get("REFRESH_TOKEN_TTL", 30 * 24 * 3600))
        self.reset_ttl = int(config.get("PASSWORD_RESET_TTL", 1800))
        self.verify_ttl = int(config.get("EMAIL_VERIFICATION_TTL", 24 * 3600))
        self.mfa_ttl = int(config.get("MFA_TOKEN_TTL", 300))
        self.public_url = str(config.get("PUBLIC_URL") or "http://127.0.0.1:8000")

    # -- helpers -------------------------------------------------------------
    def _redis(self, operation):
        try:
            return operation(self.redis)
        except redis.RedisError as exc:
            log.warning("redis unavailable in auth: %s", exc)
            raise Unavailable("Sign-in is unavailable right now; try again shortly.") from None

    def _blacklist_sessions(self, session_ids) -> None:
        ttl = self.access_ttl + 60
        session_ids = list(session_ids)
        if not session_ids:
            return

        def write(client):
            pipe = client.pipeline(transaction=False)
            for sid in session_ids:
                pipe.set(f"auth:blacklist:sid:{sid}", 1, ex=ttl)
            pipe.execute()
        self._redis(write)

    def _require_user(self, user_id: str) -> dict:
        user = self.store.user(user_id)
        if user is None:
            raise Unauthorized("This account no longer exists.")
        return user

    def _new_password_hash(self, password: str, email: str) -> str:
        problems = domain.password_problems(password, email)
        if problems:
            raise ValidationFailed("The password does not meet the policy.",
                                   errors={"password": problems})
        return hash_password(password, self.rounds)

    def _verification(self, user_id: str, email: str, session=None) -> str:
        """A new verification token; the link to it, sealed for the email (shared.sealed)."""
        token = new_secret()
        self.store.add_token(VERIFY, digest(token), user_id, self.verify_ttl, email=email,
                             session=session)
        return seal(self.config, domain.link(self.public_url, "/verify-email", token),
                    self.verify_ttl)

    def _tokens(self, user: dict, session_id: str, refresh_token: str) -> dict:
        access, _ = mint_access_token(self.ring, user["_id"], session_id=session_id,
                                      email_verified=bool(user.get("email_verified")),
                                      ttl=self.access_ttl)
        return {"user": domain.public_user(user), "access_token": access,
                "refresh_token": refresh_token, "token_type": "Bearer",
                "expires_in": self.access_ttl}

    def _start_session(self, user: dict, ip, user_agent, announce: bool = True) -> dict:
        session_id, refresh = uuid.uuid4().hex, new_secret()
        now = utcnow()
        self.store.create_session({
            "_id": session_id, "user_id": user["_id"], "token_hash": digest(refresh),
            "used_hashes": [], "created_at": now, "last_used_at": now, "ip": ip,
            "user_agent": user_agent, "revoked_at": None,
            "expires_at": now + timedelta(seconds=self.refresh_ttl)})
        if announce:
            self.events.publish("user.login", {"user_id": user["_id"], "session_id": session_id,
                                               "ip": ip, "user_agent": user_agent},
                                actor_id=user["_id"])
        return self._tokens(user, session_id, refresh)

    # -- register ----------------------------------------------------------
    def register(self, email: str, password: str, name: str, ip, user_agent) -> dict:
        if self.store.user_by_email(email):
            raise Conflict("An account with this email already exists.",
                           errors={"email": ["Already registered."]})
        password_hash = self._new_password_hash(password, email)
        now = utcnow()
        user = {"_id": uuid.uuid4().hex, "email": email, "name": name,
                "password_hash": password_hash, "email_verified": False,
                "created_at": now, "updated_at": now, "deleted_at": None}
        self._create_user(user)  # racing registrations: the unique index decides
        return self._start_session(user, ip, user_agent, announce=False)

    def _create_user(self, user: dict) -> None:
        """The user, its verification token and user.registered, atomically
        (the unique email index decides between racing registrations)."""
        def write(session):
            self.store.insert_user(user, session=session)
            sealed_link = self._verification(user["_id"], user["email"], session=session)
            self.events.publish("user.registered", {
                "user_id": user["_id"], "email": user["email"], "name": user["name"],
                "sealed_link": sealed_link},
                actor_id=user["_id"], session=session)

        self.store.run_transaction(write)

    # -- login -------------------------------------------------------------
    def login(self, email: str, password: str, ip, user_agent) -> dict:
        key, ip = email_key(email), ip or "unknown"

        def read(client):
            pipe = client.pipeline(transaction=False)
            pipe.pttl(f"auth:lock:account:{key}")
            pipe.get(f"auth:fail:ip:{ip}")
            pipe.ttl(f"auth:fail:ip:{ip}")
            return pipe.execute()
        lock_ms, ip_failures, ip_ttl = self._redis(read)
        if lock_ms and lock_ms > 0:
            retry = max(1, math.ceil(lock_ms / 1000))
            raise Locked("Too many failed attempts; the account is locked for a while.",
                         retry_after=retry, headers={"Retry-After": str(retry)})
        if self.policy.ip_blocked(int(ip_failures or 0)):
            retry = max(1, int(ip_ttl or 1))
            raise RateLimited("Too many failed sign-ins from this address.",
                              headers={"Retry-After": str(retry)})
        user = self.store.user_by_email(email)
        hashed = (user or {}).get("password_hash") or dummy_hash(self.rounds)
        if not (check_password(password, hashed) and user):
            self._record_failure(key, ip)
            raise Unauthorized(BAD_LOGIN)
        self._redis(lambda c: c.delete(f"auth:fail:account:{key}"))   # strikes stay 24 h
        if (user.get("mfa") or {}).get("enabled"):
            return self._mfa_challenge(user, ip, user_agent)
        return self._start_session(user, ip, user_agent)

    def _record_failure(self, key: str, ip: str) -> None:
        window = self.policy.window

        def count(client):
            pipe = client.pipeline(transaction=False)
            for name in (f"auth:fail:account:{key}", f"auth:fail:ip:{ip}"):
                pipe.set(name, 0, ex=window, nx=True)
                pipe.incr(name)
            return pipe.execute()
        failures = self._redis(count)[1]
        if self.policy.locks_now(failures):
            def lock(client):
                strikes = client.incr(f"auth:strikes:account:{key}")
                client.expire(f"auth:strikes:account:{key}", STRIKES_TTL)
                pipe = client.pipeline(transaction=False)
                pipe.set(f"auth:lock:account:{key}", 1, ex=self.policy.lock_duration(strikes))
                pipe.delete(f"auth:fail:account:{key}")
                pipe.execute()
            self._redis(lock)

    # -- MFA at login ------------------------------------------------------
    def _mfa_challenge(self, user: dict, ip, user_agent) -> dict:
        token = new_secret()
        name = f"auth:mfa:{digest(token)}"

        def store(client):
            pipe = client.pipeline(transaction=True)
            pipe.hset(name, mapping={"user_id": user["_id"], "ip": ip or "",
                                     "user_agent": user_agent or "", "attempts": 0})
            pipe.expire(name, self.mfa_ttl)
            pipe.execute()
        self._redis(store)
        return {"mfa_required": True, "mfa_token": token, "expires_in": self.mfa_ttl}

    def login_mfa(self, mfa_token: str, code: str, ip, user_agent) -> dict:
        name = f"auth:mfa:{digest(mfa_token)}"
        pending = self._redis(lambda c: c.hgetall(name))
        if not pending:
            raise Unauthorized("The MFA token is invalid, used or expired; log in again.")
        user = self._require_user(pending["user_id"])
        if not self._second_factor(user, code):
            attempts = self._redis(lambda c: c.hincrby(name, "attempts", 1))
            if attempts >= MFA_MAX_ATTEMPTS:
                self._redis(lambda c: c.delete(name))
            raise Unauthorized("The code is not valid.", errors={"code": ["Invalid code."]})
        if not self._redis(lambda c: c.delete(name)):
            raise Unauthorized("The MFA token is invalid, used or expired; log in again.")
        return self._start_session(user, ip, user_agent)

    def _second_factor(self, user: dict, code: str) -> bool:
        mfa = user.get("mfa") or {}
        if not mfa.get("enabled"):
            return False
        if domain.looks_like_recovery_code(code):
            return self.store.use_recovery_code(
                user["_id"], digest(domain.normalise_recovery_code(code)))
        step = domain.totp_step(mfa["secret"], code, time.time())
        return step is not None and self.store.set_totp_step(user["_id"], step)

    # -- MFA settings ------------------------------------------------------
    def mfa_setup(self, user_id: str) -> dict:
        user = self._require_user(user_id)
        if (user.get("mfa") or {}).get("enabled"):
            raise Conflict("Two-factor authentication is already enabled.")
        secret = pyotp.random_base32()
        self.store.update_user(user_id, {"mfa": {"enabled": False, "pending_secret": secret}})
        return {"secret": secret, "otpauth_uri": domain.otpauth_uri(secret, user["email"])}

    def mfa_enable(self, user_id: str, code: str) -> dict:
        user = self._require_user(user_id)
        mfa = user.get("mfa") or {}
        if mfa.get("enabled"):
            raise Conflict("Two-factor authentication is already enabled.")
        if not mfa.get("pending_secret"):
            raise Conflict("Call /auth/mfa/setup first.")
        step = domain.totp_step(mfa["pending_secret"], code, time.time())
        if step is None:
            raise ValidationFailed("The code is not valid.", errors={"code": ["Invalid code."]})
        codes = domain.new_recovery_codes()
        self.store.update_user(user_id, {"mfa": {
            "enabled": True, "secret": mfa["pending_secret"], "last_step": step,
            "recovery_codes": [digest(c) for c in codes], "enabled_at": utcnow()}})
        return {"recovery_codes": codes}

    def mfa_disable(self, user_id: str, code: str) -> None:
        user = self._require_user(user_id)
        if not (user.get("mfa") or {}).get("enabled"):
            raise Conflict("Two-factor authentication is not enabled.")
        if not self._second_factor(user, code):
            raise ValidationFailed("The code is not valid.", errors={"code": ["Invalid code."]})
        self.store.update_user(user_id, {}, unset=["mfa"])

    # -- refresh, logout, sessions ---------------------------------------------
    def refresh(self, refresh_token: str, ip, user_agent) -> dict:
        old_hash, new_token = digest(refresh_token), new_secret()
        session = self.store.rotate_refresh(old_hash, digest(new_token), ip, user_agent)
        if session is None:
            reused = self.store.session_by_used_hash(old_hash)
            if reused is not None:
                log.warning("refresh token reuse: revoking session %s of user %s",
                            reused["_id"], reused["user_id"])
                self.store.revoke_session(reused["_id"])
                self._blacklist_sessions([reused["_id"]])
                raise Unauthorized("This refresh token was already used; the session is revoked.")
            raise Unauthorized("The refresh token is invalid or expired.")
        user = self.store.user(session["user_id"])
        if user is None:
            self.store.revoke_session(session["_id"])
            raise Unauthorized("This account no longer exists.")
        return self._tokens(user, session["_id"], new_token)

    def logout(self, user_id: str, session_id: str | None, jti: str, exp: int) -> None:
        ttl = max(1, int(exp - time.time()) + 60)

        def write(client):
            pipe = client.pipeline(transaction=False)
            pipe.set(f"auth:blacklist:jti:{jti}", 1, ex=ttl)
            if session_id:
                pipe.set(f"auth:blacklist:sid:{session_id}", 1, ex=self.access_ttl + 60)
            pipe.execute()
        self._redis(write)
        if session_id:
            self.store.revoke_session(session_id, user_id)
        self.events.publish("user.logout", {"user_id": user_id, "session_id": session_id},
                            actor_id=user_id)

    def sessions(self, user_id: str, current_session_id: str | None) -> dict:
        items = [domain.session_view(doc, current_session_id)
                 for doc in self.store.active_sessions(user_id)]
        return {"items": items, "next_cursor": None}

    def revoke_session(self, user_id: str, session_id: str) -> None:
        if not self.store.revoke_session(session_id, user_id):
            raise NotFound("No such session.")
        self._blacklist_sessions([session_id])

    # -- password reset ------------------------------------------------------
    def forgot_password(self, email: str) -> None:
        user = self.store.user_by_email(email)
        if user is None:
            return
        token = new_secret()
        self.store.add_token(RESET, digest(token), user["_id"], self.reset_ttl)
        self.events.publish("user.password.reset", {
            "user_id": user["_id"], "email": user["email"], "name": user["name"],
            "sealed_link": seal(self.config, domain.link(self.public_url, "/reset-password",
                                                         token), self.reset_ttl)},
            actor_id=user["_id"])

    def reset_password(self, token: str, password: str) -> None:
        invalid = ValidationFailed("The reset link is invalid, used or expired.",
                                   errors={"token": ["Invalid, used or expired."]})
        pending = self.store.live_token(RESET, digest(token))
        user = pending and self.store.user(pending["user_id"])
        if not user:
            raise invalid
        password_hash = self._new_password_hash(password, user["email"])
        if self.store.use_token(RESET, digest(token)) is None:   # single use, even racing
            raise invalid
        self.store.update_user(user["_id"], {"password_hash": password_hash,
                                             "password_changed_at": utcnow()})
        self.store.drop_tokens(RESET, user["_id"])
        self._blacklist_sessions(self.store.revoke_all_sessions(user["_id"]))
        key = email_key(user["email"])
        self._redis(lambda c: c.delete(f"auth:fail:account:{key}", f"auth:lock:account:{key}"))
        self.events.publish("user.password.changed", {
            "user_id": user["_id"], "email": user["email"], "name": user["name"]},
            actor_id=user["_id"])

    # -- email verification ------------------------------------------------------
    def verify_email(self, token: str) -> None:
        used = self.store.use_token(VERIFY, digest(token))
        user = used and self.store.user(used["user_id"])
        invalid = ValidationFailed("The verification link is invalid, used or expired.",
                                   errors={"token": ["Invalid, used or expired."]})
        if not user:
            raise invalid
        if used["email"] == user.get("pending_email"):
            user = self.store.update_user(user["_id"], {"email": used["email"],
                                                        "email_verified": True},
                                          unset=["pending_email"])
            self._announce_update(user)
        elif used["email"] == user["email"]:
            user = self.store.update_user(user["_id"], {"email_verified": True})
        else:
            raise invalid
        self.events.publish("user.email.verified", {"user_id": user["_id"],
                                                    "email": user["email"]},
                            actor_id=user["_id"])

    def confirm_email(self, user_id: str) -> None:
        user = self._require_user(user_id)
        if not user.get("email_verified"):
            user = self.store.update_user(user_id, {"email_verified": True})
        self.events.publish("user.email.verified", {"user_id": user_id, "email": user["email"]},
                            actor_id=None)

    def resend_verification(self, user_id: str) -> None:
        user = self._require_user(user_id)
        email = user.get("pending_email") or (None if user.get("email_verified")
                                              else user["email"])
        if email is None:
            raise Conflict("The email address is already verified.")
        self.store.drop_tokens(VERIFY, user_id)
        self._request_verification(user, email)

    def _request_verification(self, user: dict, email: str) -> None:
        self.events.publish("user.email.verification.requested", {
            "user_id": user["_id"], "email": email, "name": user["name"],
            "sealed_link": self._verification(user["_id"], email)}, actor_id=user["_id"])

    # -- profile -------------------------------------------------------------
    def me(self, user_id: str) -> dict:
        return domain.public_user(self._require_user(user_id))

    def update_me(self, user_id: str, changes: dict) -> dict:
        user = self._require_user(user_id)
        if "name" in changes and changes["name"] != user["name"]:
            user = self.store.update_user(user_id, {"name": changes["name"]})
            self._announce_update(user)
        email = changes.get("email")
        if email and email != user["email"]:
            if self.store.user_by_email(email):
                raise Conflict("An account with this email already exists.",
                               errors={"email": ["Already registered."]})
            self.store.drop_tokens(VERIFY, user_id)
            user = self.store.update_user(user_id, {"pending_email": email})
            self._request_verification(user, email)
        return domain.public_user(user)

    def _announce_update(self, user: dict) -> None:
        self.events.publish("user.updated", {
            "user_id": user["_id"], "email": user["email"], "name": user["name"],
            "email_verified": bool(user.get("email_verified"))}, actor_id=user["_id"])

    def delete_me(self, user_id: str) -> None:
        user = self.store.soft_delete_user(user_id)
        if user is None:
            raise Unauthorized("This account no longer exists.")
        self._blacklist_sessions(self.store.revoke_all_sessions(user_id))
        self.events.publish("user.deleted", {"user_id": user_id, "email": user["email"]},
                            actor_id=user_id)
