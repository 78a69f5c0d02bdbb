"""The flow of tests/e2e/test_typed_client.py, run in a process of its own with
the generated client on PYTHONPATH: ``python typed_client_flow.py <base url>``."""
import sys
import time
import uuid

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


def wait_until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def main(base: str) -> None:
    email = f"typed-{uuid.uuid4().hex[:8]}@example.com"
    tokens = register.sync(client=Client(base_url=base),
                           body=Register(email=email, password="plum-orbit-harbor-42", name="Typed"))
    assert isinstance(tokens, Tokens)
    api = AuthenticatedClient(base_url=base, token=tokens.access_token)
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
    print("flow ok")


if __name__ == "__main__":
    main(sys.argv[1])
