"""Example values for the OpenAPI document (``metadata={"example": ...}`` on the
marshmallow fields of every service's ``schemas.py``).

One of each id, so a reader can follow the same user, org, employee, team and
task through every route of the docs. Ids have the shape the services make:
users, sessions, orgs, employees and invitations are ``uuid4().hex``; teams,
tasks, jobs, comments, attachments and history entries are ObjectIds;
notifications are 24 hex digits of a hash. Nothing here is a live credential:
the access token is signed by a throw-away key (the one ``JWK`` describes)."""
from __future__ import annotations

USER_ID = "8f14e45fceea467a9575b1c2d3e4f5a6"
OTHER_USER_ID = "45c48cce2e2d4fbdaa1afc51c7d8e9f0"
SESSION_ID = "c9f0f895fb984b57a1d3e5f7a9b1c3d5"
ORG_ID = "d3d9446802a44259b5e6f7a8b9c0d1e2"
EMPLOYEE_ID = "6512bd43d9ca46e0a1b2c3d4e5f60718"
OTHER_EMPLOYEE_ID = "c20ad4d76fe94759aa27a0c99bff6710"
INVITATION_ID = "c51ce410c1244a10b2e3f4a5b6c7d8e9"
TEAM_ID = "69a55514a1b2c3d4e5f60711"
TASK_ID = "69a55640a1b2c3d4e5f60722"
JOB_ID = "69a55640a1b2c3d4e5f60733"
COMMENT_ID = "69a6b24ca1b2c3d4e5f60744"
ATTACHMENT_ID = "69a6b24ca1b2c3d4e5f60755"
HISTORY_ID = "69a6b24ca1b2c3d4e5f60766"
NOTIFICATION_ID = "3f2a9c1e7b4d5e6f8a0b1c2d"

CREATED_AT = "2026-03-02T09:15:00Z"
UPDATED_AT = "2026-03-03T10:05:00Z"
EXPIRES_AT = "2026-03-09T09:15:00Z"
DUE_AT = "2030-03-13T17:00:00Z"  # in the future, so "Try it out" makes a task that is not overdue

# Ada (USER_ID, EMPLOYEE_ID) owns the org and leads the team; Grace (OTHER_*) was
# added to both; Margaret is invited
EMAIL = "ada@example.com"
NEW_EMAIL = "ada.lovelace@example.com"
NAME = "Ada Lovelace"
OTHER_EMAIL = "grace@example.com"
OTHER_NAME = "Grace Hopper"
INVITEE_EMAIL = "margaret@example.com"
PASSWORD = "plum-orbit-harbor-42"
TOTP_CODE = "492039"
# new_secret(): 256 random bits, URL-safe
REFRESH_TOKEN = "WqIbSIg-F4Tkx6vsvRaRLIOpM9d6TkPaPGx5Qql4oA4"
EMAILED_TOKEN = "F94iVUsPhGL4AcvlD-kh7idE1xmSrAKenDcn9Sp5twQ"
MFA_TOKEN = "5jAbEV-NM6nvtjy7TYkk8l0TLo_p1Wuv3HqAhIkP53M"
JWK = {"kty": "OKP", "crv": "Ed25519", "x": "Mi6RkjkIh7uYgdN9HvcrVRCfqVMJdheMx8HfEs9xYjc",
       "kid": "WLd7mqXbBc3VbdpWFL2Xf8xGEEXOEFgpDioTlZU6EFY", "alg": "EdDSA", "use": "sig"}
ACCESS_TOKEN = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6IldMZDdtcVhiQmMzVmJkcFdGTDJYZjh4R0VFWE9FRmdwRGlvVGxaVTZFRlkiLCJ0"
    "eXAiOiJhdCtqd3QifQ.eyJpc3MiOiJ3b3JrZm9yY2UtYXV0aCIsImF1ZCI6Indvcmtmb3JjZS1hcGkiLCJzdWIiOiI4"
    "ZjE0ZTQ1ZmNlZWE0NjdhOTU3NWIxYzJkM2U0ZjVhNiIsInNpZCI6ImM5ZjBmODk1ZmI5ODRiNTdhMWQzZTVmN2E5YjFj"
    "M2Q1IiwianRpIjoiYmViZGIxY2Y2ZjgwNGUwYWI5YjcyZGIwNjNiMDUyYjIiLCJpYXQiOjE3NzI0NDI5MDAsImV4cCI6"
    "MTc3MjQ0MzgwMCwiZW1haWxfdmVyaWZpZWQiOnRydWV9.7C-yJEj9pFVjDFAnef8VmeSpSuu2AMuhe04OfUUB5a7X2zCJ"
    "euRiLdErnzlLkv4gFAEoSSI1Lv_zW37UyKylDg")
PUSH_ENDPOINT = "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABmZ3xK9qT1"
PUSH_P256DH = ("BHAQA0p_AnLtEnM1uq6nkdx6oYD-nAzcSHv0ubVmmU-FHpqgpHDxhen2KGiM0ZC8bHWQFb49-gmF4Ph"
               "cQySsivA")
PUSH_AUTH = "3mVCvW8aJj8k80W47svvww"
# an opaque page cursor (shared.pagination.encode_cursor); null on the last page
NEXT_CURSOR = "NjlhNTU2NDBhMWIyYzNkNGU1ZjYwNzIy"


def next_cursor_meta() -> dict:
    """``metadata`` of a page's ``next_cursor`` field."""
    return {"example": NEXT_CURSOR, "description": "pass as ?cursor= for the next page; "
                                                   "null on the last page"}
