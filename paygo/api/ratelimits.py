"""Rate limits for the API (django-ratelimit, counted in the shared cache)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest
from django_ratelimit import ALL
from django_ratelimit.core import is_ratelimited

from paygo.api.errors import TooManyRequests


def enforce(request: HttpRequest, *, group: str, limits: list[tuple[str | Callable, str]]) -> None:
    """Count this request against each (key, rate) and raise 429 when any is over.

    `key` is anything django-ratelimit takes ("ip", "user", or a callable(group, request)). "ip" is
    REMOTE_ADDR, the client's address as paygo.api.forwarded settled it (a proxy's X-Forwarded-For
    counts only when the proxy is in TRUSTED_PROXIES).
    Every limit is counted, even after one trips, so a flood keeps being counted everywhere.
    """
    over = [
        is_ratelimited(request, group=f"{group}:{index}", key=key, rate=rate, method=ALL, increment=True)
        for index, (key, rate) in enumerate(limits)
    ]
    if any(over):
        raise TooManyRequests()
