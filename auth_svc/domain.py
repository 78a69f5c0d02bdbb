"""Rules of the auth service, with no I/O: password policy, email
normalisation, lockout arithmetic, TOTP matching, what a user looks like."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pyotp

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_BYTES = 1024
MAX_NAME_LENGTH = 200
RECOVERY_CODE_COUNT = 10
TOTP_WINDOW = 1          # accept the previous and next 30 s step (clock skew)
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")


def normalise_email(email: str) -> str:
    """One spelling per mailbox: NFKC, no surrounding whitespace, lower case."""
    return unicodedata.normalize("NFKC", email).strip().lower()


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip()
                     and not line.startswith("#"))


def password_problems(password: str, email: str | None = None) -> list[str]:
    """Why a new password is refused (empty list: accepted)."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"Use at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        problems.append(f"Use at most {MAX_PASSWORD_BYTES} bytes.")
    if email and normalise_email(password) == normalise_email(email):
        problems.append("The password must not be your email address.")
    if password.lower() in common_passwords():
        problems.append("This password is too common.")
    return problems


def prehash(password: str) -> bytes:
    """bcrypt reads at most 72 bytes; hash first so a long password is not
    silently truncated (base64 of SHA-256: 44 bytes, no NUL)."""
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


# -- lockout ---------------------------------------------------------------
@dataclass(frozen=True)
class LockoutPolicy:
    """Failed sign-ins (wrong passwords and wrong 2FA codes alike), after
    OWASP's "device cookie" and Keycloak's brute-force detection:

    * per (account, client IP): ``pair_free_failures`` free, then each further
      failure makes that pair wait ``delay_seconds`` * 2^(n-1) (429);
    * per client IP: ``ip_max_failures`` free, then growing delays the same way,
      without its attempts counting against accounts;
    * per account: ``max_failures`` within ``window`` lock it for clients that
      are not a known device of the account (423), ``lock_seconds`` doubled
      for each further lock within 24 h;
    * a known device (a signed token of an earlier sign-in) skips these and has
      its own count: ``max_failures`` wrong attempts and it is a stranger too.
    """
    max_failures: int = 5        # failures within `window` that lock the account
    window: int = 900            # seconds the failure counts live
    lock_seconds: int = 900      # first lock; doubles with each lock in a row
    max_lock_seconds: int = 86400
    ip_max_failures: int = 50    # failures from one IP within `window` before it waits
    pair_free_failures: int = 3  # failures of one (account, IP) before it waits
    delay_seconds: int = 1       # first wait; doubles with each further failure
    max_delay_seconds: int = 900

    @classmethod
    def from_config(cls, config: dict) -> "LockoutPolicy":
        return cls(int(config.get("LOGIN_MAX_FAILURES", 5)),
                   int(config.get("LOGIN_FAILURE_WINDOW", 900)),
                   int(config.get("LOCKOUT_SECONDS", 900)),
                   int(config.get("LOCKOUT_MAX_SECONDS", 86400)),
                   int(config.get("LOGIN_IP_MAX_FAILURES", 50)),
                   int(config.get("LOGIN_PAIR_FREE_FAILURES", 3)),
                   int(config.get("LOGIN_DELAY_SECONDS", 1)),
                   int(config.get("LOGIN_DELAY_MAX_SECONDS", 900)))

    def locks_now(self, failures: int) -> bool:
        """Whether ``failures`` failed attempts in the window lock the account."""
        return failures >= self.max_failures

    def lock_duration(self, strikes: int) -> int:
        """Back-off: ``lock_seconds`` for the first lock of the day, doubled for
        every further one, capped at ``max_lock_seconds``."""
        strikes = max(1, strikes)
        return int(min(self.max_lock_seconds, self.lock_seconds * 2 ** min(strikes - 1, 30)))

    def delay(self, failures: int, free: int) -> int:
        """Seconds to wait before the next attempt after ``failures`` of which
        ``free`` cost nothing: 0, then ``delay_seconds`` doubling, capped."""
        over = failures - free
        if over <= 0:
            return 0
        return int(min(self.max_delay_seconds, self.delay_seconds * 2 ** min(over - 1, 30)))

    def pair_delay(self, failures: int) -> int:
        return self.delay(failures, self.pair_free_failures)

    def ip_delay(self, failures: int) -> int:
        return self.delay(failures, self.ip_max_failures - 1)

    def device_distrusted(self, device_failures: int) -> bool:
        """A known device that failed this often is treated as a stranger."""
        return device_failures >= self.max_failures


# -- TOTP and recovery codes -----------------------------------------------
def totp_step(secret: str, code: str, at: float, window: int = TOTP_WINDOW) -> int | None:
    """The time step ``code`` is valid for around ``at``, or None. The caller
    refuses a step not after the last one used (replay protection)."""
    if not (isinstance(code, str) and code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now_step = totp.timecode(at)
    match = None
    for step in range(now_step - window, now_step + window + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            match = step
    return match


def otpauth_uri(secret: str, email: str, issuer: str = "Workforce") -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"   # no 0/o, 1/i/l
RECOVERY_GROUPS = 4      # of 5 characters: 20 * log2(31) = 99 bits each


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    return ["-".join("".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(5))
                     for _ in range(RECOVERY_GROUPS)) for _ in range(count)]


def normalise_recovery_code(code: str) -> str:
    return code.strip().lower().replace(" ", "")


def looks_like_recovery_code(code: str) -> bool:
    """``xxxxx-xxxxx-xxxxx-xxxxx``, or the 2-group codes issued before."""
    groups = normalise_recovery_code(code).split("-")
    return len(groups) in (2, RECOVERY_GROUPS) and all(len(g) == 5 for g in groups)


# -- shapes ----------------------------------------------------------------
def public_user(doc: dict) -> dict:
    return {"user_id": doc["_id"], "email": doc["email"], "name": doc["name"],
            "email_verified": bool(doc.get("email_verified")),
            "mfa_enabled": bool((doc.get("mfa") or {}).get("enabled")),
            "pending_email": doc.get("pending_email"),
            "created_at": doc.get("created_at")}


def brief_user(doc: dict) -> dict:
    """What other services get over RPC."""
    return {"user_id": doc["_id"], "email": doc["email"], "name": doc["name"],
            "email_verified": bool(doc.get("email_verified"))}


def session_view(doc: dict, current_session_id: str | None) -> dict:
    return {"session_id": doc["_id"], "created_at": doc.get("created_at"),
            "last_used_at": doc.get("last_used_at"), "ip": doc.get("ip"),
            "user_agent": doc.get("user_agent"),
            "current": doc["_id"] == current_session_id}


def link(public_url: str, path: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{path}?token={token}"


# --- personal access tokens (auth_svc.pats) ---------------------------------------
PAT_PREFIX = "wfp_"          # secret scanners (GitHub's, gitleaks) match on a fixed prefix
PAT_SCOPES = ("read", "write", "admin")
PAT_MAX_PER_USER = 50
PAT_DEFAULT_DAYS = 30
PAT_MAX_DAYS = 366
PAT_LAST_USED_EVERY = 60     # seconds: the gateway reports a token's use at most this often


def pat_display(secret_body: str) -> str:
    """What identifies a token in lists and logs without granting anything:
    the prefix and the first 6 characters of its 43 random ones."""
    return f"{PAT_PREFIX}{secret_body[:6]}"


def pat_record(token: dict) -> dict:
    """What the gateway keeps of a live token (``auth:pat:{hash}``): no secret."""
    return {"token_id": token["_id"], "user_id": token["user_id"], "scope": token["scope"],
            "org_id": token.get("org_id"),
            "expires_at": int(token["expires_at"].timestamp())}


def pat_live(token: dict, now) -> bool:
    return token.get("revoked_at") is None and token["expires_at"] > now
