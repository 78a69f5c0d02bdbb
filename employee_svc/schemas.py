"""Wire shapes of the employees service (marshmallow)."""
from marshmallow import Schema, fields, validate

from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT
from shared.permissions import ORG_ROLES

ID = validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$", error="Not a valid id.")
STATUSES = ("active", "inactive")
ROLE = fields.String(validate=validate.OneOf(ORG_ROLES))


class EmployeeAddSchema(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    role = fields.String(load_default="member", validate=validate.OneOf(ORG_ROLES))
    job_title = fields.String(load_default="", validate=validate.Length(max=120))


class EmployeeUpdateSchema(Schema):
    role = fields.String(validate=validate.OneOf(ORG_ROLES))
    job_title = fields.String(validate=validate.Length(max=120))
    status = fields.String(validate=validate.OneOf(STATUSES))


class EmployeeQuerySchema(Schema):
    q = fields.String(validate=validate.Length(min=1, max=100))
    role = fields.String(validate=validate.OneOf(ORG_ROLES))
    status = fields.String(validate=validate.OneOf((*STATUSES, "removed")))
    team_id = fields.String(validate=ID)
    limit = fields.Integer(load_default=DEFAULT_LIMIT,
                           validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(validate=validate.Length(max=200))


class InvitationQuerySchema(Schema):
    limit = fields.Integer(load_default=DEFAULT_LIMIT,
                           validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(validate=validate.Length(max=200))


class TaskCountsSchema(Schema):
    open = fields.Integer()
    completed = fields.Integer()


class EmployeeSchema(Schema):
    employee_id = fields.String()
    org_id = fields.String()
    user_id = fields.String()
    email = fields.String()
    name = fields.String()
    role = fields.String()
    status = fields.String()
    job_title = fields.String()
    teams = fields.Dict(keys=fields.String(), values=fields.String())
    task_counts = fields.Nested(TaskCountsSchema)
    created_at = fields.String()
    removed_at = fields.String(allow_none=True)
    removed_by = fields.String(allow_none=True)


class EmployeePageSchema(Schema):
    items = fields.List(fields.Nested(EmployeeSchema))
    next_cursor = fields.String(allow_none=True)


class InvitationSchema(Schema):
    invitation_id = fields.String()
    org_id = fields.String()
    email = fields.String()
    role = fields.String()
    job_title = fields.String()
    status = fields.String()
    expires_at = fields.String()
    invited_by_user_id = fields.String()


class InvitationPageSchema(Schema):
    items = fields.List(fields.Nested(InvitationSchema))
    next_cursor = fields.String(allow_none=True)
