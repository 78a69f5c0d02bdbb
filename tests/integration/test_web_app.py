"""The web console's Flask app with its test client, against the real Redis; the
gateway it would call is a closed port (what a person sees when the API is down)."""
import io
import re

import pytest
import redis

from ops import mesh
from tests.conftest import REDIS_URI
from web_svc.app import create_app


def make_app(**overrides):
    config = {"REDIS_URI": REDIS_URI, "AMQP_URI": "pyamqp://guest:guest@127.0.0.1:1",
              "GATEWAY_URL": f"http://127.0.0.1:{mesh.free_port()}",  # nothing listens
              "PUBLIC_URL": "http://127.0.0.1:8080", "WEB_SECRET_KEY": "test-secret", **overrides}
    return create_app(config)


@pytest.fixture
def client():
    return make_app().test_client()


def csrf_of(page: bytes) -> str:
    return re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()


def test_the_session_cookie_is_an_id_only_httponly_lax_and_secure_behind_https():
    plain = make_app().test_client().get("/login").headers["Set-Cookie"]
    assert "HttpOnly" in plain and "SameSite=Lax" in plain and "Secure" not in plain
    sid = re.match(r"wf_session=([^;]+)", plain).group(1)
    assert redis.Redis.from_url(REDIS_URI).exists(f"web:session:{sid}")  # the data is server side
    secure = make_app(PUBLIC_URL="https://work.example").test_client().get("/login").headers["Set-Cookie"]
    assert "Secure" in secure


def test_a_form_posted_without_its_csrf_token_is_refused(client):
    response = client.post("/login", data={"email": "a@example.com", "password": "x" * 12})
    assert response.status_code == 400
    assert b"did not come from this site" in response.data


def test_with_its_token_the_form_goes_through_and_an_api_outage_is_a_503_page(client):
    token = csrf_of(client.get("/login").data)
    response = client.post("/login", data={"email": "a@example.com", "password": "x" * 12,
                                           "csrf_token": token})
    assert response.status_code == 503
    assert b"not reachable" in response.data


def test_an_emailed_token_leaves_the_url_at_once_and_never_goes_in_a_referer(client):
    response = client.get("/reset-password?token=secret-reset-token")
    assert response.status_code == 302 and response.headers["Location"] == "/reset-password"
    page = client.get("/reset-password")
    assert page.status_code == 200 and b"At least 10 characters." in page.data
    assert b"secret-reset-token" not in page.data
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_a_link_without_its_token_answers_a_clear_page(client):
    for path, what in [("/verify-email", b"verification"), ("/reset-password", b"password reset"),
                       ("/invitation", b"invitation")]:
        response = client.get(path)
        assert response.status_code == 400
        assert b"This " + what + b" link does not work" in response.data


def test_signed_out_people_are_sent_to_sign_in_from_every_private_page(client):
    for path in ("/ops/", "/ops/queues", "/account", "/notifications", "/orgs/o1/tasks"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path
    assert client.get("/live").status_code == 401


def test_health(client):
    assert client.get("/healthz").json == {"ok": True}


def test_the_new_pages_send_signed_out_people_to_sign_in(client):
    for path in ("/orgs/o1/teams", "/orgs/o1/teams/t1", "/orgs/o1/settings", "/orgs/o1/tasks/t1",
                 "/orgs/o1/tasks/t1/attachments/a1", "/ops/events", "/ops/jobs"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path


def test_the_push_service_worker_is_served_from_the_root_and_posts_need_csrf(client):
    worker = client.get("/sw.js")
    assert worker.status_code == 200 and b'addEventListener("push"' in worker.data
    assert worker.headers["Cache-Control"] == "no-cache"  # a new version is picked up at once
    for path in ("/notifications/push", "/notifications/n1/delete", "/orgs/o1/teams",
                 "/orgs/o1/transfer-ownership", "/orgs/o1/tasks/t1/attachments"):
        response = client.post(path, json={"endpoint": "https://push.example/x"})
        assert response.status_code == 400, path  # no CSRF token: refused before anything runs


def test_a_service_that_does_not_answer_an_operator_rpc_is_a_503_naming_it():
    from web_svc.gateway import ApiError
    from web_svc.ops import Ops

    ops = Ops({"AMQP_URI": "pyamqp://guest:guest@127.0.0.1:1//"}, timeout=0.5)  # no broker there
    with pytest.raises(ApiError) as refused:
        ops.rpc("notifications", "dead_letters")
    assert refused.value.status == 503 and "notifications did not answer" in refused.value.detail
    with pytest.raises(ValueError):
        ops.rpc("auth", "set_operator", "u1", True)  # not among its calls: refused here at once


def test_the_task_list_offers_saved_views_a_save_form_and_an_export_link(monkeypatch):
    """The page's view picker, "Save view" and export link, over a stand-in for the API
    (the API's side of views is tests/integration/test_task_views_csv.py)."""
    from web_svc import auth

    calls = []
    view = {"view_id": "v1", "name": "Release work", "visibility": "org",
            "filter": {"labels": ["release", "docs"], "overdue": True, "status": "done"}}

    def api(method, path, **kwargs):
        calls.append((method, path, kwargs.get("params"), kwargs.get("json")))
        if path.endswith("/tasks/views") and method == "POST":
            return {**view, "view_id": "v2"}
        if path.endswith("/tasks/views"):
            return {"items": [view], "next_cursor": None}
        if path == "/orgs/o1":
            return {"org_id": "o1", "name": "Org"}
        return {"items": [], "next_cursor": None}

    monkeypatch.setattr(auth, "api", api)
    monkeypatch.setattr(auth, "signed_in", lambda: True)
    monkeypatch.setattr(auth, "current_user", lambda: {"user_id": "u1", "email": "a@example.com"})
    client = make_app().test_client()
    page = client.get("/orgs/o1/tasks?status=todo&view=v1&cursor=c1")
    assert page.status_code == 200, page.data
    assert ("GET", "/orgs/o1/tasks", {"status": "todo", "view": "v1", "cursor": "c1"}, None) in calls
    assert b'<option value="v1" selected>Release work (org)</option>' in page.data
    assert b'href="/orgs/o1/tasks.csv?status=todo&amp;view=v1"' in page.data  # no cursor
    # "Save view" carries the list as shown: the picked view's filter under the URL's
    assert b'<input type="hidden" name="labels" value="release,docs">' in page.data
    assert b'<input type="hidden" name="overdue" value="true">' in page.data
    assert b'<input type="hidden" name="status" value="todo">' in page.data
    saved = client.post("/orgs/o1/tasks/views", data={
        "name": "Todo", "visibility": "private", "status": "todo", "labels": "docs",
        "csrf_token": csrf_of(page.data)})
    assert saved.status_code == 302 and saved.headers["Location"].endswith("/orgs/o1/tasks?view=v2")
    assert calls[-1] == ("POST", "/orgs/o1/tasks/views", None, {
        "name": "Todo", "visibility": "private", "filter": {"status": "todo", "labels": "docs"}})


def test_the_bulk_page_checks_a_csv_import_and_a_real_one_goes_to_its_job(monkeypatch):
    """The import form over a stand-in for the API (its side: test_task_views_csv.py)."""
    from web_svc import auth

    calls = []

    def api(method, path, **kwargs):
        files = kwargs.get("files")
        calls.append((method, path, kwargs.get("params"), files and files["file"][0]))
        if path.endswith("/tasks/import"):
            files["file"][1].read()
            if kwargs.get("params"):
                return {"dry_run": True, "rows": 2, "would_create": 1, "failed": 1,
                        "errors": [{"row": 3, "error": "priority: Not valid.", "fields": {}}]}
            return {"job_id": "j1", "status": "running"}
        return {"items": [], "next_cursor": None}

    monkeypatch.setattr(auth, "api", api)
    monkeypatch.setattr(auth, "signed_in", lambda: True)
    monkeypatch.setattr(auth, "current_user", lambda: {"user_id": "u1", "email": "a@example.com"})
    client = make_app().test_client()
    token = csrf_of(client.get("/orgs/o1/tasks/bulk").data)
    checked = client.post("/orgs/o1/tasks/import", content_type="multipart/form-data", data={
        "csrf_token": token, "dry_run": "true", "file": (io.BytesIO(b"title\r\nx\r\n"), "t.csv")})
    assert checked.status_code == 200
    assert b"2 rows: 1 would be created, 1 refused." in checked.data
    assert b"line 3: priority: Not valid." in checked.data
    assert [c for c in calls if c[0] == "POST"] == [
        ("POST", "/orgs/o1/tasks/import", {"dry_run": "true"}, "t.csv")]
    started = client.post("/orgs/o1/tasks/import", content_type="multipart/form-data", data={
        "csrf_token": token, "file": (io.BytesIO(b"title\r\nx\r\n"), "t.csv")})
    assert started.status_code == 302 and started.headers["Location"].endswith("/orgs/o1/tasks/bulk/j1")
    assert calls[-1] == ("POST", "/orgs/o1/tasks/import", None, "t.csv")
    missing = client.post("/orgs/o1/tasks/import", data={"csrf_token": token})
    assert missing.status_code == 422 and b"Choose a CSV file." in missing.data
