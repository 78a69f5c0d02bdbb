"""TRUSTED_PROXIES: whose X-Forwarded-For the gateway believes, seen where a
user sees it (the session's IP) and where an attacker would use it (the
per-IP rate limit), over real HTTP to AuthService + GatewayService."""
import pytest
import requests

from auth_svc.service import AuthService
from gateway_svc.service import GatewayService

PASSWORD = "correct horse battery"


def start(container_factory, make_config, **overrides):
    config = make_config(**overrides)
    for cls in (AuthService, GatewayService):
        container_factory(cls, config).start()
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"


def session_ip(base, email, forwarded):
    body = requests.post(f"{base}/auth/register", json={
        "email": email, "password": PASSWORD, "name": "Proxy"},
        headers={"X-Forwarded-For": forwarded}, timeout=10)
    assert body.status_code == 201, body.text
    sessions = requests.get(f"{base}/auth/sessions", timeout=10, headers={
        "Authorization": f"Bearer {body.json()['access_token']}"}).json()["items"]
    return sessions[0]["ip"]


@pytest.mark.parametrize("setting, forwarded, seen", [
    (None, "203.0.113.9", "127.0.0.1"),                       # default: header ignored
    ("0", "203.0.113.9", "127.0.0.1"),
    ("1", "198.51.100.1, 203.0.113.9", "203.0.113.9"),        # one proxy appended one entry
    ("2", "198.51.100.1, 203.0.113.9", "198.51.100.1"),
    ("2", "203.0.113.9", "127.0.0.1"),                        # fewer entries than proxies
    ("127.0.0.0/8,10.0.0.0/8", "6.6.6.6, 203.0.113.9, 10.1.2.3", "203.0.113.9"),
    ("10.0.0.0/8", "203.0.113.9", "127.0.0.1"),               # the peer is no trusted proxy
])
def test_the_session_ip_is_the_client_behind_trusted_proxies_only(
        container_factory, make_config, unique, setting, forwarded, seen):
    overrides = {} if setting is None else {"TRUSTED_PROXIES": setting}
    base = start(container_factory, make_config, **overrides)
    assert session_ip(base, f"proxy.{unique}@example.com", forwarded) == seen


def forgot(base, forwarded):
    return requests.post(f"{base}/auth/password/forgot", json={"email": "x@example.com"},
                         headers={"X-Forwarded-For": forwarded}, timeout=10).status_code


def test_behind_a_proxy_each_client_has_its_own_limit(container_factory, make_config, unique):
    base = start(container_factory, make_config, TRUSTED_PROXIES="1",
                 RATE_LIMITS={"default": "1000/60", "auth": "3/60", "bulk": "1000/60"})
    # addresses no other test uses (the limiter's Redis is shared)
    first, second = f"2001:db8::{unique[:4]}:1", f"2001:db8::{unique[:4]}:2"
    assert [forgot(base, first) for _ in range(4)] == [202, 202, 202, 429]
    assert forgot(base, second) == 202       # another client behind the same proxy
    # a client cannot escape its limit by writing the header itself: the proxy
    # appends the real address, and that last entry is the one believed
    assert forgot(base, f"198.51.100.77, {first}") == 429
