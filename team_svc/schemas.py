"""Wire shapes of the teams service (marshmallow): what comes in (validated
here, in the service), what goes out (``TeamSchema`` dumps; the gateway's
OpenAPI document names these too), and what other services are handed."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from shared import examples as ex
from shared.pagination import PageArgsSchema, page_schema

ID = validate.Length(min=1, max=64)
TEAM_SETTINGS_EXAMPLE = {"standup_time": "09:30", "board_url": "https://example.com/boards/platform"}
PERMISSIONS_EXAMPLE = {ex.OTHER_EMPLOYEE_ID: ["task.assign_team"]}


class TeamCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120),
                         metadata={"example": "Platform"})
    description = fields.String(load_default="", validate=validate.Length(max=2000),
                                metadata={"example": "Owns the build and deploy pipeline."})
    settings = fields.Dict(keys=fields.String(validate=validate.Regexp(r"^[A-Za-z_][\w-]{0,63}$")),
                           values=fields.Raw(allow_none=True), load_default=dict,
                           metadata={"example": TEAM_SETTINGS_EXAMPLE})


class TeamUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=120),
                         metadata={"example": "Platform engineering"})
    description = fields.String(validate=validate.Length(max=2000),
                                metadata={"example": "Owns the build, deploy and observability."})
    settings = fields.Dict(keys=fields.String(validate=validate.Regexp(r"^[A-Za-z_][\w-]{0,63}$")),
                           values=fields.Raw(allow_none=True),
                           metadata={"example": {"standup_time": "10:00"}})


class MemberAddSchema(Schema):
    employee_id = fields.String(required=True, validate=ID, metadata={"example": ex.OTHER_EMPLOYEE_ID})
    role = fields.String(load_default="member", validate=validate.OneOf(("leader", "member")),
                         metadata={"example": "member"})


class LeaderSchema(Schema):
    employee_id = fields.String(required=True, validate=ID, metadata={
        "example": ex.EMPLOYEE_ID, "description": "already a member of the team"})


class PermissionsSchema(Schema):
    """``{employee_id: [permission, ...]}``: what each member is granted in the team."""
    permissions = fields.Dict(keys=fields.String(validate=ID),
                              values=fields.List(fields.String(validate=validate.Length(max=64)),
                                                 validate=validate.Length(max=20)),
                              required=True,
                              metadata={"example": PERMISSIONS_EXAMPLE})


class ListArgsSchema(PageArgsSchema):
    employee_id = fields.String(validate=ID, metadata={"description": "only the teams of this employee"})


class MemberSchema(Schema):
    employee_id = fields.String(metadata={"example": ex.OTHER_EMPLOYEE_ID})
    user_id = fields.String(allow_none=True, metadata={"example": ex.OTHER_USER_ID})
    name = fields.String(allow_none=True, metadata={"example": ex.OTHER_NAME})
    role = fields.String(metadata={"enum": ["leader", "member"], "example": "member"})
    added_at = fields.DateTime(metadata={"example": ex.UPDATED_AT})


class TeamSchema(Schema):
    class Meta:
        # the members list shows the leader and a member, not one generic member
        example = {
            "team_id": ex.TEAM_ID, "org_id": ex.ORG_ID, "name": "Platform",
            "description": "Owns the build and deploy pipeline.",
            "settings": TEAM_SETTINGS_EXAMPLE, "leader_id": ex.EMPLOYEE_ID,
            "members": [{"employee_id": ex.EMPLOYEE_ID, "user_id": ex.USER_ID, "name": ex.NAME,
                         "role": "leader", "added_at": ex.CREATED_AT},
                        {"employee_id": ex.OTHER_EMPLOYEE_ID, "user_id": ex.OTHER_USER_ID,
                         "name": ex.OTHER_NAME, "role": "member", "added_at": ex.UPDATED_AT}],
            "permissions": PERMISSIONS_EXAMPLE, "created_at": ex.CREATED_AT,
            "updated_at": ex.UPDATED_AT, "version": 3}

    team_id = fields.String(attribute="_id", metadata={"example": ex.TEAM_ID})
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    name = fields.String(metadata={"example": "Platform"})
    description = fields.String(metadata={"example": "Owns the build and deploy pipeline."})
    settings = fields.Dict(metadata={"example": TEAM_SETTINGS_EXAMPLE})
    leader_id = fields.String(allow_none=True, metadata={"example": ex.EMPLOYEE_ID})
    members = fields.List(fields.Nested(MemberSchema))
    permissions = fields.Dict(metadata={"example": PERMISSIONS_EXAMPLE,
                                        "description": "employee id -> granted permissions"})
    created_at = fields.DateTime(metadata={"example": ex.CREATED_AT})
    updated_at = fields.DateTime(metadata={"example": ex.UPDATED_AT})
    version = fields.Integer(metadata={"description": "bumped by every change; the ETag "
                                                      "derives from it", "example": 3})


TeamPageSchema = page_schema("TeamPage", TeamSchema)


class TeamGrantsSchema(Schema):
    """What ``get_permissions``/``set_permissions`` answer: the grants and what may be granted."""
    team_id = fields.String(metadata={"example": ex.TEAM_ID})
    grantable = fields.List(fields.String(), metadata={
        "example": ["task.assign_team", "task.update_team", "team.manage_members"]})
    permissions = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                              metadata={"example": PERMISSIONS_EXAMPLE})


def dump_team(team: dict) -> dict:
    # a team written before versions existed is at version 0 (shared.versions)
    return TeamSchema().dump({**team, "version": team.get("version") or 0})


def dump_grants(team_id: str, permissions: dict, grantable) -> dict:
    """TeamGrantsSchema: a team's grants and what may be granted."""
    return {"team_id": team_id, "grantable": sorted(grantable), "permissions": permissions}


def brief(team: dict) -> dict:
    """What the tasks service needs for its rules: leadership, members, grants."""
    return {"team_id": team["_id"], "org_id": team["org_id"], "name": team["name"],
            "leader_id": team.get("leader_id"),
            "leader_user_id": next((m.get("user_id") for m in team.get("members", [])
                                    if m["employee_id"] == team.get("leader_id")), None),
            "member_ids": list(team.get("member_ids", [])),
            "permissions": dict(team.get("permissions") or {})}


def search_document(team: dict) -> dict:
    """A team as the search service indexes it."""
    return {"team_id": team["_id"], "org_id": team["org_id"], "name": team["name"],
            "description": team.get("description", ""),
            "member_count": len(team.get("member_ids", []))}
