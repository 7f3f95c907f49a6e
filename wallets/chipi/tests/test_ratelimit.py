"""The client-side rate limit: a sliding one-minute window per API key, counted in Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.test import override_settings

from wallets.chipi import ratelimit

# The start of a minute: the window's counter and the previous one are both empty.
MINUTE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.usefixtures("limit_of_five")


@pytest.fixture
def limit_of_five():
    with override_settings(CHIPI_RATE_LIMIT_PER_MINUTE=5, CHIPI_API_KEY="pk_test_ratelimit"):
        yield


@pytest.fixture
def clock():
    with time_machine.travel(MINUTE, tick=False) as traveller:
        yield traveller


def test_the_budget_is_the_limit_then_a_wait(clock):
    allowed = [ratelimit.acquire() for _ in range(5)]

    wait = ratelimit.acquire()

    assert allowed == [0.0] * 5
    assert wait > 0


def test_a_refused_acquire_takes_nothing(clock):
    for _ in range(5):
        ratelimit.acquire()

    refusals = [ratelimit.acquire() for _ in range(3)]

    assert all(wait > 0 for wait in refusals)
    assert cache.get(ratelimit._key("pk_test_ratelimit", int(MINUTE.timestamp()) // 60)) == 5


def test_the_wait_is_how_long_until_the_window_has_slid_far_enough(clock):
    for _ in range(5):
        ratelimit.acquire()

    wait = ratelimit.acquire()

    # The next minute starts in 60 s; then these 5 weigh 5 * (60 - e) / 60, and one more fits once
    # that is at most 4, at e = 12 s.
    assert wait == pytest.approx(72.0)
    clock.shift(timedelta(seconds=wait - 1))
    assert ratelimit.acquire() > 0
    clock.shift(timedelta(seconds=1))
    assert ratelimit.acquire() == 0.0


def test_the_previous_minute_still_counts_at_the_start_of_the_next(clock):
    for _ in range(5):
        ratelimit.acquire()
    clock.shift(timedelta(seconds=60))

    assert ratelimit.acquire() > 0  # a burst across the boundary cannot double the limit


def test_an_idle_minute_restores_the_whole_budget(clock):
    for _ in range(5):
        ratelimit.acquire()
    clock.shift(timedelta(seconds=120))

    assert [ratelimit.acquire() for _ in range(5)] == [0.0] * 5


def test_a_wait_within_the_window_as_the_previous_minute_slides_out(clock):
    for _ in range(4):
        ratelimit.acquire()
    clock.shift(timedelta(seconds=60 + 30))  # half of the previous minute still overlaps: 4 * 0.5 = 2
    assert [ratelimit.acquire() for _ in range(3)] == [0.0] * 3

    wait = ratelimit.acquire()

    # 4 * (30 - t) / 60 + 3 + 1 <= 5  ->  t >= 15
    assert wait == pytest.approx(15.0)


def test_a_cost_counts_as_that_many_requests(clock):
    assert ratelimit.acquire(cost=4) == 0.0
    assert ratelimit.acquire(cost=2) > 0
    assert ratelimit.acquire(cost=1) == 0.0


@pytest.mark.parametrize("cost", [0, -1, 6])
def test_an_impossible_cost_is_refused(clock, cost):
    with pytest.raises(ValueError):
        ratelimit.acquire(cost=cost)


def test_each_api_key_has_its_own_budget(clock):
    for _ in range(5):
        ratelimit.acquire()

    assert ratelimit.acquire(api_key="pk_other") == 0.0
    assert ratelimit.acquire() > 0


@override_settings(CHIPI_RATE_LIMIT_PER_MINUTE=0)
def test_a_limit_of_zero_turns_it_off(clock):
    assert all(ratelimit.acquire() == 0.0 for _ in range(500))


def test_the_count_is_shared_through_redis_and_keeps_the_key_secret(clock):
    """Another process (here: another connection to the same Redis) sees the same budget."""
    assert isinstance(caches["default"], RedisCache)
    for _ in range(3):
        ratelimit.acquire()

    other_process = caches.create_connection("default")
    key = ratelimit._key("pk_test_ratelimit", int(MINUTE.timestamp()) // 60)
    redis = other_process._cache.get_client()

    assert other_process.get(key) == 3
    assert not any(b"pk_test_ratelimit" in name for name in redis.keys("*"))
