"""The organizations service's MongoDB collections: indexes beside the queries."""
from __future__ import annotations

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.mongo import BaseStore, find_by_id, find_by_ids

LIVE = {"deleted_at": None}


class OrganizationStore(BaseStore):
    INDEXES = {
        "orgs": [IndexModel([("owner_user_id", ASCENDING), ("deleted_at", ASCENDING)])],
        # who belongs where, copied from employee events: "orgs of a user" and
        # the employee count without asking the employees service
        "members": [IndexModel([("user_id", ASCENDING), ("status", ASCENDING),
                                ("org_id", ASCENDING)]),
                    IndexModel([("org_id", ASCENDING), ("status", ASCENDING)])],
        "teams": [IndexModel([("org_id", ASCENDING)])],
    }

    def insert_org(self, doc: dict) -> bool:
        doc.setdefault("version", 1)  # bumped by every write: the ETag (shared.versions)
        try:
            self.db.orgs.insert_one(doc)
            return True
        except DuplicateKeyError:
            return False

    def org(self, org_id: str) -> dict | None:
        return find_by_id(self.db.orgs, org_id, **LIVE)

    def org_any(self, org_id: str) -> dict | None:
        """The org even if deleted."""
        return self.db.orgs.find_one({"_id": org_id})

    def orgs(self, org_ids: list[str]) -> list[dict]:
        return find_by_ids(self.db.orgs, org_ids, **LIVE)

    def owned_by(self, user_id: str) -> list[dict]:
        return list(self.db.orgs.find({"owner_user_id": user_id, **LIVE}))

    def update_org(self, org_id: str, fields: dict, expect: dict | None = None) -> dict | None:
        return self.db.orgs.find_one_and_update({"_id": org_id, **LIVE, **(expect or {})},
                                                {"$set": fields, "$inc": {"version": 1}},
                                                return_document=ReturnDocument.AFTER)

    def set_member(self, org_id: str, user_id: str, status: str) -> None:
        self.db.members.update_one({"_id": f"{org_id}:{user_id}"}, {"$set": {
            "org_id": org_id, "user_id": user_id, "status": status}}, upsert=True)

    def member_org_ids(self, user_id: str) -> list[str]:
        return [d["org_id"] for d in self.db.members.find(
            {"user_id": user_id, "status": "active"}, {"org_id": 1})]

    def member_user_ids(self, org_id: str) -> list[str]:
        return [d["user_id"] for d in self.db.members.find({"org_id": org_id}, {"user_id": 1})]

    def set_team(self, org_id: str, team_id: str, present: bool) -> None:
        if present:
            self.db.teams.update_one({"_id": team_id}, {"$set": {"org_id": org_id}}, upsert=True)
        else:
            self.db.teams.delete_one({"_id": team_id, "org_id": org_id})

    def recount(self, org_id: str) -> None:
        """Counts recomputed (not incremented), so a redelivered event counts once."""
        employees = self.db.members.count_documents({"org_id": org_id,
                                                     "status": {"$ne": "removed"}})
        teams = self.db.teams.count_documents({"org_id": org_id})
        self.db.orgs.update_one(  # only a real change bumps the version (the ETag)
            {"_id": org_id, "$or": [{"employee_count": {"$ne": employees}},
                                    {"team_count": {"$ne": teams}}]},
            {"$set": {"employee_count": employees, "team_count": teams},
             "$inc": {"version": 1}})
