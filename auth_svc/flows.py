"""The auth flows: domain rules (auth_svc.domain) applied with the store,
Redis, the signing keys and the event bus. ``service.py`` entrypoints call
one method each.

Redis keys (docs/architecture.md naming):

* failed sign-ins, waits, the account lock and known devices: see
  ``auth_svc.throttle``;
* ``auth:blacklist:jti:{jti}`` / ``auth:blacklist:sid:{sid}``: revoked access
  tokens / sessions, until the last access token they cover has expired;
* ``auth:mfa:{h}``: a pending second login step (hash: user_id, ip, user agent,
  device, attempts), ``MFA_TOKEN_TTL`` seconds, single use; an attempt is
  reserved atomically before its code is checked, so parallel requests on one
  token get ``MFA_MAX_ATTEMPTS`` tries in all.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import random
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
from auth_svc.throttle import Attempt, LoginThrottle
from auth_svc.tokens import (
    digest,
    mint_access_token,
    mint_device_token,
    new_secret,
    read_device_token,
)
from shared.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from shared.mongo import utcnow
from shared.redis import clustered
from shared.sealed import seal

log = logging.getLogger(__name__)

RESET = "password_reset_tokens"
VERIFY = "email_verification_tokens"
UNLOCK = "unlock_tokens"
MFA_MAX_ATTEMPTS = 5
BAD_LOGIN = "Invalid email or password."
# reserve one attempt of a pending 2FA step, atomically: nil once it is gone
# or its attempts are spent (then it is deleted)
RESERVE_MFA_ATTEMPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts > tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return false
end
return redis.call('HGETALL', KEYS[1])
"""


# bcrypt runs in real OS threads (eventlet.tpool), else it blocks the hub (the
# bcrypt package releases the GIL while it hashes). At most BCRYPT_CONCURRENCY
# at a time (default: one less than the cores) and at OS nice BCRYPT_NICE
# (default 19: it gets a core only when the event loops, RabbitMQ and Redis do
# not want it), so a login storm queues logins (cheap greenlets) instead of
# taking every core from the event loop that answers everything else.
BCRYPT_SLOTS = int(os.environ.get("BCRYPT_CONCURRENCY", 0)) or max(1, (os.cpu_count() or 2) - 1)
_bcrypt_slots = Semaphore(BCRYPT_SLOTS)
_thread_state = threading.local()
BCRYPT_NICE = int(os.environ.get("BCRYPT_NICE", 19))


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


def admit_bcrypt() -> None:
    """503 + Retry-After at once when a bcrypt slot is further away than
    BCRYPT_MAX_WAIT: called first, so a shed sign-in costs no database or Redis
    round trip and holds a worker (here and in the gateway) for no time, and
    the other calls queued behind a storm of sign-ins are reached quickly."""
    wait = _load.expected_wait()
    if wait > _load.max_wait:  # come back when the queue ahead has gone through
        retry = max(1, math.ceil(wait))
        retry += random.randint(0, retry)  # spread: shed clients must not all return at once
        raise Unavailable("Too many sign-ins right now; try again in a moment.",
                          headers={"Retry-After": str(retry)})


def _bcrypt(function, *args):
    admit_bcrypt()
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
    def __init__(self, store, redis_client, events, config: dict, ring, vault):
        self.store = store
        self.vault = vault
        self.redis = redis_client
        self.events = events
        self.config = config
        self.ring = ring
        self.throttle = LoginThrottle(self._redis, domain.LockoutPolicy.from_config(config))
        self.rounds = int(config.get("BCRYPT_ROUNDS", 12))
        self.access_ttl = int(config.get("ACCESS_TOKEN_TTL", 900))
        self.refresh_ttl = int(config.get("REFRESH_TOKEN_TTL", 30 * 24 * 3600))
        self.reset_ttl = int(config.get("PASSWORD_RESET_TTL", 1800))
        self.verify_ttl = int(config.get("EMAIL_VERIFICATION_TTL", 24 * 3600))
        self.mfa_ttl = int(config.get("MFA_TOKEN_TTL", 300))
        self.unlock_ttl = int(config.get("UNLOCK_TOKEN_TTL", 3600))
        self.device_ttl = int(config.get("KNOWN_DEVICE_TTL", 180 * 24 * 3600))
        self.public_url = str(config.get("PUBLIC_URL") or "http://127.0.0.1:8080")

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
        return {**self._tokens(user, session_id, refresh),
                "device_token": mint_device_token(self.ring, user["_id"], self.device_ttl)}

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
    def _attempt(self, email: str, ip, user: dict | None, device_token: str | None) -> Attempt:
        device = read_device_token(self.ring, device_token, user["_id"]) if user else None
        return Attempt(email_key(email), ip or "unknown", device)

    def _failed(self, attempt: Attempt, user: dict | None) -> None:
        if self.throttle.failed(attempt) and user:
            self._send_unlock_link(user)

    def _signed_in(self, user: dict, attempt: Attempt, ip, user_agent) -> dict:
        self.throttle.succeeded(attempt)
        return self._start_session(user, ip, user_agent)

    def login(self, email: str, password: str, ip, user_agent, device_token=None) -> dict:
        admit_bcrypt()
        user = self.store.user_by_email(email)
        attempt = self._attempt(email, ip, user, device_token)
        self.throttle.check(attempt)
        hashed = (user or {}).get("password_hash") or dummy_hash(self.rounds)
        if not (check_password(password, hashed) and user):
            self._failed(attempt, user)
            raise Unauthorized(BAD_LOGIN)
        if (user.get("mfa") or {}).get("enabled"):
            return self._mfa_challenge(user, ip, user_agent, attempt.device)
        return self._signed_in(user, attempt, ip, user_agent)

    # -- MFA at login ------------------------------------------------------
    def _mfa_challenge(self, user: dict, ip, user_agent, device: str | None) -> dict:
        token = new_secret()
        name = f"auth:mfa:{digest(token)}"

        def store(client):
            # one key: MULTI on one node; a cluster client has no MULTI (same slot anyway)
            pipe = client.pipeline(transaction=not clustered(client))
            pipe.hset(name, mapping={"user_id": user["_id"], "ip": ip or "",
                                     "user_agent": user_agent or "", "device": device or "",
                                     "attempts": 0})
            pipe.expire(name, self.mfa_ttl)
            pipe.execute()
        self._redis(store)
        return {"mfa_required": True, "mfa_token": token, "expires_in": self.mfa_ttl}

    def login_mfa(self, mfa_token: str, code: str, ip, user_agent) -> dict:
        name = f"auth:mfa:{digest(mfa_token)}"
        reply = self._redis(lambda c: c.register_script(RESERVE_MFA_ATTEMPT)(
            keys=[name], args=[MFA_MAX_ATTEMPTS]))
        pending = dict(zip(reply[::2], reply[1::2], strict=True)) if reply else {}
        if not pending.get("user_id"):
            raise Unauthorized("The MFA token is invalid, used or expired; log in again.")
        user = self._require_user(pending["user_id"])
        attempt = Attempt(email_key(user["email"]), ip or "unknown", pending.get("device") or None)
        self.throttle.check(attempt)
        if not self._second_factor(user, code):
            self._failed(attempt, user)
            raise Unauthorized("The code is not valid.", errors={"code": ["Invalid code."]})
        if not self._redis(lambda c: c.delete(name)):
            raise Unauthorized("The MFA token is invalid, used or expired; log in again.")
        return self._signed_in(user, attempt, ip, user_agent)

    # -- unlock link ---------------------------------------------------------
    def _send_unlock_link(self, user: dict) -> None:
        """Emailed when the account gets locked: the owner can lift the lock
        from any client. Single use, stored hashed, ``UNLOCK_TOKEN_TTL``. The
        call that locks fails (401), so the event goes out through the outbox
        relay (``OUTBOX_GRACE_SECONDS``)."""
        token = new_secret()

        def write(session):   # in the outbox now: the failed call publishes nothing itself
            self.store.add_token(UNLOCK, digest(token), user["_id"], self.unlock_ttl,
                                 session=session)
            self.events.publish("user.unlock.requested", {
                "user_id": user["_id"], "email": user["email"], "name": user["name"],
                "sealed_link": seal(self.config, domain.link(self.public_url, "/unlock-account",
                                                             token), self.unlock_ttl)},
                actor_id=user["_id"], session=session)
        self.store.run_transaction(write)

    def unlock(self, token: str) -> None:
        used = self.store.use_token(UNLOCK, digest(token))
        user = used and self.store.user(used["user_id"])
        if not user:
            raise ValidationFailed("The unlock link is invalid, used or expired.",
                                   errors={"token": ["Invalid, used or expired."]})
        self.store.drop_tokens(UNLOCK, user["_id"])
        self.throttle.unlock(email_key(user["email"]))

    # -- confirming a sensitive change (recent re-authentication) --------------
    def _confirm(self, user: dict, proof: dict, ip, device_token, code_only: bool = False) -> None:
        """The password or a 2FA code, checked now: an access token alone
        (15 minutes, maybe stolen) cannot change the email, delete the
        account or weaken 2FA. Wrong guesses count like failed sign-ins."""
        field = "code" if code_only or proof.get("code") else "password"
        if not proof.get(field):
            needed = "a current 2FA code" if code_only else "your password (or a 2FA code)"
            raise ValidationFailed(f"Confirm this change with {needed}.",
                                   errors={field: ["Required to confirm this change."]})
        attempt = self._attempt(user["email"], ip, user, device_token)
        self.throttle.check(attempt)
        if field == "code":
            valid = self._second_factor(user, proof["code"])
        else:
            valid = bool(user.get("password_hash")) and check_password(
                proof["password"], user["password_hash"])
        if not valid:
            self._failed(attempt, user)
            raise Forbidden("The confirmation is not correct.", errors={field: ["Incorrect."]})

    def _second_factor(self, user: dict, code: str) -> bool:
        mfa = user.get("mfa") or {}
        if not mfa.get("enabled"):
            return False
        if domain.looks_like_recovery_code(code):
            return self.store.use_recovery_code(
                user["_id"], self.vault.code_hashes(domain.normalise_recovery_code(code)))
        secret = self._totp_secret(user["_id"], mfa)
        if secret is None:  # enabled without a secret: no code can be right
            return False
        step = domain.totp_step(secret, code, time.time())
        return step is not None and self.store.set_totp_step(user["_id"], step)

    def _totp_secret(self, user_id: str, mfa: dict, field: str = "secret") -> str | None:
        """The TOTP secret, decrypted. One stored in clear (before encryption at
        rest) is encrypted now and its clear copy dropped."""
        if mfa.get(f"{field}_enc"):
            return self.vault.decrypt(mfa[f"{field}_enc"])
        plain = mfa.get(field)
        if plain:
            self.store.update_user(user_id, {f"mfa.{field}_enc": self.vault.encrypt(plain)},
                                   unset=[f"mfa.{field}"])
        return plain

    # -- MFA settings ------------------------------------------------------
    def mfa_setup(self, user_id: str) -> dict:
        user = self._require_user(user_id)
        if (user.get("mfa") or {}).get("enabled"):
            raise Conflict("Two-factor authentication is already enabled.")
        secret = pyotp.random_base32()
        self.store.update_user(user_id, {"mfa": {
            "enabled": False, "pending_secret_enc": self.vault.encrypt(secret)}})
        return {"secret": secret, "otpauth_uri": domain.otpauth_uri(secret, user["email"])}

    def mfa_enable(self, user_id: str, code: str) -> dict:
        user = self._require_user(user_id)
        mfa = user.get("mfa") or {}
        if mfa.get("enabled"):
            raise Conflict("Two-factor authentication is already enabled.")
        secret = self._totp_secret(user_id, mfa, "pending_secret")
        if not secret:
            raise Conflict("Call /auth/mfa/setup first.")
        step = domain.totp_step(secret, code, time.time())
        if step is None:
            raise ValidationFailed("The code is not valid.", errors={"code": ["Invalid code."]})
        codes = domain.new_recovery_codes()
        self.store.update_user(user_id, {"mfa": {
            "enabled": True, "secret_enc": self.vault.encrypt(secret), "last_step": step,
            "recovery_codes": [self.vault.code_hash(c) for c in codes],
            "enabled_at": utcnow()}})
        return {"recovery_codes": codes}

    def mfa_disable(self, user_id: str, code: str, ip=None, device_token=None) -> None:
        user = self._require_user(user_id)
        if not (user.get("mfa") or {}).get("enabled"):
            raise Conflict("Two-factor authentication is not enabled.")
        self._confirm(user, {"code": code}, ip, device_token, code_only=True)
        self.store.update_user(user_id, {}, unset=["mfa"])

    def new_recovery_codes(self, user_id: str, code: str, ip=None, device_token=None) -> dict:
        """A fresh set of recovery codes; the old ones stop working."""
        user = self._require_user(user_id)
        if not (user.get("mfa") or {}).get("enabled"):
            raise Conflict("Two-factor authentication is not enabled.")
        self._confirm(user, {"code": code}, ip, device_token, code_only=True)
        codes = domain.new_recovery_codes()
        self.store.update_user(user_id, {"mfa.recovery_codes": [self.vault.code_hash(c)
                                                                for c in codes]})
        return {"recovery_codes": codes}

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
        if user is None or user.get("service_account"):  # no password, no mailbox
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
        self.throttle.unlock(email_key(user["email"]))
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

    def update_me(self, user_id: str, changes: dict, ip=None, device_token=None) -> dict:
        user = self._require_user(user_id)
        email = changes.get("email")
        if email and email != user["email"]:
            self._confirm(user, changes, ip, device_token)
        if "name" in changes and changes["name"] != user["name"]:
            user = self.store.update_user(user_id, {"name": changes["name"]})
            self._announce_update(user)
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

    def delete_me(self, user_id: str, proof: dict, ip=None, device_token=None) -> None:
        self._confirm(self._require_user(user_id), proof, ip, device_token)
        user = self.store.soft_delete_user(user_id)
        if user is None:
            raise Unauthorized("This account no longer exists.")
        self._blacklist_sessions(self.store.revoke_all_sessions(user_id))
        self.events.publish("user.deleted", {"user_id": user_id, "email": user["email"]},
                            actor_id=user_id)
