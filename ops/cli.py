"""Operator CLI: ``python -m ops.cli --help``.

Talks to the mesh the way an operator would: RPC over AMQP (nameko's
standalone proxy) and RabbitMQ's management API. Reads config.yaml with the
same environment substitution as ``nameko run``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import requests
import yaml

from shared.services import PACKAGES, SERVICES

ROOT = Path(__file__).resolve().parent.parent


def load_config(path: str) -> dict:
    from nameko.cli.main import setup_yaml_parser

    setup_yaml_parser()
    with open(path) as handle:
        return yaml.safe_load(handle)


def management(config: dict):
    """(base_url, auth, vhost) of the RabbitMQ management API."""
    import urllib.parse

    base = urllib.parse.urlsplit(config.get("RABBITMQ_MANAGEMENT_URL") or "http://guest:guest@127.0.0.1:15672")
    amqp = urllib.parse.urlsplit(config["AMQP_URI"].replace("pyamqp", "amqp", 1))
    vhost = urllib.parse.unquote(amqp.path[1:]) if amqp.path not in ("", "/") else "/"
    return (f"{base.scheme}://{base.hostname}:{base.port or 15672}",
            (base.username or "guest", base.password or "guest"), vhost)


def list_queues(config: dict) -> list[dict]:
    import urllib.parse

    url, auth, vhost = management(config)
    response = requests.get(f"{url}/api/queues/{urllib.parse.quote(vhost, safe='')}",
                            auth=auth, timeout=10)
    response.raise_for_status()
    return response.json()


def rpc_call(config: dict, service: str, method: str, *args, timeout: float = 5, **kwargs):
    from nameko.standalone.rpc import ServiceRpcProxy

    with ServiceRpcProxy(service, config, timeout=timeout) as proxy:
        return getattr(proxy, method)(*args, **kwargs)


@click.group()
@click.option("--config", "config_path", default=str(ROOT / "config.yaml"), show_default=True)
@click.pass_context
def cli(ctx, config_path):
    """Operate the workforce mesh."""
    ctx.obj = load_config(config_path)


@cli.command()
@click.option("--timeout", default=3.0, show_default=True)
@click.pass_obj
def health(config, timeout):
    """Health of every service (MongoDB, Redis, AMQP). Exit 1 if any is down."""
    down = []
    for service in SERVICES:
        try:
            report = rpc_call(config, service, "health", timeout=timeout)
            ok = report.get("ok")
            detail = ", ".join(f"{name} {'ok' if c['ok'] else 'DOWN'}"
                               + (f" {c['latency_ms']:.1f}ms" if c.get("latency_ms") is not None else "")
                               for name, c in report["checks"].items())
        except Exception as exc:  # an operator tool reports, it does not crash
            ok, detail = False, f"no answer ({type(exc).__name__})"
        click.echo(f"{service:<14} {'up' if ok else 'DOWN':<5} {detail}")
        if not ok:
            down.append(service)
    sys.exit(1 if down else 0)


@cli.command()
@click.option("--service", envvar="SERVICE_NAME", help="nameko name; default from $SERVICE (package)")
@click.option("--timeout", default=5.0)
@click.pass_obj
def ping(config, service, timeout):
    """Exit 0 if one service answers health (container health checks)."""
    import os

    service = service or PACKAGES.get(os.environ.get("SERVICE", ""), "")
    if not service:
        raise click.UsageError("which service? --service or $SERVICE")
    try:
        ok = rpc_call(config, service, "health", timeout=timeout).get("ok")
    except Exception:
        ok = False
    sys.exit(0 if ok else 1)


@cli.command()
@click.pass_obj
def queues(config):
    """Queue depths and consumers (RabbitMQ management API)."""
    rows = sorted(list_queues(config), key=lambda q: q["name"])
    click.echo(f"{'queue':<72} {'ready':>7} {'unacked':>8} {'consumers':>9}")
    for q in rows:
        click.echo(f"{q['name']:<72} {q.get('messages_ready', 0):>7} "
                   f"{q.get('messages_unacknowledged', 0):>8} {q.get('consumers', 0):>9}")


def dlq_handler_queues(config, service: str | None) -> list[str]:
    names = [q["name"][: -len(".dlq")] for q in list_queues(config) if q["name"].endswith(".dlq")]
    return [n for n in names if service is None or f"--{service}." in n]


@cli.group("dead-letters")
def dead_letters():
    """List, replay or purge events parked after their retries."""


@dead_letters.command("list")
@click.option("--service", help="only this service's handlers (nameko name)")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def dl_list(config, service, limit, as_json):
    from shared import deadletters
    from shared.events import event_queue_type

    found = deadletters.list_dead_letters(config["AMQP_URI"], dlq_handler_queues(config, service), limit,
                                          queue_type=event_queue_type(config))
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    for item in found:
        click.echo(f"{item['failed_at']}  {item['handler']}  {item['event_type']}  {item['event_id']}  "
                   f"attempts={item['attempts']}\n    {item['error']}")
    click.echo(f"{len(found)} dead letter(s)")


@dead_letters.command("replay")
@click.option("--service")
@click.option("--event-id", help="only this event")
@click.pass_obj
def dl_replay(config, service, event_id):
    from shared import deadletters
    from shared.events import event_queue_type

    moved = deadletters.replay_dead_letters(config["AMQP_URI"], dlq_handler_queues(config, service),
                                            event_id, queue_type=event_queue_type(config))
    click.echo(f"replayed {moved} message(s)")


@dead_letters.command("purge")
@click.option("--service")
@click.confirmation_option(prompt="Drop these dead letters for good?")
@click.pass_obj
def dl_purge(config, service):
    from shared import deadletters
    from shared.events import event_queue_type

    purged = deadletters.purge_dead_letters(config["AMQP_URI"], dlq_handler_queues(config, service),
                                            queue_type=event_queue_type(config))
    click.echo(f"purged {purged} message(s)")


@cli.command("create-admin")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.password_option()
@click.pass_obj
def create_admin(config, email, name, password):
    """Create an operator: a user (owner of their organization) with the operator
    flag that opens the web console's operator pages. An existing account keeps
    its password and gets the flag."""
    from shared.errors import AppError, Conflict

    try:
        result = rpc_call(config, "auth", "register",
                          {"email": email, "password": password, "name": name}, timeout=30)
        user = result["user"]
        click.echo(f"created {user['email']} (user {user['user_id']}); "
                   "their organization appears in a moment: GET /api/v1/orgs")
    except Conflict:
        click.echo(f"{email} has an account already")
    except AppError as exc:
        raise click.ClickException(f"{exc.detail} {json.dumps(exc.errors) if exc.errors else ''}") from None
    user = rpc_call(config, "auth", "set_operator", email, True)
    click.echo(f"{user['email']} is an operator")


@cli.command("set-plan")
@click.argument("org_id")
@click.argument("plan", type=click.Choice(["free", "pro", "enterprise"]))
@click.pass_obj
def set_plan(config, org_id, plan):
    """Move an organization to a plan (billing's decision: owners cannot)."""
    from shared.errors import AppError

    try:
        result = rpc_call(config, "organizations", "set_plan", org_id, plan, timeout=30)
    except AppError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"organization {org_id}: plan {result['plan']}, limits {json.dumps(result['limits'])}")


@cli.command("search-rebuild")
@click.argument("org_id", required=False)
@click.option("--timeout", default=3600.0, show_default=True, help="seconds to wait for it")
@click.pass_obj
def search_rebuild(config, org_id, timeout):
    """Re-index ORG_ID (default: every org) in the search service, from the owners
    (tasks, employees, teams) by RPC. Searches meanwhile see what is indexed so far."""
    from shared.errors import AppError

    try:
        result = rpc_call(config, "search", "rebuild", org_id, timeout=timeout)
    except AppError as exc:
        raise click.ClickException(exc.detail) from None
    counts = ", ".join(f"{n} {kind}s" for kind, n in result["indexed"].items())
    click.echo(f"search index of {org_id or 'every org'} rebuilt: {counts}")


@cli.command("verify-email")
@click.option("--email", required=True)
@click.pass_obj
def verify_email(config, email):
    """Mark an account's address verified (support, seeding): its pending invitations
    become memberships."""
    from shared.errors import AppError

    user = rpc_call(config, "auth", "find_user_by_email", email)
    if user is None:
        raise click.ClickException(f"no account with the email {email}")
    try:
        rpc_call(config, "auth", "confirm_email", user["user_id"], timeout=30)
    except AppError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"{user['email']} (user {user['user_id']}) is verified")


@cli.command()
@click.option("--api", envvar="PUBLIC_URL", default="http://127.0.0.1:8000", show_default=True)
@click.option("--employees", default=20, show_default=True)
@click.option("--teams", default=3, show_default=True)
@click.option("--tasks", default=50, show_default=True)
@click.option("--password", default="demo password 1234", show_default=True)
@click.pass_obj
def seed(config, api, employees, teams, tasks, password):
    """A demo organization with employees, teams and tasks, through the HTTP API (the
    enterprise plan and the employees' verified addresses by operator RPC)."""
    import random
    import time
    import uuid

    base = f"{api.rstrip('/')}/api/v1"
    session = requests.Session()
    tag = uuid.uuid4().hex[:6]

    def call(method, path, token=None, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = session.request(method, f"{base}{path}", headers=headers, timeout=30, **kwargs)
        if response.status_code >= 400:
            raise click.ClickException(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def register(name):
        email = f"{name.lower().replace(' ', '.')}.{tag}@demo.example"
        body = call("POST", "/auth/register", json={"email": email, "password": password, "name": name})
        rpc_call(config, "auth", "confirm_email", body["user"]["user_id"], timeout=30)
        return {"email": email, "token": body["access_token"]}

    owner = register("Demo Owner")
    deadline = time.monotonic() + 30
    while not (orgs := call("GET", "/orgs", owner["token"])["items"]):
        if time.monotonic() > deadline:
            raise click.ClickException("the owner's organization did not appear")
        time.sleep(0.2)
    org_id = orgs[0]["org_id"]
    rpc_call(config, "organizations", "set_plan", org_id, "enterprise", timeout=30)
    staff = []
    with click.progressbar(range(employees), label="employees") as bar:
        for i in bar:
            person = register(f"Employee {i + 1}")
            role = "manager" if i == 0 else "member"
            staff.append(call("POST", f"/orgs/{org_id}/employees", owner["token"],
                              json={"email": person["email"], "role": role, "job_title": "Demo"}))
    with click.progressbar(range(teams), label="teams") as bar:
        for i in bar:
            team = call("POST", f"/orgs/{org_id}/teams", owner["token"], json={"name": f"Team {i + 1}"})
            for member in staff[i::teams]:
                call("POST", f"/orgs/{org_id}/teams/{team['team_id']}/members", owner["token"],
                     json={"employee_id": member["employee_id"], "role": "member"})
    with click.progressbar(range(tasks), label="tasks") as bar:
        for i in bar:
            call("POST", f"/orgs/{org_id}/tasks", owner["token"], json={
                "title": f"Demo task {i + 1}", "priority": random.choice(["low", "medium", "high"]),
                "assignee_id": random.choice(staff)["employee_id"] if staff else None})
    click.echo(f"organization {org_id}: {employees} employees, {teams} teams, {tasks} tasks; "
               f"owner {owner['email']} / {password}")


@cli.command("rotate-key")
@click.pass_obj
def rotate_key(config):
    """Add a new signing key; the previous one keeps verifying until its tokens expire.

    Keys in JWT_KEYS_DIR (local runs; with JWT_PRIVATE_KEYS, rotate by putting the new
    PEM first there). Restart auth afterwards so it signs with the new key."""
    from pathlib import Path as _Path

    from auth_svc.keys import generate_keys, load_keyring, publish_jwks
    from shared.redis import make_client

    if config.get("JWT_PRIVATE_KEYS"):
        raise click.ClickException("keys come from JWT_PRIVATE_KEYS: put the new PEM first there")
    directory = _Path(config.get("JWT_KEYS_DIR") or "var/keys")
    current = sorted(directory.glob("*.pem"))
    for old in current[1:]:  # keep two: the new signer and the one it replaces
        old.unlink()
    if current:
        current[0].rename(directory / f"z-previous-{current[0].name.removeprefix('z-previous-')}")
    generate_keys(directory, count=1)  # its name sorts first: it signs
    ring = load_keyring(config)
    client = make_client(config)
    try:
        publish_jwks(client, ring)  # gateways accept the new key before auth uses it
    finally:
        client.close()
    click.echo(f"signing key {ring.signing.kid}; verifying {', '.join(k.kid for k in ring.keys)}. "
               "Restart the auth service to sign with it.")


@cli.command("audit-verify")
@click.argument("org_id", required=False)
@click.option("--no-org", is_flag=True, help="the chain of events without an org (sign-ins, ...)")
@click.option("--timeout", default=120.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def audit_verify(config, org_id, no_org, timeout, as_json):
    """Check an org's audit hash chain; exit 1 at the first break, naming it."""
    if bool(org_id) == no_org:
        raise click.UsageError("give an ORG_ID or --no-org")
    result = rpc_call(config, "audit", "verify_chain", None if no_org else org_id, timeout=timeout)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    elif result["ok"]:
        span = (f"records {result['first_seq']}..{result['last_seq']}" if result["checked"]
                else "no records")
        click.echo(f"audit chain of {result['org_id'] or '(no org)'}: ok, {span}"
                   f"{' (older ones swept by retention)' if result['anchored'] else ''}; "
                   f"head {result['head_hash'] or '-'}")
    else:
        found = result["break"]
        click.echo(f"audit chain of {result['org_id'] or '(no org)'}: BROKEN at seq {found['seq']} "
                   f"({found['reason']}): {found['detail']}; record {found['record_id'] or '-'}, "
                   f"event {found['event_id'] or '-'}; {result['checked']} records before it are intact")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    cli()
