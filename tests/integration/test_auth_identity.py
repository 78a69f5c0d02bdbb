"""The gateway's token check on a real socket with real Redis: test tokens
from tests.tokens are accepted; revoked ones and Redis outages are not."""
import pytest
import redis
import requests
from nameko.dependency_providers import Config

from gateway_svc.http import api
from shared.redis import Redis
from shared.telemetry import Telemetry
from tests.tokens import access_token, auth_headers


class WhoAmI:
    name = "whoami_gateway"
    config = Config()
    telemetry = Telemetry()
    redis = Redis()

    @api("GET", "/whoami")
    def whoami(self, request):
        return {"user_id": request.user_id, "verified": request.token_claims["email_verified"]}

    @api("GET", "/whoami/limited", limit="tight")
    def limited(self, request):
        return {"user_id": request.user_id}


def start(container_factory, config):
    container_factory(WhoAmI, config).start()
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/v1/whoami"


def test_a_test_token_is_accepted_and_a_revoked_one_is_not(container_factory, config, unique):
    url = start(container_factory, config)
    assert requests.get(url).status_code == 401
    answer = requests.get(url, headers=auth_headers(config, f"user-{unique}"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"user_id": f"user-{unique}", "verified": True}

    token, claims = access_token(config, f"user-{unique}")
    client = redis.Redis.from_url(config["REDIS_URI"])
    client.set(f"auth:blacklist:jti:{claims['jti']}", 1, ex=60)
    answer = requests.get(url, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("header", ["Bearer", "Bearer x.y.z", "Token abc", "Bearer " + "a" * 5000])
def test_bad_authorization_headers_are_401(container_factory, config, header):
    url = start(container_factory, config)
    assert requests.get(url, headers={"Authorization": header}).status_code == 401


def test_redis_down_makes_authenticated_routes_503(container_factory, make_config, unique):
    config = make_config()
    token, _ = access_token(config, f"user-{unique}")   # publishes the JWKS on the real Redis
    config["REDIS_URI"] = "redis://127.0.0.1:1/0"          # closed port: "Redis stopped"
    config["REDIS_TIMEOUT"] = 0.2
    url = start(container_factory, config)
    answer = requests.get(url, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 503, answer.text


def test_a_token_already_accepted_is_refused_once_revoked(container_factory, config, unique):
    url = start(container_factory, config)
    token, claims = access_token(config, f"user-{unique}")
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(url, headers=headers).status_code == 200   # verified, now remembered
    redis.Redis.from_url(config["REDIS_URI"]).set(f"auth:blacklist:sid:{claims['sid']}", 1, ex=60)
    answer = requests.get(url, headers=headers)
    assert answer.status_code == 401 and "revoked" in answer.json()["detail"]


def test_an_authenticated_callers_limit_is_counted_and_a_revoked_token_spends_none_of_it(
        container_factory, make_config, unique):
    config = make_config(RATE_LIMITS={"default": "1000/60", "tight": "2/60"})
    url = start(container_factory, config).replace("/whoami", "/whoami/limited")
    user = f"user-{unique}"
    revoked, claims = access_token(config, user)
    redis.Redis.from_url(config["REDIS_URI"]).set(f"auth:blacklist:jti:{claims['jti']}", 1, ex=60)
    for _ in range(3):
        assert requests.get(url, headers={"Authorization": f"Bearer {revoked}"}).status_code == 401
    headers = auth_headers(config, user)
    answers = [requests.get(url, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "2"
    assert answers[1].headers["X-RateLimit-Remaining"] == "0"
    assert int(answers[2].headers["Retry-After"]) >= 1
