"""Completions per org in a Redis sorted set (``tasks:leaderboard:{org}``),
rebuilt from MongoDB when missing. Redis is the cache, MongoDB the truth: an
increment only touches a board that exists, so a board is either whole (rebuilt
from an aggregation) or absent."""
from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)

TTL = 3600
INCR_IF_EXISTS = ("if redis.call('EXISTS', KEYS[1]) == 1 then "
                  "return redis.call('ZINCRBY', KEYS[1], ARGV[1], ARGV[2]) end return nil")


def key(org_id: str) -> str:
    return f"tasks:leaderboard:{org_id}"


def incr(client: redis.Redis, org_id: str, employee_id: str | None, by: int) -> None:
    if not employee_id:
        return
    try:
        client.eval(INCR_IF_EXISTS, 1, key(org_id), by, employee_id)
    except redis.RedisError as exc:  # rebuilt from MongoDB when missing
        log.warning("leaderboard update skipped: %s", exc)


def top(client: redis.Redis, store, org_id: str, limit: int) -> tuple[list[tuple[str, float]], str]:
    """``([(employee_id, completed)], source)``, most completions first, ties by id."""
    board = key(org_id)
    try:
        if client.exists(board):
            rows = client.zrevrange(board, 0, limit - 1, withscores=True)
            return sorted([(e, n) for e, n in rows if n > 0], key=lambda r: (-r[1], r[0])), "redis"
    except redis.RedisError as exc:
        log.warning("leaderboard cache unavailable: %s", exc)
    rows = store.completions(org_id)
    if rows:
        try:
            client.pipeline().delete(board).zadd(board, dict(rows)).expire(board, TTL).execute()
        except redis.RedisError as exc:
            log.warning("leaderboard not cached: %s", exc)
    rows.sort(key=lambda r: (-r[1], r[0]))
    return rows[:limit], "mongodb"
