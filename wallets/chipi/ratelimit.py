"""The client-side Chipi rate limit: one budget per API key per minute, counted in the shared cache.

Chipi allows each key about CHIPI_RATE_LIMIT_PER_MINUTE requests a minute, and every process that
holds the key (web, Celery workers) shares that allowance, so the count lives in the cache (Redis in
production). It is a sliding-window counter: the previous minute's count weighs by how much of it
still overlaps the last 60 seconds, so no burst at a minute boundary can reach twice the limit.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache

WINDOW_SECONDS = 60
# Counters outlive their window by one more, as the next window reads them as its "previous".
_KEY_TTL = 2 * WINDOW_SECONDS + 10
_MIN_WAIT = 0.01


def _key(api_key: str, window: int) -> str:
    # The API key's digest, not the key: secrets stay out of the cache.
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"chipi:ratelimit:{digest}:{window}"


def _incr(key: str, cost: int) -> int:
    cache.add(key, 0, timeout=_KEY_TTL)
    try:
        return cache.incr(key, cost)
    except ValueError:  # the counter expired between add and incr
        cache.add(key, 0, timeout=_KEY_TTL)
        return cache.incr(key, cost)


def _seconds_until_room(previous: int, current: int, cost: int, limit: int, elapsed: float) -> float:
    """How long until `cost` more requests fit, given the counts without them."""
    left_in_window = WINDOW_SECONDS - elapsed
    room = limit - current - cost
    if room >= 0 and previous > 0:
        # They fit in this window once enough of the previous one has slid out:
        # previous * (left_in_window - t) / WINDOW_SECONDS <= room.
        return max(left_in_window - room * WINDOW_SECONDS / previous, _MIN_WAIT)
    # Not before the next window, where this window's count becomes the previous one:
    # current * (WINDOW_SECONDS - e) / WINDOW_SECONDS + cost <= limit.
    into_next = WINDOW_SECONDS * (1 - (limit - cost) / current) if current else 0.0
    return max(left_in_window + max(into_next, 0.0), _MIN_WAIT)


def acquire(cost: int = 1, *, api_key: str | None = None) -> float:
    """Take `cost` requests from the API key's budget: 0.0 when allowed, else the seconds to wait.

    `api_key` defaults to settings.CHIPI_API_KEY. A refused acquire takes nothing from the budget.
    A limit of 0 or less turns the limiter off.
    """
    limit = settings.CHIPI_RATE_LIMIT_PER_MINUTE
    if limit <= 0:
        return 0.0
    if not 0 < cost <= limit:
        raise ValueError(f"cost must be between 1 and the limit ({limit}).")
    if api_key is None:
        api_key = settings.CHIPI_API_KEY
    window, elapsed = divmod(time.time(), WINDOW_SECONDS)
    key = _key(api_key, int(window))
    current = _incr(key, cost)
    previous = cache.get(_key(api_key, int(window) - 1), 0)
    if previous * (WINDOW_SECONDS - elapsed) / WINDOW_SECONDS + current <= limit:
        return 0.0
    cache.decr(key, cost)
    return _seconds_until_room(previous, current - cost, cost, limit, elapsed)
