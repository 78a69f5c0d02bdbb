"""The gateway's authentication on a real socket with real tokens."""
import pytest
import requests
from nameko.dependency_providers import Config

from gateway_svc.http import api
from shared.redis import Redis, make_client
from shared.telemetry import Telemetry
from tests.tokens import auth_headers, mint


class PrivateGateway:
    name = "privgw"
    config = Config()
    telemetry = Telemetry()
    redis = Redis()

    @api("GET", "/whoami")
    def whoami(self, request):
        return {"user_id": request.user_id}


def start(container_factory, config):
    container_factory(PrivateGateway, config).start()
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"


@pytest.fixture
def gateway(container_factory, config):
    return start(container_factory, config)


def test_real_token_is_accepted(gateway, config, unique):
    response = requests.get(f"{gateway}/whoami", headers=auth_headers(config, unique))
    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": unique}


def test_missing_token_is_401_problem(gateway):
    response = requests.get(f"{gateway}/whoami")
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_blacklisted_jti_is_401_at_once(gateway, config, unique):
    token, claims = mint(config, unique)
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{gateway}/whoami", headers=headers).status_code == 200
    client = make_client(config)
    key = f"auth:blacklist:jti:{claims['jti']}"
    client.set(key, "1", ex=60)
    try:
        assert requests.get(f"{gateway}/whoami", headers=headers).status_code == 401
    finally:
        client.delete(key)


def test_redis_unreachable_is_503_not_a_free_pass(container_factory, make_config, unique):
    from shared import mesh
    config = make_config(REDIS_URI=f"redis://127.0.0.1:{mesh.free_port()}/0", REDIS_TIMEOUT=0.3)
    gateway = start(container_factory, config)
    response = requests.get(f"{gateway}/whoami", headers=auth_headers(config, unique))
    assert response.status_code == 503, response.text
