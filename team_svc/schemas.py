"""Wire shapes of the teams service (marshmallow): what comes in (validated
here, in the service), what goes out (``TeamSchema`` dumps; the gateway's
OpenAPI document names these too), and what other services are handed."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

ID = dict(validate=validate.Length(min=1, max=64))


class TeamCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120),
                         metadata={"example": "Platform"})
    description = fields.String(load_default="", validate=validate.Length(max=2000),
                                metadata={"example": "Owns the build and deploy pipeline."})
    settings = fields.Dict(keys=fields.String(validate=validate.Regexp(r"^[A-Za-z_][\w-]{0,63}$")),
                           values=fields.Raw(allow_none=True), load_default=dict)


class TeamUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=120))
    description = fields.String(validate=validate.Length(max=2000))
    settings = fields.Dict(keys=fields.String(validate=validate.Regexp(r"^[A-Za-z_][\w-]{0,63}$")),
                           values=fields.Raw(allow_none=True))


class MemberAddSchema(Schema):
    employee_id = fields.String(required=True, **ID, metadata={"example": "65f0c2a9e4b0a1d2c3f4e5a6"})
    role = fields.String(load_default="member", validate=validate.OneOf(("leader", "member")))


class LeaderSchema(Schema):
    employee_id = fields.String(required=True, **ID)


class PermissionsSchema(Schema):
    """``{employee_id: [permission, ...]}``: what each member is granted in the team."""
    permissions = fields.Dict(keys=fields.String(**ID),
                              values=fields.List(fields.String(validate=validate.Length(max=64)),
                                                 validate=validate.Length(max=20)),
                              required=True,
                              metadata={"example": {"65f0c2a9e4b0a1d2c3f4e5a6": ["task.assign_team"]}})


class ListArgsSchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None, validate=validate.Length(max=64))
    employee_id = fields.String(**ID, metadata={"description": "only the teams of this employee"})


class MemberSchema(Schema):
    employee_id = fields.String()
    user_id = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    role = fields.String()
    added_at = fields.DateTime()


class TeamSchema(Schema):
    team_id = fields.String(attribute="_id")
    org_id = fields.String()
    name = fields.String()
    description = fields.String()
    settings = fields.Dict()
    leader_id = fields.String(allow_none=True)
    members = fields.List(fields.Nested(MemberSchema))
    permissions = fields.Dict()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class TeamPageSchema(Schema):
    items = fields.List(fields.Nested(TeamSchema))
    next_cursor = fields.String(allow_none=True)


class TeamPermissionsSchema(Schema):
    """What ``get_permissions``/``set_permissions`` answer: the grants and what may be granted."""
    team_id = fields.String()
    grantable = fields.List(fields.String(), metadata={"example": ["task.assign_team"]})
    permissions = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))


def dump_team(team: dict) -> dict:
    return TeamSchema().dump(team)


def brief(team: dict) -> dict:
    """What the tasks service needs for its rules: leadership, members, grants."""
    return {"team_id": team["_id"], "org_id": team["org_id"], "name": team["name"],
            "leader_id": team.get("leader_id"),
            "leader_user_id": next((m.get("user_id") for m in team.get("members", [])
                                    if m["employee_id"] == team.get("leader_id")), None),
            "member_ids": list(team.get("member_ids", [])),
            "permissions": dict(team.get("permissions") or {})}
