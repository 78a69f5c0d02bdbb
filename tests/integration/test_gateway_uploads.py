"""The per-route body limit of ``@api(max_body=...)`` (multipart uploads) on a
real socket: a route may take more than MAX_BODY_BYTES, the others may not."""
import pytest
import requests
from nameko.dependency_providers import Config

from gateway_svc.http import api, read_json
from gateway_svc.routes.tasks import uploaded_file
from shared.redis import Redis
from shared.telemetry import Telemetry


class UploadGateway:
    name = "uploadgw"
    config = Config()
    telemetry = Telemetry()
    redis = Redis()

    @api("POST", "/upload", auth=False, max_body="UPLOAD_MAX_BODY")
    def upload(self, request):
        part = uploaded_file(request)
        return 201, {k: v for k, v in part.items() if k != "data_b64"} | {"b64": len(part["data_b64"])}

    @api("POST", "/json", auth=False)
    def json_route(self, request):
        return read_json(request)


@pytest.fixture
def gateway(container_factory, make_config):
    config = make_config(MAX_BODY_BYTES=1000, UPLOAD_MAX_BODY=5000)
    container_factory(UploadGateway, config).start()
    return f"http://{config['WEB_SERVER_ADDRESS']}/api/v1"


def test_an_upload_route_takes_more_than_the_global_limit_but_not_more_than_its_own(gateway):
    ok = requests.post(f"{gateway}/upload", files={"file": ("a b.txt", b"x" * 3000, "text/plain")})
    assert ok.status_code == 201, ok.text
    assert ok.json() == {"filename": "a b.txt", "content_type": "text/plain", "b64": 4000}
    big = requests.post(f"{gateway}/upload", files={"file": ("a.txt", b"x" * 6000, "text/plain")})
    assert big.status_code == 413 and big.headers["Content-Type"] == "application/problem+json"
    other = requests.post(f"{gateway}/json", data=b"[" + b"1," * 1000 + b"1]",
                          headers={"Content-Type": "application/json"})
    assert other.status_code == 413


def test_uploads_must_be_multipart_with_a_file_part(gateway):
    wrong = requests.post(f"{gateway}/upload", json={"file": "x"})
    assert wrong.status_code == 415
    missing = requests.post(f"{gateway}/upload", files={"other": ("a.txt", b"x", "text/plain")})
    assert missing.status_code == 422 and "file" in missing.json()["errors"]


def test_a_hostile_multipart_body_is_refused_before_it_is_parsed_through(gateway):
    """Many tiny parts (werkzeug 2.3's multipart parser, CVE-2024-49767 class):
    413 problem+json, not a parse of every part."""
    parts = b"".join(b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % n
                     for n in range(60))
    body = parts + b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nx\r\n--b--\r\n'
    assert len(body) < 5000  # under the route's body limit: the part count refuses it
    hostile = requests.post(f"{gateway}/upload", data=body,
                            headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert hostile.status_code == 413, hostile.text
    assert hostile.headers["Content-Type"] == "application/problem+json"


def test_a_file_past_what_rpc_can_carry_is_a_413_not_a_500(gateway, monkeypatch):
    from gateway_svc.routes import tasks
    monkeypatch.setattr(tasks, "RPC_FILE_CEILING", 2000)  # 90 MiB in production
    big = requests.post(f"{gateway}/upload", files={"file": ("a.txt", b"x" * 2001, "text/plain")})
    assert big.status_code == 413 and "2000 bytes" in big.json()["detail"]
    assert requests.post(f"{gateway}/upload", files={"file": ("a.txt", b"x" * 2000)}).status_code == 201

