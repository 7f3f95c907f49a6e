"""What counting an API request's rate limits costs: the request's two limits (its user's budget,
unless its sign-in ended, and its address's) counted by paygo.api.ratelimits.count_all, one round
trip to Redis (a script), beside the baseline measured in the same run, django-ratelimit's get_usage
once per limit (SET NX, EXISTS, INCR: three round trips each), as PayGo counted before.

    .venv/bin/python bench/rate_limits.py [--requests 3000] [--rounds 3]

Uses the local Redis (REDIS_URL, default redis://127.0.0.1:6379/5) under a key prefix of its own;
no database is touched. Prints wall-clock and CPU time per request for each, every round.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

from _setup import setup_django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    setup_django()
    from django.conf import settings
    from django.test import RequestFactory
    from django_ratelimit import ALL
    from django_ratelimit.core import get_usage

    from paygo.api.ratelimits import Limit, count_all, ended_sign_in_key

    settings.RATELIMIT_CACHE_PREFIX = f"bench-rate-limits-{os.getpid()}:"
    request = RequestFactory().get("/api/v1/service", REMOTE_ADDR="198.51.100.20")
    # As the API counts a request with a token: its user's budget, unless its sign-in ended (checked in
    # the same round trip), and its address's.
    limits = [
        Limit("read-user", lambda group, request: "7", "1000000/m", unless=ended_sign_in_key(uuid.uuid4())),
        Limit("read-ip", "ip", "1000000/m"),
    ]

    def per_limit() -> None:
        for limit in limits:
            get_usage(
                request, group=f"paygo:{limit.policy}", key=limit.key, rate=limit.rate, method=ALL, increment=True
            )

    def one_round_trip() -> None:
        count_all(request, limits)

    for n in range(1, args.rounds + 1):
        runs = (("baseline, get_usage per limit", per_limit), ("count_all, one round trip", one_round_trip))
        for label, count in runs:
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.requests):
                count()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            per = 1e6 / args.requests
            print(f"round {n} {label:32s} {wall * per:6.0f} us wall, {cpu * per:6.0f} us CPU per request")


if __name__ == "__main__":
    main()
