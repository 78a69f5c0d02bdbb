"""Every event of the mesh: producer, version and the schema of its ``data``.

The contract every producer and consumer follows; ``python -m ops.eventdoc``
prints docs/events.md from it (a test keeps that file, the producers'
``publish`` calls and the consumers' ``@handles`` in step with this module).
"""
from __future__ import annotations

from dataclasses import dataclass

from marshmallow import Schema, fields

Str, Bool, Int = fields.String, fields.Boolean, fields.Integer
Dict, List = fields.Dict, fields.List



@dataclass(frozen=True)
class EventSpec:
    name: str
    producer: str
    schema: type[Schema]
    description: str
    version: int = 1
    # no service of the mesh needs it: published for outside subscribers (audit, analytics,
    # search, webhooks, a data warehouse), documented as such in docs/events.md
    external: bool = False


def _schema(schema_name: str, **declared) -> type[Schema]:
    return Schema.from_dict(declared, name=schema_name)


def _req(field_cls, **kw):
    return field_cls(required=True, **kw)


def _opt(field_cls, **kw):
    return field_cls(allow_none=True, load_default=None, **kw)


_org_team = {"org_id": _req(Str), "team_id": _req(Str), "name": _opt(Str)}
_member = {"org_id": _req(Str), "team_id": _req(Str), "team_name": _opt(Str),
           "employee_id": _req(Str), "user_id": _opt(Str), "role": _opt(Str)}
_permission = {"org_id": _req(Str), "team_id": _req(Str), "employee_id": _req(Str),
               "permission": _req(Str)}
_notification = {"notification_id": _req(Str), "user_id": _req(Str), "channel": _opt(Str),
                 "kind": _opt(Str)}
_employee_change = {"org_id": _req(Str), "employee_id": _req(Str), "user_id": _opt(Str)}

CATALOGUE: list[EventSpec] = [
    EventSpec("user.registered", "auth", _schema(
        "UserRegistered", user_id=_req(Str), email=_req(Str), name=_req(Str),
        sealed_link=_req(Str)),
        "An account was created; carries the email-verification link, sealed "
        "(shared.sealed: only notifications opens it, to render the email)."),
    EventSpec("user.email.verified", "auth", _schema(
        "UserEmailVerified", user_id=_req(Str), email=_req(Str)), "A user proved their email."),
    EventSpec("user.email.verification.requested", "auth", _schema(
        "UserVerificationRequested", user_id=_req(Str), email=_req(Str), name=_opt(Str),
        sealed_link=_req(Str)),
        "A new verification link, sealed (re-send, or a changed email)."),
    EventSpec("user.login", "auth", _schema(
        "UserLogin", user_id=_req(Str), session_id=_req(Str), ip=_opt(Str), user_agent=_opt(Str)),
        "A session was started.", external=True),
    EventSpec("user.logout", "auth", _schema(
        "UserLogout", user_id=_req(Str), session_id=_req(Str)), "A session was ended.", external=True),
    EventSpec("user.password.reset", "auth", _schema(
        "UserPasswordReset", user_id=_req(Str), email=_req(Str), name=_opt(Str),
        sealed_link=_req(Str)),
        "A password reset was asked for; the reset link is sealed (shared.sealed)."),
    EventSpec("user.unlock.requested", "auth", _schema(
        "UserUnlockRequested", user_id=_req(Str), email=_req(Str), name=_opt(Str),
        sealed_link=_req(Str)),
        "Failed sign-ins locked the account; the emailed unlock link is sealed (shared.sealed)."),
    EventSpec("user.password.changed", "auth", _schema(
        "UserPasswordChanged", user_id=_req(Str), email=_req(Str), name=_opt(Str)),
        "A password was changed; every session was revoked."),
    EventSpec("user.updated", "auth", _schema(
        "UserUpdated", user_id=_req(Str), email=_req(Str), name=_opt(Str),
        email_verified=_opt(Bool)), "Profile fields changed."),
    EventSpec("user.deleted", "auth", _schema(
        "UserDeleted", user_id=_req(Str), email=_opt(Str)), "An account was (soft) deleted."),
    EventSpec("organization.created", "organizations", _schema(
        "OrganizationCreated", org_id=_req(Str), name=_req(Str), owner_user_id=_req(Str),
        owner_email=_opt(Str), owner_name=_opt(Str), personal=_opt(Bool)),
        "An organization exists; its owner becomes its first employee."),
    EventSpec("organization.updated", "organizations", _schema(
        "OrganizationUpdated", org_id=_req(Str), name=_opt(Str), changes=_opt(Dict)),
        "Organization fields changed.", external=True),
    EventSpec("organization.deleted", "organizations", _schema(
        "OrganizationDeleted", org_id=_req(Str)), "An organization was soft-deleted."),
    EventSpec("organization.owner.changed", "organizations", _schema(
        "OrganizationOwnerChanged", org_id=_req(Str), old_owner_user_id=_opt(Str),
        new_owner_user_id=_req(Str)), "Ownership was transferred."),
    EventSpec("organization.settings.updated", "organizations", _schema(
        "OrganizationSettingsUpdated", org_id=_req(Str), settings=_req(Dict)),
        "Organization settings changed."),
    EventSpec("employee.added", "employees", _schema(
        "EmployeeAdded", org_id=_req(Str), employee_id=_req(Str), user_id=_req(Str),
        email=_opt(Str), name=_opt(Str), role=_req(Str), job_title=_opt(Str), org_name=_opt(Str)),
        "A user became an employee of an organization."),
    EventSpec("employee.invited", "employees", _schema(
        "EmployeeInvited", org_id=_req(Str), invitation_id=_req(Str), email=_req(Str),
        role=_req(Str), sealed_link=_req(Str), invited_by_user_id=_opt(Str),
        org_name=_opt(Str)), "An email was invited; the accept link is sealed (shared.sealed)."),
    EventSpec("employee.invitation.expired", "employees", _schema(
        "EmployeeInvitationExpired", org_id=_req(Str), invitation_id=_req(Str), email=_req(Str),
        role=_opt(Str), expires_at=_opt(Str), invited_by_user_id=_opt(Str)),
        "A pending invitation passed its expiry unaccepted (the sweep, once per invitation).",
        external=True),
    EventSpec("employee.updated", "employees", _schema(
        "EmployeeUpdated", **_employee_change, changes=_opt(Dict)), "Employee fields changed.",
        external=True),
    EventSpec("employee.role.changed", "employees", _schema(
        "EmployeeRoleChanged", **_employee_change, old_role=_opt(Str), new_role=_req(Str)),
        "An employee's role changed."),
    EventSpec("employee.status.changed", "employees", _schema(
        "EmployeeStatusChanged", **_employee_change, old_status=_opt(Str), new_status=_req(Str)),
        "An employee became active or inactive."),
    EventSpec("employee.removed", "employees", _schema(
        "EmployeeRemoved", **_employee_change, email=_opt(Str), name=_opt(Str),
        org_name=_opt(Str), removed_by_user_id=_opt(Str)), "An employee was removed (soft)."),
    EventSpec("team.created", "teams", _schema("TeamCreated", **_org_team), "A team was created."),
    EventSpec("team.updated", "teams", _schema("TeamUpdated", **_org_team), "A team changed.", external=True),
    EventSpec("team.deleted", "teams", _schema("TeamDeleted", **_org_team), "A team was deleted."),
    EventSpec("team.member.added", "teams", _schema("TeamMemberAdded", **_member),
              "An employee joined a team."),
    EventSpec("team.member.removed", "teams", _schema("TeamMemberRemoved", **_member),
              "An employee left a team."),
    EventSpec("team.leader.changed", "teams", _schema(
        "TeamLeaderChanged", org_id=_req(Str), team_id=_req(Str), old_leader_id=_opt(Str),
        new_leader_id=_opt(Str)), "A team's leader changed (employee ids)."),
    EventSpec("team.permission.granted", "teams", _schema("TeamPermissionGranted", **_permission),
              "A team permission was granted to a member."),
    EventSpec("team.permission.revoked", "teams", _schema("TeamPermissionRevoked", **_permission),
              "A team permission was revoked."),
    EventSpec("task.created", "tasks", _schema(
        "TaskCreated", org_id=_req(Str), task_id=_req(Str), title=_req(Str),
        creator_user_id=_opt(Str), assignee_id=_opt(Str), team_id=_opt(Str), status=_opt(Str),
        priority=_opt(Str), due_at=_opt(Str)), "A task was created.", external=True),
    EventSpec("task.bulk.created", "tasks", _schema(
        "TaskBulkCreated", org_id=_req(Str), job_id=_req(Str), chunk=_opt(Int),
        assignee_ids=_req(List, cls_or_instance=Str()), task=_req(Dict)),
        "A chunk of a bulk job, for the tasks service's own workers."),
    EventSpec("task.import.created", "tasks", _schema(
        "TaskImportCreated", org_id=_req(Str), job_id=_req(Str), chunk=_req(Int),
        rows=_req(List, cls_or_instance=Dict()), creator_id=_opt(Str), creator_user_id=_req(Str)),
        "A chunk of a CSV import's checked rows (`[{row, task}]`), for the tasks service's own "
        "workers; each task it creates is announced as `task.created` (and `task.assigned`)."),
    EventSpec("task.assigned", "tasks", _schema(
        "TaskAssigned", org_id=_req(Str), task_id=_req(Str), title=_req(Str),
        assignee_id=_req(Str), assignee_user_id=_opt(Str), assigned_by_user_id=_opt(Str),
        due_at=_opt(Str), priority=_opt(Str), job_id=_opt(Str)),
        "A task got an assignee (bulk jobs announce theirs per chunk: `task.bulk.assigned`)."),
    EventSpec("task.bulk.assigned", "tasks", _schema(
        "TaskBulkAssigned", org_id=_req(Str), job_id=_req(Str), chunk=_req(Int), title=_req(Str),
        assigned_by_user_id=_opt(Str), due_at=_opt(Str), priority=_opt(Str), team_id=_opt(Str),
        tasks=_req(List, cls_or_instance=Dict())),
        "One chunk of a bulk job was created: `tasks` is `[{task_id, assignee_id, "
        "assignee_user_id}]`, the other fields are shared by every task of the job "
        "(instead of one `task.assigned` per task; event id `task.bulk.assigned:{job_id}:{chunk}`)."),
    EventSpec("task.reassigned", "tasks", _schema(
        "TaskReassigned", org_id=_req(Str), task_id=_req(Str), title=_opt(Str),
        old_assignee_id=_opt(Str), new_assignee_id=_opt(Str), new_assignee_user_id=_opt(Str),
        reason=_opt(Str)), "A task moved to another assignee (or to none)."),
    EventSpec("task.updated", "tasks", _schema(
        "TaskUpdated", org_id=_req(Str), task_id=_req(Str), changes=_opt(Dict)),
        "Task fields changed.", external=True),
    EventSpec("task.status.changed", "tasks", _schema(
        "TaskStatusChanged", org_id=_req(Str), task_id=_req(Str), title=_opt(Str),
        old_status=_opt(Str), new_status=_req(Str), assignee_id=_opt(Str),
        creator_user_id=_opt(Str), changed_by_user_id=_opt(Str),
        watcher_user_ids=_opt(List, cls_or_instance=Str())),
        "A task moved in its status machine; `watcher_user_ids`: who watches it (notified, "
        "save who made the change)."),
    EventSpec("task.completed", "tasks", _schema(
        "TaskCompleted", org_id=_req(Str), task_id=_req(Str), title=_opt(Str),
        assignee_id=_opt(Str), creator_user_id=_opt(Str), completed_by_user_id=_opt(Str)),
        "A task was done."),
    EventSpec("task.overdue", "tasks", _schema(
        "TaskOverdue", org_id=_req(Str), task_id=_req(Str), title=_opt(Str),
        assignee_id=_opt(Str), assignee_user_id=_opt(Str), due_at=_opt(Str)),
        "A task passed its due date without being done (published once)."),
    EventSpec("task.recurred", "tasks", _schema(
        "TaskRecurred", org_id=_req(Str), task_id=_req(Str), title=_opt(Str),
        previous_task_id=_req(Str), series_id=_req(Str), index=_req(Int), due_at=_opt(Str),
        rule=_opt(Str)),
        "The next occurrence of a recurring task was created (once per occurrence, "
        "after its task.created).", external=True),
    EventSpec("task.time.logged", "tasks", _schema(
        "TaskTimeLogged", org_id=_req(Str), task_id=_req(Str), title=_opt(Str),
        entry_id=_req(Str), employee_id=_opt(Str), user_id=_req(Str), team_id=_opt(Str),
        minutes=_req(Int), source=_req(Str)),
        "Minutes were logged on a task (by hand, or a stopped timer).", external=True),
    EventSpec("task.deleted", "tasks", _schema(
        "TaskDeleted", org_id=_req(Str), task_id=_req(Str), assignee_id=_opt(Str),
        status=_opt(Str)), "A task was deleted (soft)."),
    EventSpec("task.comment.added", "tasks", _schema(
        "TaskCommentAdded", org_id=_req(Str), task_id=_req(Str), title=_opt(Str),
        comment_id=_req(Str), author_user_id=_opt(Str), assignee_user_id=_opt(Str),
        watcher_user_ids=_opt(List, cls_or_instance=Str()), preview=_opt(Str),
        mentions=_opt(List, cls_or_instance=Str()),
        mentioned_user_ids=_opt(List, cls_or_instance=Str())),
        "A comment was added to a task; `mentions` (employee ids) and `mentioned_user_ids` are "
        "the active members of the org it @mentions; `watcher_user_ids` the task's watchers "
        "but the author (who unwatched it is not among them, the assignee included)."),
    EventSpec("task.link.added", "tasks", _schema(
        "TaskLinkAdded", org_id=_req(Str), task_id=_req(Str), title=_opt(Str), type=_req(Str),
        other_task_id=_req(Str)),
        "A dependency between two tasks of the org: `type` `blocks` (this task blocks "
        "`other_task_id`) or `blocked_by`.", external=True),
    EventSpec("task.link.removed", "tasks", _schema(
        "TaskLinkRemoved", org_id=_req(Str), task_id=_req(Str), title=_opt(Str), type=_req(Str),
        other_task_id=_req(Str)),
        "A dependency between two tasks was removed (`type` as the task saw it).", external=True),
    EventSpec("task.attachment.deleted", "tasks", _schema(
        "TaskAttachmentDeleted", org_id=_req(Str), task_id=_req(Str), title=_opt(Str),
        attachment_id=_req(Str), filename=_opt(Str), size=_opt(Int)),
        "An attachment was deleted (its bytes with it).", external=True),
    EventSpec("notification.sent", "notifications", _schema("NotificationSent", **_notification),
              "A notification was delivered on a channel.", external=True),
    EventSpec("notification.failed", "notifications", _schema("NotificationFailed", **_notification),
              "A delivery failed for good.", external=True),
    EventSpec("notification.read", "notifications", _schema("NotificationRead", **_notification),
              "An in-app notification was read.", external=True),
    EventSpec("notification.read.all", "notifications", _schema(
        "NotificationReadAll", user_id=_req(Str), count=_req(Int)),
        "Every unread in-app notification of a user was marked read at once.", external=True),
    EventSpec("notification.deleted", "notifications", _schema(
        "NotificationDeleted", **_notification), "An in-app notification was deleted.", external=True),
    EventSpec("webhook.endpoint.disabled", "webhooks", _schema(
        "WebhookEndpointDisabled", org_id=_req(Str), webhook_id=_req(Str), url=_req(Str),
        reason=_req(Str), created_by_user_id=_opt(Str)),
        "A webhook endpoint failed too often in a row and stopped receiving deliveries."),
]
BY_NAME = {spec.name: spec for spec in CATALOGUE}

