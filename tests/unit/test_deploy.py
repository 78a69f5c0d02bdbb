"""docker-compose.yml and the Dockerfile stay in step with the services."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shared import services

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {**services.SERVICES, services.GATEWAY: "gateway_svc"}


def test_compose_runs_every_service_with_health_checks_and_restarts():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"rabbitmq", "redis", "mongodb", "minio", "prometheus", "grafana"} <= set(compose)
    for name, package in SERVICES.items():
        service = compose[name]
        assert service["environment"]["SERVICE"] == package
        assert (ROOT / package / "service.py").exists()
        assert "healthcheck" in service and service["restart"] == "unless-stopped"
    assert "--requirepass" in " ".join(compose["redis"]["command"])
    assert "MONGO_INITDB_ROOT_PASSWORD" in compose["mongodb"]["environment"]


def test_compose_services_connect_as_their_own_users_and_never_see_the_admin():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["access"]["command"][-2:] == ["ops.mesh", "users"]
    for name in SERVICES:
        env = compose[name]["environment"]
        assert "env_file" not in compose[name]  # .env holds the admin passwords
        assert env["AMQP_URI"].startswith(f"pyamqp://wf-{name}:"), name
        assert env["REDIS_URI"].startswith(f"redis://wf-{name}:"), name
        assert "RABBITMQ_PASSWORD" not in str(env) and "REDIS_PASSWORD" not in str(env)
        assert compose[name]["depends_on"]["access"] == {
            "condition": "service_completed_successfully"}


def test_compose_runs_the_web_console_as_its_own_user_beside_the_gateway():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    web = compose["web"]
    assert web["command"] == ["python", "-m", "web_svc"] and web["restart"] == "unless-stopped"
    env = web["environment"]
    for uri in ("AMQP_URI", "REDIS_URI"):
        assert env[uri].split("://", 1)[1].startswith("wf-web:"), uri
    assert env["RABBITMQ_MANAGEMENT_URL"].startswith("http://wf-web:")
    assert "RABBITMQ_PASSWORD" not in str(env) and "REDIS_PASSWORD" not in str(env)
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert web["depends_on"]["access"] == {"condition": "service_completed_successfully"}
    assert "SERVICE_PASSWORD_WEB" in str(compose["access"]["environment"])
    assert "8080" in env["PUBLIC_URL"]  # emailed links open the console


def test_every_setting_of_env_example_reaches_compose():
    """Services read no env_file: a value set in .env reaches a container only if
    docker-compose.yml names it (else it would be silently ignored)."""
    import re

    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    compose = (ROOT / "docker-compose.yml").read_text()
    missing = [name for name in names if "${" + name not in compose]
    assert names and not missing, missing


def test_compose_keeps_attachments_in_minio_in_a_bucket_made_at_start():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    tasks, init = compose["tasks"], compose["minio-init"]
    bucket = tasks["environment"]["TASK_FILES_S3_BUCKET"]
    assert tasks["environment"]["TASK_FILES_S3_ENDPOINT"] == "http://minio:9000"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(tasks["environment"])
    assert f"mc mb --ignore-existing local/{bucket}" in " ".join(init["entrypoint"])
    assert tasks["depends_on"]["minio-init"] == {"condition": "service_completed_successfully"}


def test_image_runs_as_a_non_root_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "\nUSER app\n" in dockerfile and "useradd" in dockerfile


def _compose_client() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _compose_client(), reason="no docker compose client on this machine")
def test_docker_compose_config_accepts_the_file():
    env = dict(os.environ, RABBITMQ_PASSWORD="x", REDIS_PASSWORD="x", MONGO_PASSWORD="x",
               MONGO_KEYFILE="x" * 32, MINIO_PASSWORD="x" * 8, GRAFANA_PASSWORD="x",
               AUTH_DATA_KEYS="x" * 44)
    (ROOT / ".env").touch(exist_ok=True)
    result = subprocess.run(["docker", "compose", "config", "-q"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _docker_ignores(path: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins, ``!`` re-includes,
    a pattern matching a directory excludes everything under it."""
    import fnmatch

    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        candidates = {pattern, pattern.replace("**/", "")}
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("path", [".env", ".env.production", "var/keys/k1.pem", "var/db/data",
                                  "var/mail/1.eml", "var/files/a.bin", "var/log/auth.log",
                                  "server.key", "deploy/k8s/secret.yaml", ".git/config",
                                  "tests/tokens.py", ".venv/bin/python"])
def test_secrets_and_local_data_stay_out_of_the_image(path):
    assert _docker_ignores(path), path


@pytest.mark.parametrize("path", ["auth_svc/service.py", "shared/access.py", "config.yaml",
                                  ".env.example", "requirements.lock", "pyproject.toml"])
def test_the_code_goes_into_the_image(path):
    assert not _docker_ignores(path), path


def test_redis_never_evicts_the_state_it_holds_and_persists_it():
    redis = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]
    command = " ".join(redis["command"])
    # a blacklisted token, a lockout or a lock evicted under memory pressure would reopen it
    assert "--maxmemory-policy noeviction" in command and "--maxmemory " in command
    assert "--appendonly yes" in command and "--save " in command
    assert redis["mem_limit"] and any(v.endswith(":/data") for v in redis["volumes"])


def test_the_cache_has_its_own_redis_that_evicts_and_every_service_uses_it():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    cache = compose["redis-cache"]
    command = " ".join(cache["command"])
    # cached answers only: full, it drops the least recently used instead of refusing writes
    assert "--maxmemory-policy allkeys-lru" in command and "--maxmemory " in command
    assert "--appendonly no" in command and cache["mem_limit"] and "volumes" not in cache
    assert "--requirepass" in command
    assert compose["access"]["environment"]["REDIS_CACHE_URI"].endswith("@redis-cache:6379/0")
    assert compose["access"]["depends_on"]["redis-cache"] == {"condition": "service_healthy"}
    for name in [*SERVICES, "web"]:
        env = compose[name]["environment"]
        assert env["REDIS_URI"].startswith(f"redis://wf-{name}:") and "@redis:" in env["REDIS_URI"]
        assert env["REDIS_CACHE_URI"].startswith(f"redis://wf-{name}:"), name
        assert "@redis-cache:" in env["REDIS_CACHE_URI"], name
