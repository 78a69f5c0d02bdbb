"""Access tokens: minted by auth, verified by the gateway's Identity."""
import base64
import hashlib
import json
import time

import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_svc.keys import KeyRing, SigningKey, jwk_redis_key, load_keyring, parse_pem_keys
from auth_svc.tokens import mint_access_token
from gateway_svc.identity import Identity
from shared.errors import Unauthorized, Unavailable
from tests.tokens import TEST_KEYS, TEST_PRIVATE_KEYS_PEM


class FakeRedis:
    def __init__(self, ring=None, broken=False):
        self.hash = {jwk_redis_key(k.kid): json.dumps(k.jwk()) for k in (ring.keys if ring else [])}
        self.keys = set()
        self.broken = broken
        self.hgets = 0

    def get(self, name):
        self.hgets += 1
        if self.broken:
            raise redis.ConnectionError("down")
        return self.hash.get(name)

    def exists(self, *keys):
        if self.broken:
            raise redis.ConnectionError("down")
        return sum(k in self.keys for k in keys)


RING = KeyRing(list(TEST_KEYS))


def mint(ring=RING, **kwargs):
    kwargs.setdefault("session_id", "s1")
    kwargs.setdefault("email_verified", False)
    return mint_access_token(ring, "u1", **kwargs)


def identity(fake=None):
    return Identity({}, fake or FakeRedis(RING))


def test_a_valid_token_gives_its_claims():
    token, claims = mint()
    got = identity().verify_token(token)
    assert got["sub"] == "u1" and got["jti"] == claims["jti"] and got["sid"] == "s1"
    assert got["exp"] - got["iat"] == 900 and got["email_verified"] is False
    assert jwt.get_unverified_header(token)["kid"] == RING.signing.kid


def test_a_token_of_the_second_key_is_accepted_too():
    token, _ = mint(KeyRing([TEST_KEYS[1]]))
    assert identity().verify_token(token)["sub"] == "u1"


def test_the_payload_holds_nothing_secret():
    token, _ = mint()
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert set(payload) == {"iss", "aud", "sub", "sid", "jti", "iat", "exp", "email_verified"}


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 5000, None, 12])
def test_malformed_tokens_are_401(token):
    with pytest.raises(Unauthorized):
        identity().verify_token(token)


def test_a_tampered_payload_is_401():
    token, _ = mint()
    header, payload, sig = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthorized, match="invalid"):
        identity().verify_token(f"{header}.{forged}.{sig}")


def test_an_expired_token_is_401():
    token, _ = mint(now=time.time() - 3600, ttl=60)
    with pytest.raises(Unauthorized, match="expired"):
        identity().verify_token(token)


def test_a_token_signed_by_another_key_with_our_kid_is_401():
    stranger = SigningKey(RING.signing.kid, Ed25519PrivateKey.generate())
    token, _ = mint(KeyRing([stranger]))
    with pytest.raises(Unauthorized, match="invalid"):
        identity().verify_token(token)


def test_an_unknown_kid_is_401():
    token, _ = mint(KeyRing([SigningKey.from_private(Ed25519PrivateKey.generate())]))
    with pytest.raises(Unauthorized, match="unknown key"):
        identity().verify_token(token)


def test_alg_none_is_401():
    _, claims = mint()
    token = jwt.encode(claims, None, algorithm="none", headers={"kid": RING.signing.kid})
    with pytest.raises(Unauthorized, match="algorithm"):
        identity().verify_token(token)


def test_hmac_signed_with_the_public_key_is_401():
    _, claims = mint()
    public_pem = RING.signing.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = base64.urlsafe_b64encode(json.dumps(
        {"alg": "HS256", "typ": "JWT", "kid": RING.signing.kid}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    import hashlib
    import hmac
    sig = hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()
    token = (header + b"." + payload + b"." + base64.urlsafe_b64encode(sig).rstrip(b"=")).decode()
    with pytest.raises(Unauthorized, match="algorithm"):
        identity().verify_token(token)


def test_revoked_jti_and_revoked_session_are_401():
    token, claims = mint()
    fake = FakeRedis(RING)
    ident = identity(fake)
    assert ident.verify_token(token)
    fake.keys.add(f"auth:blacklist:jti:{claims['jti']}")
    with pytest.raises(Unauthorized, match="revoked"):
        ident.verify_token(token)
    fake.keys = {"auth:blacklist:sid:s1"}
    with pytest.raises(Unauthorized, match="revoked"):
        ident.verify_token(token)


def test_redis_down_fails_closed_with_503():
    token, _ = mint()
    fake = FakeRedis(RING)
    ident = identity(fake)
    assert ident.verify_token(token)      # keys now cached in memory
    fake.broken = True
    with pytest.raises(Unavailable):
        ident.verify_token(token)


def test_unknown_kids_are_looked_up_at_a_bounded_rate():
    fake = FakeRedis(RING)
    ident = Identity({"JWKS_LOOKUPS_PER_SECOND": 5}, fake)
    for index in range(50):
        kid = f"garbage-kid-{index:06d}-xxxxxxxxxxxx"
        token = jwt.encode({"sub": "x"}, RING.signing.private_key, algorithm="EdDSA",
                           headers={"kid": kid})
        with pytest.raises(Unauthorized):
            ident.verify_token(token)
    assert fake.hgets <= 10   # at most 5 a second (the loop may straddle a second)


def test_keys_are_cached_in_memory():
    fake = FakeRedis(RING)
    ident = identity(fake)
    for _ in range(10):
        ident.verify_token(mint()[0])
    assert fake.hgets == 1


def test_missing_bearer_header_is_401():
    class Request:
        headers = {"Authorization": "Basic abc"}
    with pytest.raises(Unauthorized) as info:
        identity().authenticate(Request())
    assert info.value.extra["headers"]["WWW-Authenticate"].startswith("Bearer")


def test_test_keys_load_from_pem_and_kids_are_thumbprints():
    ring = load_keyring({"JWT_PRIVATE_KEYS": TEST_PRIVATE_KEYS_PEM})
    assert [k.kid for k in ring.keys] == [k.kid for k in TEST_KEYS]
    assert len(ring.jwks()["keys"]) == 2
    assert all("d" not in jwk for jwk in ring.jwks()["keys"])   # public halves only
    assert parse_pem_keys(TEST_KEYS[0].pem())[0].kid == TEST_KEYS[0].kid


def test_keys_are_generated_for_local_runs(tmp_path):
    ring = load_keyring({"JWT_KEYS_DIR": str(tmp_path / "keys")})
    assert len(ring.keys) == 2
    again = load_keyring({"JWT_KEYS_DIR": str(tmp_path / "keys")})
    assert [k.kid for k in again.keys] == [k.kid for k in ring.keys]


# -- 2FA data at rest (auth_svc.vault) -------------------------------------------
def test_vault_encrypts_and_rotates_keys():
    from cryptography.fernet import Fernet

    from auth_svc.vault import Vault

    old, new = Fernet.generate_key(), Fernet.generate_key()
    before = Vault([old])
    stored = before.encrypt("JBSWY3DPEHPK3PXP")
    assert "JBSWY3DPEHPK3PXP" not in stored
    rotated = Vault([new, old])
    assert rotated.decrypt(stored) == "JBSWY3DPEHPK3PXP"          # old data still reads
    with pytest.raises(ValueError):
        Vault([new]).decrypt(stored)
    # recovery codes: keyed, so not the plain SHA-256 anyone can compute...
    code = "abcde-fghjk-mnpqr-stuvw"
    assert before.code_hash(code) != hashlib.sha256(code.encode()).hexdigest()
    assert before.code_hash(code) != Vault([new]).code_hash(code)
    # ...yet codes hashed under an older key, or stored before keyed hashing, verify
    assert before.code_hash(code) in rotated.code_hashes(code)
    assert hashlib.sha256(code.encode()).hexdigest() in rotated.code_hashes(code)


def test_vault_key_file_is_generated_once(tmp_path):
    from auth_svc.vault import load_vault

    config = {"JWT_KEYS_DIR": str(tmp_path / "keys")}
    first = load_vault(config)
    path = tmp_path / "keys" / "data.keys"
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_vault(config)                      # the same key: data stays readable
    assert again.decrypt(first.encrypt("s")) == "s"
    assert list((tmp_path / "keys").iterdir()) == [path]


def counting_decode(monkeypatch) -> list:
    calls = []
    decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **kw: calls.append(1) or decode(*a, **kw))
    return calls


def test_a_verified_token_is_not_verified_again_but_is_checked_for_revocation(monkeypatch):
    calls = counting_decode(monkeypatch)
    token, claims = mint()
    fake = FakeRedis(RING)
    ident = identity(fake)
    assert ident.verify_token(token)["sub"] == "u1"
    assert ident.verify_token(token)["sub"] == "u1"
    assert len(calls) == 1                      # the signature was verified once
    fake.keys.add(f"auth:blacklist:jti:{claims['jti']}")
    with pytest.raises(Unauthorized, match="revoked"):
        ident.verify_token(token)               # the blacklist is still read every time


def test_a_remembered_token_is_refused_once_its_key_leaves_the_jwks():
    fake = FakeRedis(RING)
    ident = Identity({"JWKS_CACHE_SECONDS": 0}, fake)   # keys re-read on every use
    token, _ = mint()
    assert ident.verify_token(token)
    fake.hash.clear()                                   # auth dropped the key
    with pytest.raises(Unauthorized, match="unknown key"):
        ident.verify_token(token)


def test_a_remembered_token_is_forgotten_when_it_expires(monkeypatch):
    calls = counting_decode(monkeypatch)
    now = [time.time()]
    token, claims = mint(now=now[0])
    monkeypatch.setattr(time, "time", lambda: now[0])  # the memory's clock
    ident = identity()
    ident.verify_token(token)
    now[0] = claims["exp"] + 4                          # within the 5 s leeway: remembered
    ident.verify_token(token)
    assert len(calls) == 1
    now[0] = claims["exp"] + 6                          # past it: verified afresh
    ident.verify_token(token)
    assert len(calls) == 2


def test_a_token_with_a_changed_payload_is_not_taken_for_the_remembered_one():
    token, _ = mint()
    ident = identity()
    assert ident.verify_token(token)
    header, _, sig = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"sub": "admin"}).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthorized):
        ident.verify_token(f"{header}.{forged}.{sig}")
