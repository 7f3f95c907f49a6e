"""A sweep that comes late (beat missed minutes, the worker was down): a session's use since its
last charge is more than its hold covered, and it is billed from its hold and what its payer has
free then, stopped at the exact instant those ran out, never below zero."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streaming.models import SessionStatus, StopReason
from streaming.tests.conftest import USDC, beat, fresh, run_sweep, start
from wallets import ledger
from wallets.models import Account, Entry, SystemAccount
from wallets.tests.conftest import balance_of, system_balance

pytestmark = pytest.mark.django_db


def _heard_from_until(session, clock, *, seconds: int) -> None:
    """The user's heartbeats every 30 s for `seconds`, and no sweep: it stays alive, unbilled."""
    for _ in range(seconds // 30):
        clock.move(seconds=30)
        beat(session)


def _paid_as_charged(session, vendor) -> None:
    """The session's charge records add up to its cost; the vendor got them less the fee, the
    platform the fee (the only charges of the test)."""
    charges = list(Entry.objects.filter(session=session).values_list("amount", "fee"))
    charged = -sum(amount for amount, _ in charges)
    fees = sum(fee for _, fee in charges)
    assert charged == fresh(session).total_cost
    assert balance_of(vendor) == charged - fees
    assert system_balance(SystemAccount.PLATFORM_REVENUE) == fees


@pytest.mark.parametrize("late_minutes", [3, 5])
def test_a_late_sweep_stops_the_session_at_the_instant_its_funds_ran_out(
    alice, victor, fund, make_service, clock, late_minutes
):
    """2.5 USDC at 1 USDC a minute, the first minute held, no sweep for `late_minutes`: the sweep
    charges the whole 2.5 USDC and stops it back at 150 s, not at the sweep's instant."""
    fund(alice, 2_500_000)
    session = start(alice, make_service("per_minute", rate=USDC))
    assert fresh(session).hold.amount == USDC
    _heard_from_until(session, clock, seconds=60 * late_minutes)

    result = run_sweep()

    stopped = fresh(session)
    assert (result.sessions, result.stopped, result.amount) == (1, 1, 2_500_000)
    assert (stopped.status, stopped.stop_reason) == (SessionStatus.STOPPED, StopReason.INSUFFICIENT_FUNDS)
    assert stopped.end_time == stopped.start_time + timedelta(seconds=150)
    assert stopped.charged_until == stopped.end_time
    assert stopped.total_cost == 2_500_000
    assert (stopped.hold.status, stopped.hold.amount) == ("released", 0)
    assert balance_of(alice) == 0 and Account.objects.get(owner=alice).held == 0
    # One charge record, billing exactly the start to the instant the money ran out.
    assert list(Entry.objects.filter(session=session).values_list("amount", "billed_from", "billed_until")) == [
        (-2_500_000, stopped.start_time, stopped.end_time)
    ]
    _paid_as_charged(session, victor)


def test_a_late_sweep_after_the_free_balance_was_spent_stops_where_the_hold_ran_out(
    alice, bob, victor, fund, make_service, clock
):
    """The payer spends what was free while the sweep is late: the session had only its hold, one
    minute, and stops there (the rest of its use came after its money, and nothing pays for it)."""
    from wallets.services import wallet_transfer

    fund(alice, 2_500_000)
    session = start(alice, make_service("per_minute", rate=USDC))
    clock.move(seconds=30)
    wallet_transfer(sender=alice, recipient=bob, asset=ledger.asset_get("USDC"), amount=1_500_000)
    beat(session)
    _heard_from_until(session, clock, seconds=270)

    run_sweep()

    stopped = fresh(session)
    assert (stopped.status, stopped.stop_reason) == (SessionStatus.STOPPED, StopReason.INSUFFICIENT_FUNDS)
    assert (stopped.end_time - stopped.start_time, stopped.total_cost) == (timedelta(seconds=60), USDC)
    assert balance_of(alice) == 0 and Account.objects.get(owner=alice).held == 0
    assert balance_of(bob) == 1_500_000
    _paid_as_charged(session, victor)


def test_a_late_sweep_with_the_money_charges_all_of_it_and_holds_the_next_period(
    alice, victor, fund, make_service, clock
):
    """Late twice with enough money: each sweep charges everything since the last, renews one
    period's hold, and the second, with exactly the money for its five minutes, tells it that it
    stops now (nothing is left to hold); the next sweep stops it there."""
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    _heard_from_until(session, clock, seconds=300)
    run_sweep()
    billed = fresh(session)
    assert (billed.status, billed.total_cost, billed.hold.amount, billed.stop_at) == (
        SessionStatus.ACTIVE,
        5 * USDC,
        USDC,
        None,
    )
    assert balance_of(alice) == 5 * USDC

    _heard_from_until(session, clock, seconds=300)
    run_sweep()  # at 600 s: 5 more minutes, exactly the 5 USDC there are
    billed = fresh(session)
    assert (billed.status, billed.total_cost, billed.hold.amount) == (SessionStatus.ACTIVE, 10 * USDC, 0)
    assert (billed.stop_at, billed.stop_at_reason) == (billed.start_time + timedelta(seconds=600), "insufficient_funds")

    _heard_from_until(session, clock, seconds=120)
    run_sweep()
    stopped = fresh(session)
    assert (stopped.status, stopped.stop_reason) == (SessionStatus.STOPPED, StopReason.INSUFFICIENT_FUNDS)
    assert (stopped.end_time - stopped.start_time, stopped.total_cost) == (timedelta(seconds=600), 10 * USDC)
    assert balance_of(alice) == 0 and Account.objects.get(owner=alice).held == 0
    _paid_as_charged(session, victor)


def test_a_late_sweep_shares_a_payers_money_between_its_sessions(alice, victor, fund, make_service, clock):
    """Two sessions of one payer, 3 USDC, 1 USDC a minute each (a minute held for each, one free):
    five minutes late, the first (by id) is given its hold and the free minute and stops at 120 s,
    the second its hold alone and stops at 60 s; 3 USDC charged, the wallet at exactly zero."""
    fund(alice, 3 * USDC)
    first, second = (start(alice, make_service("per_minute", rate=USDC)) for _ in range(2))
    for _ in range(10):
        clock.move(seconds=30)
        beat(first)
        beat(second)

    run_sweep()

    first, second = fresh(first), fresh(second)
    assert [s.stop_reason for s in (first, second)] == [StopReason.INSUFFICIENT_FUNDS] * 2
    assert [s.end_time - s.start_time for s in (first, second)] == [timedelta(seconds=120), timedelta(seconds=60)]
    assert [s.total_cost for s in (first, second)] == [2 * USDC, USDC]
    assert balance_of(alice) == 0 and Account.objects.get(owner=alice).held == 0
    charges = list(Entry.objects.filter(session__in=[first, second]).values_list("amount", "fee"))
    assert -sum(a for a, _ in charges) == 3 * USDC
    assert balance_of(victor) + system_balance(SystemAccount.PLATFORM_REVENUE) == 3 * USDC
    assert system_balance(SystemAccount.PLATFORM_REVENUE) == sum(f for _, f in charges)


@pytest.mark.parametrize(
    ("unit", "rate", "funds", "free_seconds"),
    [
        ("per_second", 1_000, 150_500, 0),  # 150.5 s
        ("per_minute", 1_000_003, 2_345_678, 0),
        ("per_minute", 700_001, 1_000_000, 45),
        ("per_hour", 30 * USDC, 1_234_567, 0),
    ],
)
def test_a_late_sweep_charges_to_the_last_instant_the_funds_pay_for(
    alice, victor, fund, make_service, clock, unit, rate, funds, free_seconds
):
    """Ten minutes late, whatever the unit and the rounding: stopped at the last instant the funds
    pay for (pricing.last_affordable_ms), charged what is due then, never more than the funds."""
    from streaming import pricing

    fund(alice, funds)
    session = start(alice, make_service(unit, rate=rate, free_seconds=free_seconds))
    _heard_from_until(session, clock, seconds=600)

    run_sweep()

    stopped = fresh(session)
    unit_ms = pricing.TIME_UNIT_MS[unit]
    last_ms = pricing.last_affordable_ms(rate=rate, unit_ms=unit_ms, free_ms=free_seconds * 1000, budget=funds)
    assert last_ms < 600_000
    assert (stopped.status, stopped.stop_reason) == (SessionStatus.STOPPED, StopReason.INSUFFICIENT_FUNDS)
    assert stopped.end_time == stopped.start_time + timedelta(milliseconds=last_ms)
    due = pricing.time_due(rate=rate, unit_ms=unit_ms, elapsed_ms=last_ms, free_ms=free_seconds * 1000)
    assert stopped.total_cost == due <= funds
    assert balance_of(alice) == funds - due >= 0 and Account.objects.get(owner=alice).held == 0
    _paid_as_charged(session, victor)
