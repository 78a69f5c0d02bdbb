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
