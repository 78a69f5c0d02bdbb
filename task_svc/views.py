"""Saved views: a member's named task-list filter (any filter and sort
``GET /orgs/{org}/tasks`` takes), private, or shared with the organization or
one team; ``GET /orgs/{org}/tasks?view=<view_id>`` applies one.

One module, in the service's layers (docs/developing.md), kept apart from the
task files other work changes: the rules (who sees and who changes a view, how a
view and explicit query parameters combine), the wire shapes, the queries, and
the entrypoints ``TaskService`` takes in as a mixin.

A view's filter is validated with the list route's own schema
(``schemas.ListArgsSchema``) when it is saved, and again with the explicit
parameters when it is applied: one schema for both."""
from __future__ import annotations

from bson import ObjectId
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates, validates_schema
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from shared import examples as ex
from shared.errors import Conflict, Forbidden, NotFound
from shared.mongo import utcnow
from shared.pagination import PageArgsSchema, decode_cursor, page, page_schema
from shared.permissions import role_allows
from shared.rpc import rpc
from shared.tenancy import require_member
from task_svc import schemas

VISIBILITIES = ("private", "team", "org")
PAGE_KEYS = ("limit", "cursor")  # how a list is paged is the request's, never the view's
VIEW_ID = "6650a1f2c3d4e5f6a7b8c9d0"
VIEW_FILTER = {"status": "todo", "labels": ["release"], "sort": "due"}


# --- rules ---------------------------------------------------------------------
def can_see(view: dict, user_id: str, membership: dict) -> bool:
    """Its owner sees a view; an org view every member; a team view that team's members."""
    if view.get("owner_user_id") == user_id or view.get("visibility") == "org":
        return True
    return view.get("visibility") == "team" and view.get("team_id") in (membership.get("teams") or {})


def can_change(view: dict, user_id: str, membership: dict) -> bool:
    """Its owner changes or deletes a view; managers and up also a shared one."""
    if view.get("owner_user_id") == user_id:
        return True
    return view.get("visibility") != "private" and role_allows(membership["role"], "task.update_any")


def require_share(membership: dict, visibility: str, team_id: str | None) -> None:
    """Sharing with a team: a member of it, or a manager and up (any team)."""
    if visibility == "team" and team_id not in (membership.get("teams") or {}) \
            and not role_allows(membership["role"], "task.assign_any"):
        raise Forbidden("You may share a view only with a team you are in.")


def applied_args(view_filter: dict, explicit: dict) -> dict:
    """The list arguments of a request naming a view: the view's filter, with each
    parameter the request gives explicitly in place of the view's (``limit`` and
    ``cursor`` always the request's)."""
    return {**view_filter, **{k: v for k, v in explicit.items() if k != "view"}}


def team_ids(membership: dict) -> list[str]:
    return sorted(membership.get("teams") or {})


# --- wire shapes ------------------------------------------------------------------
def load_filter(raw: object) -> dict:
    """A view's filter as stored: what ``ListArgsSchema`` accepts (paging aside),
    in its wire form (labels a list, dates ISO 8601). ValidationError otherwise."""
    if not isinstance(raw, dict):
        raise ValidationError("An object of list parameters.")
    paging = [k for k in (*PAGE_KEYS, "view") if k in raw]
    if paging:
        raise ValidationError({k: ["Not part of a view: a request pages itself."] for k in paging})
    loaded = schemas.ListArgsSchema().load(raw)
    return schemas.ListArgsSchema(only=[k for k in raw]).dump(loaded) if raw else {}


class ViewSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100),
                         metadata={"example": "My open release work"})
    filter = fields.Dict(load_default=dict, metadata={
        "example": VIEW_FILTER,
        "description": "any query parameter of GET /orgs/{org_id}/tasks but limit and cursor "
                       "(labels as a list or comma-separated)"})
    visibility = fields.String(load_default="private", validate=validate.OneOf(VISIBILITIES),
                               metadata={"example": "team", "description": "private (you), "
                                         "team (its members) or org (every member)"})
    team_id = fields.String(load_default=None, allow_none=True, validate=schemas.ID,
                            metadata={"example": ex.TEAM_ID, "description": "with visibility team"})

    @validates("filter")
    def _filter(self, value: dict, **_) -> None:
        load_filter(value)

    @validates_schema
    def _team(self, data: dict, partial=None, **_) -> None:
        if partial:
            return  # an update: checked on the view as it would become
        check_team_field(data)

    @post_load
    def _normal(self, data: dict, **_) -> dict:
        if "filter" in data:
            data["filter"] = load_filter(data["filter"])
        return data


def check_team_field(data: dict) -> None:
    if data.get("visibility") == "team" and not data.get("team_id"):
        raise ValidationError({"team_id": ["A team view names its team."]})
    if data.get("visibility") != "team" and data.get("team_id"):
        raise ValidationError({"team_id": ["Only a team view names a team."]})


class ViewUpdateSchema(ViewSchema):
    """A change of a view: any of its fields (loaded with ``partial=True``)."""

    name = fields.String(validate=validate.Length(min=1, max=100),
                         metadata={"example": "Release work, due first"})


class ViewOutSchema(Schema):
    view_id = fields.String(metadata={"example": VIEW_ID})
    org_id = fields.String(metadata={"example": ex.ORG_ID})
    name = fields.String(metadata={"example": "My open release work"})
    filter = fields.Dict(metadata={"example": VIEW_FILTER})
    visibility = fields.String(metadata={"enum": list(VISIBILITIES), "example": "team"})
    team_id = fields.String(allow_none=True, metadata={"example": ex.TEAM_ID})
    owner_user_id = fields.String(metadata={"example": ex.USER_ID})
    created_at = fields.DateTime(metadata={"example": ex.CREATED_AT})
    updated_at = fields.DateTime(metadata={"example": ex.UPDATED_AT})


ViewPageSchema = page_schema("ViewPage", ViewOutSchema)


class TaskListQuerySchema(schemas.ListQuerySchema):
    """The org's task list in a URL: the filters, or a saved view and what overrides it."""
    view = fields.String(validate=schemas.ID, metadata={
        "example": VIEW_ID, "description": "a saved view's id: its filter and sort apply; a "
        "parameter given here as well replaces the view's (docs/tasks.md)"})


def dump_view(v: dict) -> dict:
    return {"view_id": v["_id"], "org_id": v["org_id"], "name": v["name"], "filter": v["filter"],
            "visibility": v["visibility"], "team_id": v.get("team_id"),
            "owner_user_id": v["owner_user_id"], "created_at": schemas.iso(v["created_at"]),
            "updated_at": schemas.iso(v["updated_at"])}


# --- queries (TaskStore takes these in) ----------------------------------------------
INDEXES = {"views": [
    IndexModel([("org_id", ASCENDING), ("_id", ASCENDING)], name="org_views"),
    # one name per owner and org: saving a second "Mine" is a 409, not a twin
    IndexModel([("org_id", ASCENDING), ("owner_user_id", ASCENDING), ("name", ASCENDING)],
               name="owner_name", unique=True),
]}


class ViewQueries:
    """The ``views`` collection (mixed into ``TaskStore``: ``self.db``)."""

    db: object

    def insert_view(self, doc: dict) -> dict:
        try:
            self.db.views.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("You have a view of that name already.") from None
        return doc

    def view(self, org_id: str, view_id: str) -> dict | None:
        return self.db.views.find_one({"_id": str(view_id), "org_id": org_id})

    def visible_views(self, org_id: str, user_id: str, teams: list[str], after: str | None,
                      n: int) -> list[dict]:
        query = {"org_id": org_id, "$or": [{"owner_user_id": user_id}, {"visibility": "org"},
                                           {"visibility": "team", "team_id": {"$in": teams}}]}
        if after:
            query["_id"] = {"$gt": after}
        return list(self.db.views.find(query).sort("_id", ASCENDING).limit(n))

    def update_view(self, org_id: str, view_id: str, changes: dict) -> dict | None:
        try:
            return self.db.views.find_one_and_update(
                {"_id": view_id, "org_id": org_id}, {"$set": {**changes, "updated_at": utcnow()}},
                return_document=True)
        except DuplicateKeyError:
            raise Conflict("You have a view of that name already.") from None

    def delete_view(self, org_id: str, view_id: str) -> bool:
        return self.db.views.delete_one({"_id": view_id, "org_id": org_id}).deleted_count == 1


# --- entrypoints (TaskService takes these in) -----------------------------------------
class ViewEntrypoints:
    """Saved views over RPC, ``(user_id, org_id, ...)`` like every org-scoped call."""

    @rpc
    def create_view(self, user_id: str, org_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        data = ViewSchema().load(body)
        self._check_team(me, org_id, data["visibility"], data["team_id"])
        at = utcnow()
        return dump_view(self.store.insert_view({
            "_id": str(ObjectId()), "org_id": org_id, "owner_user_id": user_id, "name": data["name"],
            "filter": data["filter"], "visibility": data["visibility"], "team_id": data["team_id"],
            "created_at": at, "updated_at": at}))

    @rpc
    def list_views(self, user_id: str, org_id: str, args: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        args = PageArgsSchema().load(args)
        docs = self.store.visible_views(org_id, user_id, team_ids(me), decode_cursor(args["cursor"]),
                                        args["limit"] + 1)
        return page(docs, args["limit"], dump_view)

    @rpc
    def get_view(self, user_id: str, org_id: str, view_id: str) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        return dump_view(self._visible_view(me, user_id, org_id, view_id))

    @rpc
    def update_view(self, user_id: str, org_id: str, view_id: str, body: dict) -> dict:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        view = self._changeable_view(me, user_id, org_id, view_id)
        changes = ViewUpdateSchema(partial=True).load(body)
        if "visibility" in changes and changes["visibility"] != "team" and "team_id" not in changes:
            changes["team_id"] = None
        check_team_field({**view, **changes})
        if "visibility" in changes or "team_id" in changes:
            merged = {**view, **changes}
            self._check_team(me, org_id, merged["visibility"], merged.get("team_id"))
        updated = self.store.update_view(org_id, view_id, changes) if changes else view
        if updated is None:
            raise NotFound("View not found.")  # deleted meanwhile
        return dump_view(updated)

    @rpc
    def delete_view(self, user_id: str, org_id: str, view_id: str) -> None:
        me = require_member(self.redis, self.employees, org_id, user_id, "task.read")
        self._changeable_view(me, user_id, org_id, view_id)
        self.store.delete_view(org_id, view_id)

    # --- what the list and the CSV export use ---------------------------------------
    def view_args(self, user_id: str, org_id: str, membership: dict, args: dict) -> dict:
        """The list arguments of a request: with ``view``, that view's filter under the
        explicit parameters (404 for a view the caller cannot see)."""
        if not args.get("view"):
            return {k: v for k, v in args.items() if k != "view"}
        view = self._visible_view(membership, user_id, org_id, args["view"])
        return applied_args(view["filter"], args)

    def _visible_view(self, membership: dict, user_id: str, org_id: str, view_id: str) -> dict:
        view = self.store.view(org_id, view_id)
        if view is None or not can_see(view, user_id, membership):
            raise NotFound("View not found.")
        return view

    def _changeable_view(self, membership: dict, user_id: str, org_id: str, view_id: str) -> dict:
        view = self._visible_view(membership, user_id, org_id, view_id)
        if not can_change(view, user_id, membership):
            raise Forbidden("Only its owner, or a manager for a shared view, may change a view.")
        return view

    def _check_team(self, membership: dict, org_id: str, visibility: str, team_id: str | None) -> None:
        require_share(membership, visibility, team_id)
        if visibility == "team":
            self.flows.body_team(org_id, team_id)  # 422 for a team the org does not have
