"""Metering arithmetic, in integers of minor units and milliseconds. Pure functions, no I/O.

Cost is cumulative so that rounding never drifts: due(t) = floor(rate * billable_ms(t) / unit_ms),
and every charge takes due(now) - charged. Usage units work the same over the reported quantity.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from marketplace.models import USAGE_UNIT_QUANTITY

TIME_UNIT_MS = {"per_second": 1_000, "per_minute": 60_000, "per_hour": 3_600_000}


def is_time_unit(unit: str) -> bool:
    return unit in TIME_UNIT_MS


def is_usage_unit(unit: str) -> bool:
    return unit in USAGE_UNIT_QUANTITY


def elapsed_ms(since: datetime, until: datetime) -> int:
    """Milliseconds from one instant to another, truncated towards zero."""
    return int((until - since) / timedelta(milliseconds=1))


def billable_ms(elapsed_ms: int, free_ms: int) -> int:
    return max(0, elapsed_ms - free_ms)


def time_due(*, rate: int, unit_ms: int, elapsed_ms: int, free_ms: int = 0) -> int:
    """What `elapsed_ms` of a session has cost in all, `free_ms` first milliseconds free."""
    return rate * billable_ms(elapsed_ms, free_ms) // unit_ms


def usage_due(*, rate: int, unit_quantity: int, quantity: int) -> int:
    """What `quantity` reported usage has cost in all."""
    return rate * quantity // unit_quantity


def period_cost(*, rate: int, unit_ms: int, period_ms: int) -> int:
    """What one billing period of a time-metered session can cost at most (rounded up): what is
    held ahead so that a user can never consume what they cannot pay."""
    return -(-rate * period_ms // unit_ms)


def last_affordable_ms(*, rate: int, unit_ms: int, free_ms: int, budget: int) -> int:
    """The largest elapsed time whose due() is at most `budget` (the funds plus what was already
    charged): the instant a session's money runs out."""
    # due(e) <= B  <=>  rate * (e - free) < (B + 1) * unit_ms  <=>  e - free <= ((B + 1) * unit_ms - 1) // rate
    return free_ms + ((budget + 1) * unit_ms - 1) // rate


def last_affordable_quantity(*, rate: int, unit_quantity: int, budget: int) -> int:
    """The largest reported quantity whose usage_due() is at most `budget`: what a usage cap allows."""
    # rate * q // uq <= B  <=>  rate * q < (B + 1) * uq  <=>  q <= ((B + 1) * uq - 1) // rate
    return ((budget + 1) * unit_quantity - 1) // rate


def rate_per_minute(*, rate: int, unit_ms: int) -> int:
    """A time rate shown per minute, in minor units rounded half up (a display, never a charge: a
    per-hour rate of 3,599,999 is 59,999.98 a minute, shown as 60,000 rather than cut to 59,999)."""
    return (2 * rate * 60_000 + unit_ms) // (2 * unit_ms)


def runway_ms(*, rate: int, unit_ms: int, funds: int) -> int:
    """How long `funds` last at this rate."""
    return funds * unit_ms // rate if rate else 0


def platform_fee(amount: int, fee_bps: int) -> int:
    """The platform's commission on a charge: floor(amount * fee_bps / 10000); the vendor gets the rest."""
    return amount * fee_bps // 10_000
