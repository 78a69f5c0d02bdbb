"""The teams service's MongoDB collections: indexes beside the queries.

A team is one document with its members embedded (a team has tens of
members, not thousands), ``member_ids`` beside them for the
"teams of an employee" look-up, and per-member permissions.
"""
from __future__ import annotations

from bson import ObjectId
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict, NotFound
from shared.mongo import BaseStore, find_by_id, find_by_ids, utcnow


def new_id() -> str:
    return str(ObjectId())  # time-ordered: lists page by _id


class TeamStore(BaseStore):
    INDEXES = {
        "teams": [
            # list_teams (org_id, _id > cursor) and the unique name per org
            IndexModel([("org_id", ASCENDING), ("_id", ASCENDING)], name="org_id"),
            IndexModel([("org_id", ASCENDING), ("name_key", ASCENDING)], unique=True,
                       name="org_name_unique"),
            # teams_of_employee and employee.removed
            IndexModel([("org_id", ASCENDING), ("member_ids", ASCENDING)], name="org_members"),
        ],
        # employees seen through employee.added (names and user ids for events)
        "directory": [IndexModel([("org_id", ASCENDING)], name="org")],
    }

    @property
    def teams(self):
        return self.db.teams

    def create_team(self, org_id: str, name: str, description: str, settings: dict,
                    actor: str) -> dict:
        doc: dict = {"_id": new_id(), "org_id": org_id, "name": name, "name_key": name.casefold(),
               "description": description, "settings": settings, "leader_id": None,
               "members": [], "member_ids": [], "permissions": {}, "created_by": actor,
               "created_at": utcnow(), "updated_at": utcnow(), "version": 1}
        try:
            self.teams.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"A team named {name!r} already exists in this organization.") from None
        return doc

    def count(self, org_id: str) -> int:
        return self.teams.count_documents({"org_id": org_id})

    def get(self, org_id: str, team_id: str) -> dict | None:
        return find_by_id(self.teams, team_id, org_id=org_id)

    def list_teams(self, org_id: str, limit: int, after: str | None) -> list[dict]:
        query: dict = {"org_id": org_id}
        if after:
            query["_id"] = {"$gt": after}
        return list(self.teams.find(query).sort("_id", ASCENDING).limit(limit))

    def teams_of_employee(self, org_id: str, employee_id: str) -> list[dict]:
        return list(self.teams.find({"org_id": org_id, "member_ids": employee_id})
                    .sort("_id", ASCENDING))

    def search_export(self, org_id: str | None, ids: list[str] | None, after: str | None,
                      limit: int) -> list[dict]:
        """Teams for the search service's index: those of ``ids`` (in ``org_id``), or a
        page in ``_id`` order (one org, or every org for a full rebuild)."""
        query: dict = {} if org_id is None else {"org_id": org_id}
        if ids is not None:
            return find_by_ids(self.teams, ids, **query)
        if after:
            query["_id"] = {"$gt": after}
        return list(self.teams.find(query).sort("_id", ASCENDING).limit(limit))

    def many(self, org_id: str, team_ids: list[str]) -> list[dict]:
        return find_by_ids(self.teams, team_ids, org_id=org_id)

    def update_team(self, org_id: str, team_id: str, changes: dict,
                    expect: dict | None = None) -> dict | None:
        """Every write bumps ``version`` (the ETag); ``expect`` (shared.versions) makes
        this one conditional on it."""
        if "name" in changes:
            changes = {**changes, "name_key": changes["name"].casefold()}
        try:
            return self.teams.find_one_and_update(
                {"_id": team_id, "org_id": org_id, **(expect or {})},
                {"$set": {**changes, "updated_at": utcnow()}, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            raise Conflict(f"A team named {changes['name']!r} already exists.") from None

    def delete_team(self, org_id: str, team_id: str, expect: dict | None = None) -> dict | None:
        return self.teams.find_one_and_delete({"_id": team_id, "org_id": org_id, **(expect or {})})

    def delete_org_teams(self, org_id: str) -> list[dict]:
        teams = list(self.teams.find({"org_id": org_id}, {"name": 1, "org_id": 1}))
        self.teams.delete_many({"org_id": org_id})
        return teams

    def add_member(self, org_id: str, team_id: str, member: dict) -> dict | None:
        """Adds unless already a member (None then): the condition makes a
        concurrent double add impossible."""
        update: dict = {"$push": {"members": member}, "$addToSet": {"member_ids": member["employee_id"]},
                        "$set": {"updated_at": utcnow()}, "$inc": {"version": 1}}
        if member["role"] == "leader":
            update["$set"]["leader_id"] = member["employee_id"]
        return self.teams.find_one_and_update(
            {"_id": team_id, "org_id": org_id, "member_ids": {"$ne": member["employee_id"]}},
            update, return_document=ReturnDocument.AFTER)

    def remove_member(self, org_id: str, team_id: str, employee_id: str) -> dict | None:
        """Removes and returns the team as it was, or None if not a member.
        The leader seat and the member's permissions go with them."""
        before = self.teams.find_one({"_id": team_id, "org_id": org_id, "member_ids": employee_id})
        if before is None:
            return None
        update: dict = {"$pull": {"members": {"employee_id": employee_id}, "member_ids": employee_id},
                        "$unset": {f"permissions.{employee_id}": ""}, "$set": {"updated_at": utcnow()},
                        "$inc": {"version": 1}}
        done = self.teams.update_one({"_id": team_id, "member_ids": employee_id}, update)
        if not done.modified_count:
            return None
        self.teams.update_one({"_id": team_id, "leader_id": employee_id},
                              {"$set": {"leader_id": None}})
        return before

    def set_leader(self, org_id: str, team_id: str, employee_id: str) -> tuple[str | None, dict]:
        """Make a member the leader (the old one stays a member); returns
        ``(old_leader_id, team)``. Callers hold the team's lock."""
        team = find_by_id(self.teams, team_id, org_id=org_id)
        if team is None:
            raise NotFound("Team not found.")
        members = [{**m, "role": "leader" if m["employee_id"] == employee_id else "member"}
                   for m in team["members"]]
        self.teams.update_one({"_id": team_id},
                              {"$set": {"members": members, "leader_id": employee_id,
                                        "updated_at": utcnow()}, "$inc": {"version": 1}})
        return team.get("leader_id"), {**team, "members": members, "leader_id": employee_id,
                                       "version": int(team.get("version") or 0) + 1}

    def set_permissions(self, org_id: str, team_id: str, permissions: dict) -> None:
        self.teams.update_one({"_id": team_id, "org_id": org_id},
                              {"$set": {"permissions": permissions, "updated_at": utcnow()},
                               "$inc": {"version": 1}})

    def remember_employee(self, employee: dict) -> None:
        self.db.directory.update_one({"_id": employee["employee_id"]},
                                     {"$set": {**employee, "seen_at": utcnow()}}, upsert=True)

    def forget_employee(self, employee_id: str) -> None:
        self.db.directory.delete_one({"_id": employee_id})
