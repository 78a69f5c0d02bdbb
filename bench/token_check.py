"""What the gateway's per-request token check costs for a personal access
token, against a JWT's, measured in one run on the same Redis.

Both paths run what ``gateway_svc.http.Guard.check`` runs before a worker, on
an ``/orgs/<org_id>`` route with a rate limit and a cached membership:

  (a) JWT: ``Identity.verify_signature`` (warm: verified once, then remembered)
      + the one ``RequestChecks`` script (blacklist, rate limit, membership)
  (b) PAT: ``PersonalTokens.resolve`` (warm: record read once, then remembered)
      + the scope rule + the same script (record live, rate limit, membership)

Prints p50/p99 per call (sequential, the two interleaved) and the ratio b/a; the target is b/a
close to 1 (the same number of Redis round trips: one).

    .venv/bin/python bench/token_check.py [--calls 5000]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ms, pct  # noqa: E402
from employee_svc.contract import membership_key  # noqa: E402
from gateway_svc.checks import RequestChecks  # noqa: E402
from gateway_svc.identity import Identity, PersonalTokens  # noqa: E402
from gateway_svc.scopes import check_token  # noqa: E402
from shared.redis import Limit, make_client  # noqa: E402
from tests.tokens import TEST_PRIVATE_KEYS_PEM, access_token  # noqa: E402

REDIS_URI = os.environ.get("REDIS_URI", "redis://127.0.0.1:6379/0")


def timed(fn, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    config = {"REDIS_URI": REDIS_URI, "JWT_PRIVATE_KEYS": TEST_PRIVATE_KEYS_PEM}
    client = make_client(config)
    run = uuid.uuid4().hex[:8]
    user_id, org_id = f"bench-user-{run}", f"bench-org-{run}"
    limit = Limit(1_000_000, 3600)  # never reached: every call counts, none is refused
    member = membership_key(org_id, user_id)
    client.set(member, json.dumps({"org_id": org_id, "user_id": user_id, "role": "admin",
                                   "status": "active", "permissions": []}), ex=600)
    jwt, _ = access_token(config, user_id)
    secret = f"wfp_{'b' * 35}{run}"
    record_key = f"auth:pat:{hashlib.sha256(secret.encode()).hexdigest()}"
    client.set(record_key, json.dumps({"token_id": f"bench-{run}", "user_id": user_id,
                                       "scope": "write", "org_id": None,
                                       "expires_at": int(time.time()) + 3600}), ex=600)
    identity, tokens, checks = Identity(config, client), PersonalTokens(client), RequestChecks(client)
    rate_key = f"gateway:ratelimit:user:{user_id}:bench-{run}"

    def with_jwt():
        claims = identity.verify_signature(jwt)
        assert not checks.run(claims, rate_key, limit, member).revoked

    def with_pat():
        claims = tokens.resolve(secret)
        check_token(claims, "GET", "/orgs/<org_id>/tasks", org_id)
        assert not checks.run(claims, rate_key, limit, member).revoked

    try:
        for fn in (with_jwt, with_pat):  # warm both (first verification, first record read)
            timed(fn, 50)
        # interleaved, so load from elsewhere on the machine hits both alike
        results: dict[str, list[float]] = {"jwt": [], "pat": []}
        for _ in range(args.calls):
            for name, fn in (("jwt", with_jwt), ("pat", with_pat)):
                results[name] += timed(fn, 1)
    finally:
        client.delete(member, record_key, rate_key)
        client.close()
    for name, samples in results.items():
        print(f"{name:4} p50 {ms(pct(samples, 50))}  p99 {ms(pct(samples, 99))}")
    base = pct(results["jwt"], 50)
    print(f"ratio pat/jwt p50: {pct(results['pat'], 50) / base:.2f}x")


if __name__ == "__main__":
    main()
