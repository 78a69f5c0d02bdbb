"""Rules of the organizations service, with no I/O."""
from __future__ import annotations

import hashlib
import uuid

from shared.errors import Conflict, PlanLimitExceeded

# employees/teams allowed per plan (None: no limit); config.yaml ORG_PLANS overrides
DEFAULT_PLANS: dict[str, dict[str, int | None]] = {"free": {"employees": 10, "teams": 3},
                 "pro": {"employees": 250, "teams": 50},
                 "enterprise": {"employees": None, "teams": None}}

# what an org's settings are until its owner changes them (settings merge over these)
DEFAULT_SETTINGS = {
    "timezone": "UTC", "default_task_priority": "medium",
    "working_days": ["mon", "tue", "wed", "thu", "fri"], "week_start": "mon", "locale": "en",
    "notification_defaults": {"email": True, "in_app": True, "push": False, "digest": "off"},
}


def new_org_id() -> str:
    return uuid.uuid4().hex


def personal_org_id(user_id: str) -> str:
    """Deterministic, so a redelivered user.registered creates one org, not two."""
    return hashlib.sha256(f"personal:{user_id}".encode()).hexdigest()[:32]


def ids_after(ids: list[str], after: str | None, count: int) -> list[str]:
    """Up to ``count`` of the sorted ``ids`` past the cursor ``after``."""
    return [i for i in sorted(ids) if after is None or i > after][:count]


def plans(config: dict) -> dict:
    configured = config.get("ORG_PLANS") or {}
    return {plan: {**limits, **(configured.get(plan) or {})}
            for plan, limits in DEFAULT_PLANS.items()}


def limits_of(config: dict, plan: str) -> dict:
    return dict(plans(config).get(plan, DEFAULT_PLANS["free"]))


def merge_settings(current: dict | None, changes: dict) -> dict:
    merged = {**DEFAULT_SETTINGS, **(current or {})}
    for key, value in changes.items():
        if isinstance(value, dict):
            merged[key] = {**(merged.get(key) or {}), **value}
        else:
            merged[key] = value
    return merged


def check_limit(plan: str, limits: dict, resource: str, current: int) -> None:
    """PlanLimitExceeded (403 plan-limit) when one more ``resource`` would pass the plan."""
    limit = limits.get(resource)
    if limit is not None and current >= limit:
        raise PlanLimitExceeded(f"The {plan} plan allows {limit} {resource}; upgrade the "
                                "subscription to add more.", limit=limit, resource=resource)


def check_downgrade(plan: str, limits: dict, counts: dict) -> None:
    for resource, limit in limits.items():
        if limit is not None and counts.get(resource, 0) > limit:
            raise Conflict(f"The organization has {counts[resource]} {resource}; the {plan} "
                           f"plan allows {limit}. Remove some first.")
