"""paygo.cache: one Redis client per process, whatever the context a cache is used in."""

from __future__ import annotations

import contextvars

import pytest
import redis
from django.core.cache import caches
from django.test import override_settings


def _in_a_context_of_its_own(command):
    # As an ASGI server serves each request and each socket handshake: Django's caches are per
    # context (asgiref's Local), so each gets a cache object of its own.
    return contextvars.Context().run(command)


def test_a_cache_used_in_many_contexts_opens_one_connection_to_redis(redis_connections_opened):
    """Each context's cache made a client and a connection pool of its own, and opened a new
    connection to Redis for its first command: under Daphne, one per request."""
    caches["default"].set("paygo-cache-test", 1)
    before = len(redis_connections_opened)

    answers = [_in_a_context_of_its_own(lambda: caches["default"].get("paygo-cache-test")) for _ in range(12)]

    assert answers == [1] * 12
    assert len(redis_connections_opened) == before  # the first's connection, back in the shared pool, served them all


def test_an_overridden_cache_configuration_gets_a_client_of_its_own():
    """The client is kept per configuration: a test's (or a second alias's) own Redis is not
    reached through the first one's pool."""
    default = caches["default"]
    default.set("paygo-cache-test", 1)
    unreachable = {"default": {"BACKEND": "paygo.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}

    with override_settings(CACHES=unreachable), pytest.raises(redis.exceptions.ConnectionError):
        caches["default"].get("paygo-cache-test")

    assert caches["default"].get("paygo-cache-test") == 1
