"""Metering arithmetic: exact, cumulative, never drifting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streaming import pricing

USDC = 1_000_000
MINUTE = 60_000


def test_one_usdc_a_minute_has_no_drift_over_ten_thousand_sweeps():
    """1 USDC a minute is 16,666.66... minor units a second: no whole number per second."""
    charged = 0
    elapsed = 0
    for _ in range(10_000):
        elapsed += 60_000 + 7  # sweeps that are never exactly a minute apart
        due = pricing.time_due(rate=USDC, unit_ms=MINUTE, elapsed_ms=elapsed)
        charged += due - charged
    assert charged == USDC * elapsed // MINUTE
    assert charged == pricing.time_due(rate=USDC, unit_ms=MINUTE, elapsed_ms=elapsed)


def test_free_seconds():
    assert pricing.time_due(rate=USDC, unit_ms=MINUTE, elapsed_ms=30_000, free_ms=30_000) == 0
    assert pricing.time_due(rate=USDC, unit_ms=MINUTE, elapsed_ms=90_000, free_ms=30_000) == USDC


def test_usage_due():
    assert pricing.usage_due(rate=2 * USDC, unit_quantity=10**9, quantity=1_500_000_000) == 3 * USDC
    assert pricing.usage_due(rate=7, unit_quantity=1, quantity=3) == 21


def test_period_cost_rounds_up():
    assert pricing.period_cost(rate=USDC, unit_ms=MINUTE, period_ms=1_000) == 16_667
    assert pricing.period_cost(rate=USDC, unit_ms=MINUTE, period_ms=MINUTE) == USDC


@given(
    rate=st.integers(min_value=1, max_value=10**12),
    unit_ms=st.sampled_from([1_000, 60_000, 3_600_000]),
    free_ms=st.integers(min_value=0, max_value=10**6),
    budget=st.integers(min_value=0, max_value=10**15),
)
def test_last_affordable_instant_is_exact(rate, unit_ms, free_ms, budget):
    end = pricing.last_affordable_ms(rate=rate, unit_ms=unit_ms, free_ms=free_ms, budget=budget)

    assert pricing.time_due(rate=rate, unit_ms=unit_ms, elapsed_ms=end, free_ms=free_ms) <= budget
    assert pricing.time_due(rate=rate, unit_ms=unit_ms, elapsed_ms=end + 1, free_ms=free_ms) > budget


@given(
    rate=st.integers(min_value=1, max_value=10**12),
    unit_ms=st.sampled_from([1_000, 60_000, 3_600_000]),
    steps=st.lists(st.integers(min_value=0, max_value=10**7), max_size=50),
)
def test_cumulative_charges_sum_to_the_total_due(rate, unit_ms, steps):
    charged, elapsed = 0, 0
    for step in steps:
        elapsed += step
        charged += pricing.time_due(rate=rate, unit_ms=unit_ms, elapsed_ms=elapsed) - charged
    assert charged == pricing.time_due(rate=rate, unit_ms=unit_ms, elapsed_ms=elapsed)


@given(amount=st.integers(min_value=0, max_value=10**30), fee_bps=st.integers(min_value=0, max_value=10_000))
def test_fee_and_vendor_share_add_up(amount, fee_bps):
    fee = pricing.platform_fee(amount, fee_bps)
    assert 0 <= fee <= amount
    assert fee == amount * fee_bps // 10_000
