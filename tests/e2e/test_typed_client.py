"""The OpenAPI document generates a complete typed Python client (what a team
runs first: openapi-python-client) with no warnings, and a flow works through it
against the running mesh: register, the personal org, a team, a task assigned,
its status changed, its history and an attachment downloaded."""
import importlib
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import wait_until

PACKAGE = "workforce_mesh_api_client"


@pytest.fixture(scope="module")
def client_module(running_mesh, tmp_path_factory):
    out = tmp_path_factory.mktemp("client")
    spec = out / "openapi.json"
    spec.write_bytes(running_mesh.get("/openapi.json").content)
    generator = Path(sys.executable).with_name("openapi-python-client")
    result = subprocess.run([str(generator), "generate", "--path", str(spec), "--meta", "none",
                             "--output-path", str(out / PACKAGE)],
                            capture_output=True, text=True, timeout=120,
                            env={"PATH": f"{generator.parent}:/usr/bin:/bin"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output  # nothing dropped, nothing untyped
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_a_flow_through_the_generated_client(client_module, running_mesh):
    from workforce_mesh_api_client import AuthenticatedClient, Client
    from workforce_mesh_api_client.api.auth import register
    from workforce_mesh_api_client.api.orgs import list_employees, list_my_orgs
    from workforce_mesh_api_client.api.tasks import (
        add_task_attachment,
        change_task_status,
        create_task,
        download_task_attachment,
        task_history,
    )
    from workforce_mesh_api_client.api.teams import create_team, get_team
    from workforce_mesh_api_client.models import (
        AttachmentUpload,
        Register,
        Status,
        StatusStatus,
        TaskCreate,
        TaskOut,
        Team,
        TeamCreate,
        Tokens,
    )
    from workforce_mesh_api_client.types import File

    email = f"typed-{uuid.uuid4().hex[:8]}@example.com"
    tokens = register.sync(client=Client(base_url=running_mesh.base_url),
                           body=Register(email=email, password="plum-orbit-harbor-42", name="Typed"))
    assert isinstance(tokens, Tokens)
    api = AuthenticatedClient(base_url=running_mesh.base_url, token=tokens.access_token)
    orgs = wait_until(lambda: list_my_orgs.sync(client=api).items, timeout=15, what="personal org")
    org_id = orgs[0].org_id
    me = wait_until(lambda: list_employees.sync(org_id, client=api).items, timeout=15,
                    what="the owner's membership")[0]

    team = create_team.sync(org_id, client=api, body=TeamCreate(name="Typed team"))
    assert isinstance(team, Team)
    assert isinstance(get_team.sync(org_id, team.team_id, client=api), Team)

    task = create_task.sync(org_id, client=api, body=TaskCreate(
        title="Through the typed client", assignee_id=me.employee_id, team_id=team.team_id))
    assert isinstance(task, TaskOut) and task.status.value == "todo"
    moved = change_task_status.sync(org_id, task.task_id, client=api,
                                    body=Status(status=StatusStatus.IN_PROGRESS))
    assert isinstance(moved, TaskOut) and moved.status.value == "in_progress"
    history = task_history.sync(org_id, task.task_id, client=api)
    assert any(entry.field == "status" for entry in history.items)

    content = b"typed client bytes\n"
    upload = add_task_attachment.sync(org_id, task.task_id, client=api, body=AttachmentUpload(
        file=File(payload=content, file_name="note.txt", mime_type="text/plain")))
    downloaded = download_task_attachment.sync_detailed(org_id, task.task_id,
                                                        upload.attachment_id, client=api)
    assert downloaded.status_code == 200 and downloaded.content == content
