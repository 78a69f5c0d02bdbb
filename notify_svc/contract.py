"""What the notifications service promises others outside RPC and events: the
Redis pub/sub channel and the capped stream of each user's new in-app items,
which the gateway's websockets (gateway_svc.realtime) subscribe to and read."""
from __future__ import annotations

CHANNEL_PREFIX = "notifications:user:"
STREAM_PREFIX = "notifications:stream:"
STREAM_MAXLEN = 500
STREAM_TTL = 7 * 24 * 3600


def user_channel(user_id: str) -> str:
    """The Redis pub/sub channel a user's websockets listen on."""
    return f"{CHANNEL_PREFIX}{user_id}"


def user_stream(user_id: str) -> str:
    """Recent in-app items of a user, for websocket catch-up (at most STREAM_MAXLEN)."""
    return f"{STREAM_PREFIX}{user_id}"
