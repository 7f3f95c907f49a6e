"""The metering rules in Python (streaming/pricing.py) and in SQL (streaming/sql/metering.sql) agree
to the minor unit, over random rates, units, free seconds, budgets and instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streaming import pricing

pytestmark = pytest.mark.django_db

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
rates = st.integers(min_value=0, max_value=10**24)  # up to a million ETH (18 decimals) per unit
positive_rates = st.integers(min_value=1, max_value=10**24)
time_units = st.sampled_from(sorted(pricing.TIME_UNIT_MS))
usage_units = st.sampled_from(sorted(pricing.USAGE_UNIT_QUANTITY))
free_seconds = st.integers(min_value=0, max_value=86_400)
budgets = st.integers(min_value=0, max_value=10**26)
instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC))
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400))


def _sql(expression: str, *params):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {expression}", params)
        (value,) = cursor.fetchone()
    return int(value)


@SETTINGS
@given(rate=rates, unit=time_units, free=free_seconds, start=instants, elapsed=durations)
def test_time_due_agrees(rate, unit, free, start, elapsed):
    until = start + elapsed
    unit_ms = pricing.TIME_UNIT_MS[unit]
    expected = pricing.time_due(
        rate=rate, unit_ms=unit_ms, elapsed_ms=pricing.elapsed_ms(start, until), free_ms=free * 1000
    )

    got = _sql(
        "streaming_time_due(%s::numeric, %s, streaming_elapsed_ms(%s, %s), %s)",
        rate,
        unit_ms,
        start,
        until,
        free * 1000,
    )

    assert got == expected


@SETTINGS
@given(start=instants, elapsed=st.timedeltas(min_value=timedelta(days=-400), max_value=timedelta(days=400)))
def test_elapsed_milliseconds_agree_both_ways(start, elapsed):
    assert _sql("streaming_elapsed_ms(%s, %s)", start, start + elapsed) == pricing.elapsed_ms(start, start + elapsed)


@SETTINGS
@given(rate=rates, unit=usage_units, quantity=st.integers(min_value=0, max_value=10**20))
def test_usage_due_agrees(rate, unit, quantity):
    unit_quantity = pricing.USAGE_UNIT_QUANTITY[unit]
    expected = pricing.usage_due(rate=rate, unit_quantity=unit_quantity, quantity=quantity)

    assert _sql("streaming_usage_due(%s::numeric, %s, %s::numeric)", rate, unit_quantity, quantity) == expected


@SETTINGS
@given(rate=rates, unit=time_units, period_s=st.integers(min_value=0, max_value=86_400))
def test_period_cost_agrees(rate, unit, period_s):
    unit_ms = pricing.TIME_UNIT_MS[unit]
    expected = pricing.period_cost(rate=rate, unit_ms=unit_ms, period_ms=period_s * 1000)

    assert _sql("streaming_period_cost(%s::numeric, %s, %s)", rate, unit_ms, period_s * 1000) == expected


@SETTINGS
@given(rate=positive_rates, unit=time_units, free=free_seconds, budget=budgets)
def test_the_instant_money_runs_out_agrees(rate, unit, free, budget):
    unit_ms = pricing.TIME_UNIT_MS[unit]
    expected = pricing.last_affordable_ms(rate=rate, unit_ms=unit_ms, free_ms=free * 1000, budget=budget)

    got = _sql("streaming_last_affordable_ms(%s::numeric, %s, %s, %s::numeric)", rate, unit_ms, free * 1000, budget)

    assert got == expected
    # and it is the instant: affordable there, not one millisecond later
    assert pricing.time_due(rate=rate, unit_ms=unit_ms, elapsed_ms=got, free_ms=free * 1000) <= budget
    assert pricing.time_due(rate=rate, unit_ms=unit_ms, elapsed_ms=got + 1, free_ms=free * 1000) > budget


@SETTINGS
@given(rate=positive_rates, unit=usage_units, budget=budgets)
def test_the_quantity_a_cap_allows_agrees(rate, unit, budget):
    unit_quantity = pricing.USAGE_UNIT_QUANTITY[unit]
    expected = pricing.last_affordable_quantity(rate=rate, unit_quantity=unit_quantity, budget=budget)

    got = _sql("streaming_last_affordable_quantity(%s::numeric, %s, %s::numeric)", rate, unit_quantity, budget)

    assert got == expected
    assert pricing.usage_due(rate=rate, unit_quantity=unit_quantity, quantity=got) <= budget
    assert pricing.usage_due(rate=rate, unit_quantity=unit_quantity, quantity=got + 1) > budget


@SETTINGS
@given(rate=rates, unit=time_units, funds=st.integers(min_value=-(10**24), max_value=10**26))
def test_runway_agrees(rate, unit, funds):
    unit_ms = pricing.TIME_UNIT_MS[unit]
    expected = pricing.runway_ms(rate=rate, unit_ms=unit_ms, funds=funds)

    assert _sql("streaming_runway_ms(%s::numeric, %s, %s::numeric)", rate, unit_ms, funds) == expected


@SETTINGS
@given(amount=st.integers(min_value=0, max_value=10**26), fee_bps=st.integers(min_value=0, max_value=10_000))
def test_platform_fee_agrees(amount, fee_bps):
    assert _sql("streaming_platform_fee(%s::numeric, %s)", amount, fee_bps) == pricing.platform_fee(amount, fee_bps)
