"""Wire shapes of the employees service (marshmallow)."""
from marshmallow import Schema, fields, validate

from shared import csvtext
from shared import examples as ex
from shared.pagination import PageArgsSchema, page_schema
from shared.permissions import ORG_ROLES

ID = validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$", error="Not a valid id.")
STATUSES = ("active", "inactive")


JOB_TITLE = "Backend engineer"


class EmployeeAddSchema(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254),
                         metadata={"example": ex.OTHER_EMAIL})
    role = fields.String(load_default="member", validate=validate.OneOf(ORG_ROLES),
                         metadata={"example": "member"})
    job_title = fields.String(load_default="", validate=validate.Length(max=120),
                              metadata={"example": JOB_TITLE})


class EmployeeUpdateSchema(Schema):
    role = fields.String(validate=validate.OneOf(ORG_ROLES), metadata={"example": "manager"})
    job_title = fields.String(validate=validate.Length(max=120),
                              metadata={"example": "Engineering manager"})
    status = fields.String(validate=validate.OneOf(STATUSES), metadata={"example": "active"})


class EmployeeQuerySchema(PageArgsSchema):
    q = fields.String(validate=validate.Length(min=1, max=100))
    role = fields.String(validate=validate.OneOf(ORG_ROLES))
    status = fields.String(validate=validate.OneOf((*STATUSES, "removed")))
    team_id = fields.String(validate=ID)


class InvitationQuerySchema(PageArgsSchema):
    pass


class TaskCountsSchema(Schema):
    open = fields.Integer(metadata={"example": 4})
    completed = fields.Integer(metadata={"example": 17})


class EmployeeSchema(Schema):
    employee_id = fields.String(metadata={"example": ex.OTHER_EMPLOYEE_ID})
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    user_id = fields.String(metadata={"example": ex.OTHER_USER_ID})
    email = fields.String(metadata={"example": ex.OTHER_EMAIL})
    name = fields.String(metadata={"example": ex.OTHER_NAME})
    role = fields.String(metadata={"enum": list(ORG_ROLES), "example": "member"})
    status = fields.String(metadata={"enum": [*STATUSES, "removed"], "example": "active"})
    job_title = fields.String(metadata={"example": JOB_TITLE})
    teams = fields.Dict(keys=fields.String(), values=fields.String(), metadata={
        "example": {ex.TEAM_ID: "member"}, "description": "team id -> role in the team"})
    task_counts = fields.Nested(TaskCountsSchema)
    created_at = fields.String(metadata={"example": ex.CREATED_AT})
    removed_at = fields.String(allow_none=True, metadata={"example": None})
    removed_by = fields.String(allow_none=True, metadata={"example": None})
    version = fields.Integer(metadata={"description": "bumped by every change (task counts "
                                                      "included); the ETag derives from it",
                                       "example": 3})


EmployeePageSchema = page_schema("EmployeePage", EmployeeSchema)


class InvitationSchema(Schema):
    invitation_id = fields.String(metadata={"example": ex.INVITATION_ID})
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    email = fields.String(metadata={"example": ex.INVITEE_EMAIL})
    role = fields.String(metadata={"enum": list(ORG_ROLES), "example": "member"})
    job_title = fields.String(metadata={"example": JOB_TITLE})
    status = fields.String(metadata={"example": "pending"})
    expires_at = fields.String(metadata={"example": ex.EXPIRES_AT})
    invited_by_user_id = fields.String(metadata={"example": ex.USER_ID})
    org_name = fields.String(metadata={"example": "Acme"})


InvitationPageSchema = page_schema("InvitationPage", InvitationSchema)


# documents become answers here, and only here
def iso(value) -> str | None:
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else value


def dump_employee(doc: dict) -> dict:
    return {"employee_id": doc["_id"], "org_id": doc["org_id"], "user_id": doc["user_id"],
            "email": doc["email"], "name": doc.get("name", ""), "role": doc["role"],
            "status": doc["status"], "job_title": doc.get("job_title", ""),
            "teams": doc.get("teams") or {},
            "task_counts": doc.get("task_counts") or {"open": 0, "completed": 0},
            "created_at": iso(doc.get("created_at")), "removed_at": iso(doc.get("removed_at")),
            "removed_by": doc.get("removed_by"), "version": doc.get("version") or 0}


def dump_invitation(doc: dict) -> dict:
    return {"invitation_id": doc["_id"], "org_id": doc["org_id"], "email": doc["email"],
            "role": doc["role"], "job_title": doc.get("job_title", ""),
            "status": doc["status"], "expires_at": iso(doc["expires_at"]),
            "invited_by_user_id": doc.get("invited_by_user_id"),
            "org_name": doc.get("org_name", "")}


# --- the CSV export (GET /orgs/{org_id}/employees.csv) -------------------------------
CSV_COLUMNS = ("employee_id", "user_id", "name", "email", "role", "status", "job_title", "teams",
               "open_tasks", "completed_tasks", "created_at", "removed_at")
MAX_EXPORT_ROWS = 100_000


def _csv_value(item: dict, column: str) -> object:
    if column == "teams":
        return ",".join(sorted(item.get("teams") or {}))
    if column in ("open_tasks", "completed_tasks"):
        return (item.get("task_counts") or {}).get(column.split("_")[0], 0)
    return item.get(column)


def csv_text(items: list[dict], header: bool = False) -> str:
    """Employees (answers of ``employee_out``) as CSV text (``shared.csvtext``: cells a
    spreadsheet would run as formulas are quoted), with the header line if asked."""
    return csvtext.csv_text(([_csv_value(item, c) for c in CSV_COLUMNS] for item in items),
                            header=CSV_COLUMNS if header else None)
