"""What counting an API request's rate limits costs: the request's two limits (its user's and its
address's budget) counted by paygo.api.ratelimits.count_all, one pipelined round trip to Redis,
beside the baseline measured in the same run, django-ratelimit's get_usage once per limit (SET NX,
EXISTS, INCR: three round trips each), as PayGo counted before.

    .venv/bin/python bench/rate_limits.py [--requests 3000] [--rounds 3]

Uses the local Redis (REDIS_URL, default redis://127.0.0.1:6379/5) under a key prefix of its own;
no database is touched. Prints wall-clock and CPU time per request for each, every round.
"""

from __future__ import annotations

import argparse
import os
import time

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

    from paygo.api.ratelimits import count_all

    settings.RATELIMIT_CACHE_PREFIX = f"bench-rate-limits-{os.getpid()}:"
    request = RequestFactory().get("/api/v1/service", REMOTE_ADDR="198.51.100.20")
    limits = [("read-user", lambda group, request: "7", "1000000/m"), ("read-ip", "ip", "1000000/m")]

    def per_limit() -> None:
        for name, key, rate in limits:
            get_usage(request, group=f"paygo:{name}", key=key, rate=rate, method=ALL, increment=True)

    def pipelined() -> None:
        count_all(request, limits)

    for n in range(1, args.rounds + 1):
        for label, count in (("baseline, get_usage per limit", per_limit), ("count_all, one round trip", pipelined)):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.requests):
                count()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            per = 1e6 / args.requests
            print(f"round {n} {label:32s} {wall * per:6.0f} us wall, {cpu * per:6.0f} us CPU per request")


if __name__ == "__main__":
    main()
