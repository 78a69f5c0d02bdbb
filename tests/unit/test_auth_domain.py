"""Auth rules without I/O: password policy, email normalisation, lockout
arithmetic, TOTP steps, and the reuse-detection decision of refresh."""
import math
import time
from unittest import mock

import bcrypt
import pyotp
import pytest

from auth_svc import domain
from auth_svc.domain import LockoutPolicy
from auth_svc.flows import Accounts, check_password, hash_password
from shared.errors import Unauthorized
from tests.tokens import TEST_DATA_KEYS, TEST_KEYS


@pytest.mark.parametrize("password, email, ok", [
    ("correct horse battery", "a@b.co", True),
    ("short", "a@b.co", False),
    ("password123", "a@b.co", False),             # on the common list
    ("QWERTYUIOP", "a@b.co", False),              # case-insensitively
    ("me@example.com", "ME@example.com", False),  # the email itself
    ("é" * 513, "a@b.co", False),                 # 1026 bytes
])
def test_password_policy(password, email, ok):
    assert (domain.password_problems(password, email) == []) is ok


def test_the_common_list_ships_with_the_service():
    assert len(domain.common_passwords()) > 50 and "1234567890" in domain.common_passwords()


def test_email_normalisation():
    assert domain.normalise_email("  Ｊｏｅ@Example.COM\t") == "joe@example.com"


def test_long_passwords_are_not_truncated_by_bcrypt():
    long_a, long_b = "a" * 100 + "1", "a" * 100 + "2"   # same first 72 bytes
    hashed = hash_password(long_a, 4)
    assert check_password(long_a, hashed) and not check_password(long_b, hashed)
    assert bcrypt.checkpw(domain.prehash(long_a), hashed.encode())
    assert hash_password(long_a, 12).startswith("$2b$12$")


def test_lockout_arithmetic():
    policy = LockoutPolicy(max_failures=5, window=900, lock_seconds=900,
                           max_lock_seconds=3600, ip_max_failures=50)
    assert [policy.locks_now(n) for n in (1, 4, 5, 6)] == [False, False, True, True]
    assert [policy.lock_duration(s) for s in (1, 2, 3, 4, 99)] == [900, 1800, 3600, 3600, 3600]
    # an (account, IP) pair: 3 free failures, then 1, 2, 4 ... s, capped
    assert [policy.pair_delay(n) for n in (1, 3, 4, 5, 6, 40)] == [0, 0, 1, 2, 4, 900]
    # an IP: waits from its 50th failure on
    assert [policy.ip_delay(n) for n in (49, 50, 51)] == [0, 1, 2]
    assert not policy.device_distrusted(4) and policy.device_distrusted(5)
    assert LockoutPolicy.from_config({"LOGIN_MAX_FAILURES": "3"}).max_failures == 3


def test_totp_steps_and_window():
    secret = pyotp.random_base32()
    totp, now = pyotp.TOTP(secret), time.time()
    step = totp.timecode(now)
    assert domain.totp_step(secret, totp.at(now), now) == step
    assert domain.totp_step(secret, totp.at(now - 30), now) == step - 1
    assert domain.totp_step(secret, totp.at(now + 30), now) == step + 1
    assert domain.totp_step(secret, totp.at(now - 90), now) is None
    assert domain.totp_step(secret, "12345", now) is None
    assert domain.totp_step(secret, "abcdef", now) is None


def test_recovery_codes():
    codes = domain.new_recovery_codes()
    assert len(set(codes)) == 10 and all(domain.looks_like_recovery_code(c) for c in codes)
    assert domain.looks_like_recovery_code(" " + codes[0].upper() + " ")
    assert not domain.looks_like_recovery_code("123456")
    # >= 80 bits each: 20 characters of a 31-letter alphabet
    assert all(len(c.replace("-", "")) == 20 for c in codes)
    assert 20 * math.log2(len(set(domain.RECOVERY_ALPHABET))) >= 80
    assert domain.looks_like_recovery_code("52jq6-rxg9m")        # issued before: still taken


def accounts(store):
    from auth_svc.keys import KeyRing
    from auth_svc.vault import load_vault
    return Accounts(store, mock.Mock(), mock.Mock(), {"BCRYPT_ROUNDS": 4}, KeyRing(TEST_KEYS),
                    load_vault({"AUTH_DATA_KEYS": TEST_DATA_KEYS}))


def test_refresh_with_a_used_token_revokes_the_session():
    store = mock.Mock()
    store.rotate_refresh.return_value = None
    store.session_by_used_hash.return_value = {"_id": "s1", "user_id": "u1"}
    service = accounts(store)
    with pytest.raises(Unauthorized, match="already used"):
        service.refresh("old-token", "1.2.3.4", "ua")
    store.revoke_session.assert_called_once_with("s1")
    service.redis.pipeline.return_value.set.assert_called_once()
    assert service.redis.pipeline.return_value.set.call_args[0][0] == "auth:blacklist:sid:s1"


def test_refresh_with_an_unknown_token_revokes_nothing():
    store = mock.Mock()
    store.rotate_refresh.return_value = None
    store.session_by_used_hash.return_value = None
    with pytest.raises(Unauthorized, match="invalid or expired"):
        accounts(store).refresh("nonsense", None, None)
    store.revoke_session.assert_not_called()


def test_refresh_rotates_to_a_new_token():
    store = mock.Mock()
    store.rotate_refresh.return_value = {"_id": "s1", "user_id": "u1"}
    store.user.return_value = {"_id": "u1", "email": "a@b.co", "name": "A"}
    tokens = accounts(store).refresh("current", None, None)
    old_hash, new_hash = store.rotate_refresh.call_args[0][:2]
    assert old_hash != new_hash and tokens["refresh_token"] != "current"
    assert tokens["token_type"] == "Bearer" and tokens["user"]["user_id"] == "u1"


def test_a_code_is_refused_not_an_error_when_mfa_is_on_but_no_secret_is_stored():
    user = {"_id": "u1", "email": "a@b.co", "mfa": {"enabled": True}}  # secret lost or never set
    assert accounts(mock.Mock())._second_factor(user, "123456") is False
