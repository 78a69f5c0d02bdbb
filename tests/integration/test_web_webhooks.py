"""The console's webhook pages with its test client, over the real gateway,
auth and webhooks services and an HTTPS receiver on this machine: an admin
registers an endpoint (its secret shown once), sees its delivery, redelivers
it; refused values and forged posts change nothing; a member is refused."""
import re

import pytest

from tests.helpers import wait_until
from tests.integration.tasks_mesh import dispatch
from tests.integration.test_web_app import csrf_of
from tests.integration.test_web_tokens import signed_in_console
from tests.integration.test_webhooks import Receiver
from webhook_svc.service import WebhookService


@pytest.fixture
def receiver(tmp_path):
    running = Receiver(tmp_path)
    yield running
    running.stop()


def hooks_config(make_config, receiver):
    return make_config(OUTBOUND_ALLOWED_NETWORKS="127.0.0.1/32",
                       WEBHOOK_CA_BUNDLE=str(receiver.cert_path), WEBHOOK_TICK_SECONDS=0.1)


def test_an_admin_registers_an_endpoint_sees_its_delivery_and_redelivers_it(
        container_factory, make_config, receiver):
    config = hooks_config(make_config, receiver)
    client, api, org_id = signed_in_console(container_factory, config, (WebhookService,))
    page = client.get(f"/orgs/{org_id}/webhooks")
    assert page.status_code == 200 and b"No endpoints yet." in page.data
    csrf = csrf_of(page.data)
    url = f"{receiver.base}/ok"
    assert client.post(f"/orgs/{org_id}/webhooks", data={"url": url}).status_code == 400  # forged
    refused = client.post(f"/orgs/{org_id}/webhooks", data={
        "url": "http://example.com/hook", "event_types": "task.created", "csrf_token": csrf})
    assert refused.status_code == 422 and b'data-field="url"' in refused.data
    made = client.post(f"/orgs/{org_id}/webhooks", data={
        "url": url, "event_types": "task.created, task.completed", "description": "CRM",
        "csrf_token": csrf})
    assert made.status_code == 200
    secret = re.search(rb'<code id="webhook-secret">(whsec_[\w-]+)</code>', made.data).group(1)
    listed = client.get(f"/orgs/{org_id}/webhooks")
    assert secret not in listed.data and url.encode() in listed.data
    assert b"task.created, task.completed" in listed.data
    hook_path = re.search(rb'href="(/orgs/[^"]+/webhooks/\w+)"', listed.data).group(1).decode()

    dispatch(config, "tasks", "task.created", {"org_id": org_id, "task_id": "t-1"})
    wait_until(lambda: len(receiver.to("/ok")) == 1, timeout=10, what="the delivery")

    def delivered():
        shown = client.get(hook_path).data
        return shown if b'data-state="succeeded"' in shown else None

    shown = wait_until(delivered, timeout=10, what="the delivery in the log")
    assert b"task.created" in shown and b"200" in shown
    delivery_id = re.search(rb'data-delivery-id="(\w+)"', shown).group(1).decode()
    again = client.post(f"{hook_path}/deliveries/{delivery_id}/redeliver",
                        data={"csrf_token": csrf_of(shown)})
    assert again.status_code == 302
    assert b'id="redelivered"' in client.get(again.headers["Location"]).data
    wait_until(lambda: len(receiver.to("/ok")) == 2, timeout=10, what="the redelivery")

    rotated = client.post(f"{hook_path}/rotate-secret", data={"csrf_token": csrf_of(shown)})
    new_secret = re.search(rb'<code id="webhook-secret">(whsec_[\w-]+)</code>', rotated.data)
    assert rotated.status_code == 200 and new_secret and new_secret.group(1) != secret
    gone = client.post(f"{hook_path}/delete", data={"csrf_token": csrf_of(shown)})
    assert gone.status_code == 302
    assert b"No endpoints yet." in client.get(gone.headers["Location"]).data


def test_a_member_gets_the_403_page(container_factory, make_config, receiver):
    client, _, org_id = signed_in_console(container_factory, hooks_config(make_config, receiver),
                                          (WebhookService,), role="member")
    assert client.get(f"/orgs/{org_id}/webhooks").status_code == 403
