"""Access-token minting and the gateway's verification: tampered, expired,
wrong key, alg confusion (none / HS256 with the public key), revocation,
failing closed when Redis is down."""
import base64
import json
import time

import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization

from auth_svc.keys import jwks, key_from_seed, load_keys, parse_pems
from auth_svc.tokens import mint_access_token
from gateway_svc.identity import Identity, blacklist_jti_key, blacklist_sid_key
from shared.errors import Unauthorized, Unavailable
from tests.tokens import TEST_KEYS, auth_headers, auth_settings, mint


class FakeRedis:
    def __init__(self, data=None, broken=False):
        self.data = dict(data or {})
        self.broken = broken
        self.gets = 0

    def mget(self, keys):
        if self.broken:
            raise redis.ConnectionError("down")
        return [self.data.get(k) for k in keys]

    def get(self, key):
        self.gets += 1
        if self.broken:
            raise redis.ConnectionError("down")
        return self.data.get(key)


def identity(redis_client=None, **settings):
    return Identity({"auth": auth_settings(**settings)}, redis_client or FakeRedis())


CONFIG = {"auth": auth_settings()}


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_minted_token_verifies_with_expected_claims():
    token, claims = mint(CONFIG, "u1", session_id="s1", email_verified=False)
    verified = identity().verify_token(token)
    assert verified["sub"] == "u1" and verified["sid"] == "s1"
    assert verified["jti"] == claims["jti"] and verified["email_verified"] is False
    assert verified["exp"] - verified["iat"] == 900
    assert jwt.get_unverified_header(token)["kid"] == TEST_KEYS[0].kid


def test_second_key_still_verifies_for_rotation():
    token, _ = mint_access_token(TEST_KEYS[1], "u2")
    assert identity().verify_token(token)["sub"] == "u2"


def test_keys_are_deterministic_and_kids_distinct():
    assert key_from_seed(b"a").kid == key_from_seed(b"a").kid
    assert len({k.kid for k in TEST_KEYS}) == 2
    assert [k.kid for k in parse_pems(auth_settings()["JWT_PRIVATE_KEYS"])] == \
        [k.kid for k in TEST_KEYS]


def test_keys_generated_for_local_runs_are_reused(tmp_path):
    first = load_keys({"JWT_KEYS_DIR": str(tmp_path / "keys")})
    again = load_keys({"JWT_KEYS_DIR": str(tmp_path / "keys")})
    assert len(first) == 2 and [k.kid for k in first] == [k.kid for k in again]


def test_expired_token_is_refused():
    token, _ = mint(CONFIG, "u1", now=time.time() - 3600, ttl=60)
    with pytest.raises(Unauthorized, match="expired"):
        identity().verify_token(token)


def test_tampered_payload_is_refused():
    token, claims = mint(CONFIG, "u1")
    header, _, signature = token.split(".")
    forged = ".".join([header, b64({**claims, "sub": "admin"}), signature])
    with pytest.raises(Unauthorized):
        identity().verify_token(forged)


def test_token_of_an_unknown_key_is_refused_and_redis_reread_once():
    stranger = key_from_seed(b"someone else")
    token, _ = mint_access_token(stranger, "u1")
    fake = FakeRedis()
    ident = identity(fake)
    for _ in range(5):
        with pytest.raises(Unauthorized):
            ident.verify_token(token)
    assert fake.gets == 1  # rate-limited re-reads


def test_wrong_key_with_a_known_kid_is_refused():
    stranger = key_from_seed(b"someone else")
    token = jwt.encode({"sub": "u1", "jti": "j", "iat": int(time.time()),
                        "exp": int(time.time()) + 60, "typ": "access",
                        "iss": "workforce-auth", "aud": "workforce-api"},
                       stranger.private, algorithm="EdDSA", headers={"kid": TEST_KEYS[0].kid})
    with pytest.raises(Unauthorized):
        identity().verify_token(token)


def test_key_learned_from_redis_jwks():
    stranger = key_from_seed(b"rotated in later")
    token, _ = mint_access_token(stranger, "u9")
    fake = FakeRedis({"auth:jwks": json.dumps(jwks([stranger]))})
    assert identity(fake, JWKS="").verify_token(token)["sub"] == "u9"


def test_alg_none_is_refused():
    _, claims = mint(CONFIG, "u1")
    token = f"{b64({'alg': 'none', 'kid': TEST_KEYS[0].kid})}.{b64(claims)}."
    with pytest.raises(Unauthorized):
        identity().verify_token(token)


def test_hmac_signed_with_the_public_key_is_refused():
    _, claims = mint(CONFIG, "u1")
    public_pem = TEST_KEYS[0].private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': TEST_KEYS[0].kid})}." \
                    f"{b64(claims)}"
    signature = base64.urlsafe_b64encode(
        hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(Unauthorized):
        identity().verify_token(f"{signing_input}.{signature.decode()}")


@pytest.mark.parametrize("value", ["", "Bearer", "Basic abc", "Bearer not.a.jwt", "Bearer x" * 900])
def test_missing_or_malformed_authorization_is_refused(value):
    class Request:
        headers = {"Authorization": value}
    with pytest.raises(Unauthorized):
        identity().authenticate(Request())


def test_revoked_jti_or_session_is_refused():
    token, claims = mint(CONFIG, "u1", session_id="s1")
    with pytest.raises(Unauthorized, match="revoked"):
        identity(FakeRedis({blacklist_jti_key(claims["jti"]): "1"})).verify_token(token)
    with pytest.raises(Unauthorized, match="revoked"):
        identity(FakeRedis({blacklist_sid_key("s1"): "1"})).verify_token(token)


def test_redis_down_fails_closed():
    token, _ = mint(CONFIG, "u1")
    with pytest.raises(Unavailable):
        identity(FakeRedis(broken=True)).verify_token(token)


def test_auth_headers_helper_gives_a_bearer_token():
    header = auth_headers(CONFIG, "u5")["Authorization"]
    assert header.startswith("Bearer ")
    assert identity().verify_token(header[7:])["sub"] == "u5"
