"""Exact money under a controlled clock: every unit, sweep boundaries, stops, limits, runs-out."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import override_settings

from streaming.models import SessionStatus, StopReason, StreamingSession
from streaming.tests.conftest import USDC, beat, charges_of, fresh, run_sweep, start, stop
from wallets.models import Account, LedgerTransaction, SystemAccount, TransactionKind
from wallets.tests.conftest import balance_of, system_balance

pytestmark = pytest.mark.django_db

FEE = 0.10


def run_sweep_outcomes():
    """A sweep, and what it did to each session (in id order)."""
    from django.db import transaction
    from django.test import TestCase
    from django.utils import timezone

    from streaming.billing import bill_batch

    with TestCase.captureOnCommitCallbacks(execute=True), transaction.atomic():
        return bill_batch(now=timezone.now(), after_id=0, shard=0, shards=1, limit=1000)


def split(amount: int) -> tuple[int, int]:
    """(vendor's share, platform's fee) of a charge at the default 10%."""
    fee = amount * 1000 // 10_000
    return amount - fee, fee


def test_per_minute_across_sweeps_and_at_stop(alice, victor, fund, make_service, clock):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))

    clock.move(seconds=60)
    beat(session)
    run_sweep()
    assert fresh(session).total_cost == USDC

    clock.move(seconds=30)
    beat(session)
    run_sweep()
    assert fresh(session).total_cost == 1_500_000

    clock.move(seconds=10, milliseconds=1)
    session = stop(session)

    total = USDC * 100_001 // 60_000  # 100.001 s at 1 USDC a minute, floored once
    assert session.status == SessionStatus.COMPLETED
    assert session.stop_reason == StopReason.USER
    assert session.total_cost == total
    assert session.total_usage_seconds == 100
    assert balance_of(alice) == 10 * USDC - total
    assert fresh(session).hold.amount == 0
    charges = charges_of(session)
    assert sum(charges) == total
    vendor_total = sum(split(c)[0] for c in charges)
    assert balance_of(victor) == vendor_total
    assert system_balance(SystemAccount.PLATFORM_REVENUE) == total - vendor_total


# Silent sessions stop when their idle timeout runs out, whoever stops them later (test_presence.py):
# this test is about the arithmetic of each unit, not presence, and leaves the session silent.
@override_settings(SESSION_IDLE_SECONDS=3600)
@pytest.mark.parametrize(
    ("unit", "rate", "seconds", "expected"),
    [
        ("per_second", 1_001, 61, 61_061),
        ("per_minute", 1_000_000, 61, 1_016_666),
        ("per_hour", 7_000_000, 3_599, 6_998_055),
    ],
)
def test_time_units(alice, fund, make_service, clock, unit, rate, seconds, expected):
    fund(alice, 100 * USDC)
    session = start(alice, make_service(unit, rate=rate))

    clock.move(seconds=seconds)
    session = stop(session)

    assert session.total_cost == expected
    assert balance_of(alice) == 100 * USDC - expected


def test_per_session_is_charged_once_at_start(alice, victor, fund, make_service, clock):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_session", rate=3 * USDC))

    assert balance_of(alice) == 7 * USDC
    clock.move(minutes=30)
    beat(session)
    run_sweep()
    session = stop(session)

    assert session.total_cost == 3 * USDC
    assert balance_of(alice) == 7 * USDC
    assert balance_of(victor) == split(3 * USDC)[0]


@pytest.mark.parametrize(
    ("unit", "rate", "quantities", "expected"),
    [
        ("per_gb", 2 * USDC, [400_000_000, 700_000_000], 2_200_000),
        ("per_request", 1_500, [3, 4], 10_500),
        ("per_transaction", 25_000, [1, 1, 1], 75_000),
    ],
)
def test_usage_units_charge_each_event_once(
    api, alice, victor, fund, make_service, clock, unit, rate, quantities, expected
):
    fund(alice, 10 * USDC)
    session = start(alice, make_service(unit, rate=rate))
    vendor = api(victor)
    for n, quantity in enumerate(quantities):
        url = f"/api/v1/streams/{session.session_id}/usage"
        assert vendor.post(url, {"eventId": f"e{n}", "quantity": quantity}, format="json").status_code == 201
        again = vendor.post(url, {"eventId": f"e{n}", "quantity": quantity}, format="json")
        assert again.status_code == 200 and again.json()["counted"] is False

    clock.move(seconds=30)
    beat(session)
    run_sweep()
    run_sweep()

    assert fresh(session).total_cost == expected
    assert balance_of(alice) == 10 * USDC - expected


def test_free_seconds(alice, fund, make_service, clock):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC, free_seconds=30))

    clock.move(seconds=30)
    beat(session)
    run_sweep()
    assert fresh(session).total_cost == 0

    clock.move(seconds=60)
    assert stop(session).total_cost == USDC


def test_minimum_charge_applies_at_stop(alice, fund, make_service, clock):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC, minimum_charge=2 * USDC))

    clock.move(seconds=30)
    session = stop(session)

    assert session.total_cost == 2 * USDC
    assert balance_of(alice) == 8 * USDC


def test_a_session_started_with_less_of_the_terms_is_held_and_billed_by_them(alice, fund, make_service, clock):
    # What a consultation's call is given: what its earlier calls left of the free seconds and the
    # minimum. Its stored terms are what the sweep and its stop bill by; never more than the service's.
    fund(alice, 10 * USDC)
    service = make_service("per_minute", rate=USDC, free_seconds=30, minimum_charge=2 * USDC)
    session = start(alice, service, free_seconds=10, minimum_charge=USDC)
    generous = start(alice, service, free_seconds=600, minimum_charge=10 * USDC)

    assert (session.free_seconds, session.minimum_charge) == (10, USDC)
    assert (generous.free_seconds, generous.minimum_charge) == (30, 2 * USDC)
    assert fresh(session).hold.amount == 833_334 + USDC  # 50 s of the first minute (rounded up), the minimum
    clock.move(seconds=40)
    beat(session)
    run_sweep()
    assert fresh(session).total_cost == USDC // 2  # 30 s past its 10 free ones
    clock.move(seconds=40)
    assert stop(session).total_cost == USDC * 70 // 60  # 70 s: past its minimum (not the service's), the time


# The minimum charge is what a user owes for ending a session early: owed when the stop is the
# user's side (the user, the user's silence, the user's money or maxCost running out), not when the
# vendor or staff end it. These sessions cost 1 USDC a minute with a 5 USDC minimum.
MINIMUM = 5 * USDC


@pytest.mark.parametrize(
    ("who", "reason", "status", "total", "shown"),
    [
        ("alice", StopReason.USER, SessionStatus.COMPLETED, MINIMUM, "5.000000"),
        ("victor", StopReason.VENDOR, SessionStatus.STOPPED, USDC // 60, "0.016666"),  # the second used
        ("olga", StopReason.STAFF, SessionStatus.STOPPED, USDC // 60, "0.016666"),
    ],
)
def test_the_minimum_charge_is_owed_when_the_user_ends_a_session_not_the_vendor_or_staff(
    api, request, alice, victor, fund, make_service, clock, who, reason, status, total, shown
):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC, minimum_charge=MINIMUM))
    clock.move(seconds=1)

    response = api(request.getfixturevalue(who)).patch(f"/api/v1/streams/{session.session_id}/stop")

    assert response.status_code == 200
    assert response.json()["totalCost"] == shown
    session = fresh(session)
    assert (session.status, session.stop_reason, session.total_cost) == (status, reason, total)
    assert charges_of(session) == [total]
    assert session.hold.amount == 0
    assert balance_of(alice) == 10 * USDC - total
    assert Account.objects.get(owner=alice, asset__code="USDC").held == 0
    assert balance_of(victor) == split(total)[0]


@pytest.mark.parametrize("stopped_by", [None, "victor", "olga"])
def test_a_silent_user_owes_the_minimum_charge_whoever_stops_the_session_later(
    api, alice, victor, olga, fund, make_service, clock, stopped_by
):
    """Silence is the user's side: the session ended as `idle` when its timeout ran out (60 s, 1 USDC
    used), and the minimum is owed, whether a sweep finds it or the vendor or staff stop it after."""
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC, minimum_charge=MINIMUM))
    clock.move(seconds=90)

    if stopped_by is None:
        run_sweep()
    else:
        user = {"victor": victor, "olga": olga}[stopped_by]
        assert api(user).patch(f"/api/v1/streams/{session.session_id}/stop").status_code == 200

    session = fresh(session)
    assert (session.status, session.stop_reason, session.total_cost) == (
        SessionStatus.STOPPED,
        StopReason.IDLE,
        MINIMUM,
    )
    assert (session.end_time - session.start_time).total_seconds() == 60
    assert balance_of(alice) == 10 * USDC - MINIMUM


@pytest.mark.parametrize(
    ("reason", "total"),
    [
        (StopReason.USER, 1_000_010),  # the minimum, within her maxCost
        (StopReason.VENDOR, USDC // 2),  # the 30 s used
        (StopReason.STAFF, USDC // 2),
    ],
)
def test_the_minimum_charge_is_owed_within_max_cost(alice, fund, make_service, clock, reason, total):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC, minimum_charge=MINIMUM), max_cost=Decimal("1.000010"))

    clock.move(seconds=30)
    session = stop(session, reason=reason)

    assert (session.stop_reason, session.total_cost) == (reason, total)
    assert balance_of(alice) == 10 * USDC - total


def test_reaching_max_cost_owes_the_minimum_charge_within_it(alice, fund, make_service, clock):
    """maxCost 1.000010 USDC under a 5 USDC minimum: its time runs out at 60 s (1 USDC: 10 minor
    units more would take 0.6 ms), and the stop collects the 10 left of the minimum within the cap."""
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC, minimum_charge=MINIMUM), max_cost=Decimal("1.000010"))
    for _ in range(2):
        clock.move(seconds=60)
        beat(session)
        run_sweep()

    session = fresh(session)
    assert (session.status, session.stop_reason, session.total_cost) == (
        SessionStatus.STOPPED,
        StopReason.MAX_COST,
        1_000_010,
    )
    assert (session.end_time - session.start_time).total_seconds() == 60
    assert charges_of(session) == [USDC, 10]
    assert balance_of(alice) == 10 * USDC - 1_000_010


def test_funds_running_out_owe_the_minimum_charge_within_them(alice, fund, make_service, clock):
    """Held from its start, the minimum is met by the time used before the funds can run out: the
    session stops at the instant they do, charged all she had and never below zero."""
    fund(alice, 6 * USDC)  # the first minute and the minimum, all held at the start
    session = start(alice, make_service("per_minute", rate=USDC, minimum_charge=MINIMUM))
    for _ in range(7):
        clock.move(seconds=60)
        beat(session)
        run_sweep()

    session = fresh(session)
    assert (session.status, session.stop_reason, session.total_cost) == (
        SessionStatus.STOPPED,
        StopReason.INSUFFICIENT_FUNDS,
        6 * USDC,
    )
    assert (session.end_time - session.start_time).total_seconds() == 360
    assert balance_of(alice) == 0


def test_too_little_money_at_start_is_402_and_moves_nothing(api, alice, fund, make_service):
    fund(alice, 999_999)
    service = make_service("per_minute", rate=USDC)

    response = api(alice).post("/api/v1/streams/start", {"serviceId": service.pk}, format="json")

    assert response.status_code == 402
    body = response.json()
    assert body["code"] == "insufficient_funds"
    assert (body["needed"], body["available"]) == ("1.000000", "0.999999")
    assert balance_of(alice) == 999_999
    assert not LedgerTransaction.objects.filter(kind=TransactionKind.CHARGE).exists()


def test_funds_run_out_mid_session(alice, victor, fund, make_service, clock):
    """2.5 USDC at 1 USDC a minute: stopped at exactly 150 s, balance exactly 0."""
    fund(alice, 2_500_000)
    session = start(alice, make_service("per_minute", rate=USDC))
    for _ in range(3):
        clock.move(seconds=60)
        beat(session)
        run_sweep()

    session = fresh(session)
    assert session.status == SessionStatus.STOPPED
    assert session.stop_reason == StopReason.INSUFFICIENT_FUNDS
    assert (session.end_time - session.start_time).total_seconds() == 150
    assert session.total_cost == 2_500_000
    assert balance_of(alice) == 0
    charges = charges_of(session)
    assert balance_of(victor) == sum(split(c)[0] for c in charges)
    assert balance_of(victor) + system_balance(SystemAccount.PLATFORM_REVENUE) == 2_500_000


def test_a_payers_sessions_share_its_free_balance_in_id_order(alice, fund, make_service, clock):
    """Three sessions of one wallet in one batch: each may use its hold plus what the earlier ones
    (by id) left of the free balance, as if billed one after the other."""
    from datetime import timedelta

    fund(alice, 4_500_000)
    first, second, third = (start(alice, make_service("per_minute", rate=USDC)) for _ in range(3))
    assert balance_of(alice) == 4_500_000  # each holds its first minute: 1.5 USDC left free

    clock.move(seconds=60)
    for session in (first, second, third):
        beat(session)
    run_sweep()

    first, second, third = fresh(first), fresh(second), fresh(third)
    assert [s.total_cost for s in (first, second, third)] == [USDC, USDC, USDC]
    # The first renews its minute out of the free 1.5 USDC; the second gets what is left, 0.5 USDC
    # (30 s more); the third nothing: it ends where it is charged up to.
    assert (first.hold.amount, first.stop_at) == (USDC, None)
    assert (second.hold.amount, second.stop_at) == (500_000, second.start_time + timedelta(seconds=90))
    assert (third.hold.amount, third.stop_at) == (0, third.start_time + timedelta(seconds=60))
    assert second.stop_at_reason == third.stop_at_reason == StopReason.INSUFFICIENT_FUNDS
    assert all(s.status == SessionStatus.ACTIVE for s in (first, second, third))
    assert balance_of(alice) == 1_500_000

    clock.move(seconds=60)
    for session in (first, second, third):
        beat(session)
    run_sweep()

    first, second, third = fresh(first), fresh(second), fresh(third)
    assert [s.total_cost for s in (first, second, third)] == [2 * USDC, 1_500_000, USDC]
    assert [(s.end_time - s.start_time).total_seconds() for s in (second, third)] == [90, 60]
    assert (second.status, third.status) == (SessionStatus.STOPPED, SessionStatus.STOPPED)
    assert (first.status, first.stop_at, first.hold.amount) == (
        SessionStatus.ACTIVE,
        first.start_time + timedelta(seconds=120),
        0,
    )
    assert balance_of(alice) == 0


def test_funds_running_out_warns_first(alice, fund, make_service, clock):
    from datetime import timedelta

    from notifications.models import Notification

    fund(alice, 2_500_000)
    session = start(alice, make_service("per_minute", rate=USDC))
    clock.move(seconds=60)
    beat(session)
    run_sweep()  # 1.5 USDC left: 90 s of runway, under 5 minutes
    assert fresh(session).stop_at is None
    clock.move(seconds=60)
    beat(session)
    run_sweep()  # 0.5 USDC left: the next minute cannot be covered

    session = fresh(session)
    assert session.status == SessionStatus.ACTIVE
    assert session.stop_at == session.start_time + timedelta(seconds=150)
    assert session.stop_at_reason == StopReason.INSUFFICIENT_FUNDS
    assert session.hold.amount == 500_000  # all that is left is kept for this session
    titles = list(Notification.objects.filter(user=alice, type="alert").values_list("title", flat=True))
    assert titles == ["Low balance", "Low balance"]  # under 5 minutes, then under 1 minute


def _warned(alice, fund, make_service, clock):
    """A session of 2.5 USDC at 1 USDC a minute, told at 120 s that its money runs out at 150 s."""
    fund(alice, 2_500_000)
    session = start(alice, make_service("per_minute", rate=USDC))
    for _ in range(2):
        clock.move(seconds=60)
        beat(session)
        run_sweep()
    assert (fresh(session).stop_at - session.start_time).total_seconds() == 150
    return session


def test_a_session_topped_up_after_its_warning_goes_on(alice, fund, make_service, clock):
    """Its stop_at was reckoned from the money it had then; with more since, it is reckoned again
    (it was stopped at 150 s with 100 USDC in the wallet)."""
    session = _warned(alice, fund, make_service, clock)
    clock.move(seconds=5)
    fund(alice, 100 * USDC)
    for seconds in (20, 20, 15):
        clock.move(seconds=seconds)
        beat(session)
    run_sweep()  # at 180 s

    session = fresh(session)
    assert session.status == SessionStatus.ACTIVE
    assert session.total_cost == 3 * USDC
    assert (session.stop_at, session.stop_at_reason, session.hold.amount) == (None, "", USDC)
    assert balance_of(alice) == 102_500_000 - 3 * USDC


def test_the_live_hub_at_the_warned_instant_bills_rather_than_stops(alice, bob, fund, make_service, clock):
    """The hub ends a session at its stop_at, between sweeps: topped up, it is billed there and goes
    on; not, it stops there, as the sweep would have."""
    from datetime import timedelta

    from streaming.hub import _stop_session

    topped = _warned(alice, fund, make_service, clock)
    fund(alice, 100 * USDC)
    clock.move(seconds=30)  # at 150 s, the instant it was told
    beat(topped)
    _stop_session(topped.pk, topped.start_time + timedelta(seconds=150))

    topped = fresh(topped)
    assert (topped.status, topped.total_cost, topped.stop_at) == (SessionStatus.ACTIVE, 2_500_000, None)

    alone = _warned(bob, fund, make_service, clock)
    clock.move(seconds=30)
    _stop_session(alone.pk, alone.start_time + timedelta(seconds=150))

    alone = fresh(alone)
    assert (alone.status, alone.stop_reason) == (SessionStatus.STOPPED, StopReason.INSUFFICIENT_FUNDS)
    assert (alone.end_time - alone.start_time).total_seconds() == 150


def test_the_rest_of_the_minimum_charge_stays_held_while_it_runs(alice, bob, fund, make_service, clock):
    """Held at its start with the first minute, the minimum was released by the first sweep: the
    wallet emptied, the stop charged 2 USDC of a 5 USDC minimum."""
    from wallets import ledger
    from wallets.services import wallet_transfer

    fund(alice, 7 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC, minimum_charge=5 * USDC))
    assert fresh(session).hold.amount == 6 * USDC
    clock.move(seconds=60)
    beat(session)
    run_sweep()

    assert fresh(session).hold.amount == USDC + 4 * USDC  # the next minute and the minimum's rest
    with pytest.raises(Exception, match="Insufficient funds"):
        wallet_transfer(sender=alice, recipient=bob, asset=ledger.asset_get("USDC"), amount=5 * USDC)
    clock.move(seconds=30)
    session = stop(session)
    assert session.total_cost == 5 * USDC
    assert balance_of(alice) == 2 * USDC


def test_low_balance_alerts_once_per_crossing_and_rearm_after_top_up(alice, fund, make_service, clock):
    from notifications.models import Notification

    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))  # runway 10 minutes
    for _ in range(6):  # sweeps at 1..6 min: the runway drops under 5 min once
        clock.move(seconds=60)
        beat(session)
        run_sweep()
    assert Notification.objects.filter(user=alice, title="Low balance").count() == 1

    fund(alice, 20 * USDC)
    clock.move(seconds=60)
    beat(session)
    run_sweep()
    assert fresh(session).alert_level == 0  # re-armed

    Notification.objects.filter(user=alice).delete()
    for _ in range(24):  # 23 USDC left at minute 7: it runs out at minute 30
        clock.move(seconds=60)
        beat(session)
        run_sweep()
    titles = list(Notification.objects.filter(user=alice, type="alert").order_by("id").values_list("title", flat=True))
    # under 5 minutes, under 1 minute, then the stop: each once
    assert titles == ["Low balance", "Low balance", "Session stopped: funds ran out"]
    session = fresh(session)
    assert session.status == SessionStatus.STOPPED
    assert session.total_cost == 30 * USDC
    assert balance_of(alice) == 0


def test_a_sessions_end_is_told_in_its_own_token(alice, victor, fund, make_service, clock):
    """An amount without its token is no amount: a session in USDT is not a session in USDC."""
    from notifications.models import Notification

    fund(alice, 10 * USDC, "USDT")
    session = start(alice, make_service("per_minute", rate=USDC, token="USDT"))
    clock.move(seconds=30)
    beat(session)
    stop(session)

    told = {n.user_id: n for n in Notification.objects.filter(title="Session ended")}
    assert told[alice.pk].message.endswith("ended; it cost 0.500000 USDT.")
    assert told[victor.pk].message.endswith("it was billed 0.500000 USDT before the platform fee.")
    for notification in told.values():
        assert (notification.data["totalCost"], notification.data["token"]) == ("0.500000", "USDT")


def test_a_session_stopped_as_funds_ran_out_is_told_in_its_own_token(alice, fund, make_service, clock):
    from notifications.models import Notification

    fund(alice, 2 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    for _ in range(3):
        clock.move(seconds=60)
        beat(session)
        run_sweep()

    stopped = Notification.objects.get(user=alice, title="Session stopped: funds ran out")
    assert stopped.message.endswith("It cost 2.000000 USDC.")
    assert stopped.data["token"] == "USDC"


def test_a_max_cost_nearing_is_not_a_low_balance(alice, fund, make_service, clock):
    """The alert says the wallet runs low: a session nearing the cap its user set, with 1,000 USDC
    in the wallet, was told to top up (its runway was reckoned from what maxCost leaves). The
    socket still tells how long it runs, its cap included."""
    from notifications.models import Notification

    fund(alice, 1000 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC), max_cost=Decimal(4))
    clock.move(seconds=60)
    beat(session)
    [billed] = run_sweep_outcomes()

    assert not Notification.objects.filter(user=alice, type="alert").exists()
    assert fresh(session).alert_level == 0
    assert (billed.charge, billed.runway_ms) == (USDC, 180_000)  # 3 USDC of maxCost left: 3 minutes
    assert billed.remaining == 999 * USDC  # the wallet's, not the cap's


def test_two_sessions_share_one_wallet_runway(alice, fund, make_service, clock):
    """With 8 USDC and two sessions at 1 USDC a minute, after the first minute 6 USDC are left:
    3 minutes for both, not 6 and 5 minutes each (each counted alone, none alerted)."""
    from notifications.models import Notification

    fund(alice, 8 * USDC)
    a = start(alice, make_service("per_minute", rate=USDC))
    b = start(alice, make_service("per_minute", rate=USDC))
    clock.move(seconds=60)
    beat(a)
    beat(b)
    outcomes = run_sweep_outcomes()

    assert [(o.runway_ms, o.remaining) for o in outcomes] == [(180_000, 6 * USDC)] * 2
    assert Notification.objects.filter(user=alice, type="alert", title="Low balance").count() == 2
    assert fresh(a).alert_level == fresh(b).alert_level == 1
    assert balance_of(alice) == 6 * USDC


def test_a_payers_runway_counts_its_sessions_at_their_own_rates(alice, fund, make_service, clock):
    """1 USDC a minute and 6 USDC an hour (0.1 a minute) from 12.1 USDC: after a minute, 11 USDC
    at 1.1 USDC a minute last 10 minutes; a session paid once at its start does not shorten it."""
    fund(alice, 12_200_000)
    minute = start(alice, make_service("per_minute", rate=USDC))
    hour = start(alice, make_service("per_hour", rate=6 * USDC))
    once = start(alice, make_service("per_session", rate=100_000))
    clock.move(seconds=60)
    for session in (minute, hour, once):
        beat(session)
    outcomes = run_sweep_outcomes()

    assert [o.charge for o in outcomes] == [USDC, 100_000, 0]
    assert [o.runway_ms for o in outcomes] == [600_000, 600_000, None]
    assert [o.remaining for o in outcomes] == [11 * USDC] * 3
    assert balance_of(alice) == 11 * USDC


def test_max_cost_stops_at_the_cap(alice, fund, make_service, clock):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC), max_cost=Decimal("1.5"))
    for _ in range(3):
        clock.move(seconds=60)
        beat(session)
        run_sweep()

    session = fresh(session)
    assert session.status == SessionStatus.STOPPED
    assert session.stop_reason == StopReason.MAX_COST
    assert session.total_cost == 1_500_000
    assert (session.end_time - session.start_time).total_seconds() == 90
    assert balance_of(alice) == 8_500_000


@pytest.mark.parametrize(("free_seconds", "stops_after"), [(0, 30), (10, 40)])
def test_a_session_capped_within_its_first_period_is_told_at_start_when_it_stops(
    api, alice, fund, make_service, clock, free_seconds, stops_after
):
    """maxCost 0.5 USDC at 1 USDC a minute runs out 30 s in (after the free seconds), before the
    first sweep could tell it: the start tells it (stopAt, as every sweep tells a session that
    cannot cover the coming period), so the live hub stops it then. Told nothing, it ran on past
    its cap until the sweep, the user shown an estimate above what he allowed."""
    fund(alice, 10 * USDC)
    service = make_service("per_minute", rate=USDC, free_seconds=free_seconds)

    started = api(alice).post("/api/v1/streams/start", {"serviceId": service.pk, "maxCost": "0.5"}, format="json")

    assert started.status_code == 201, started.json()
    session = StreamingSession.objects.get(session_id=started.json()["session"]["id"])
    assert (session.stop_at - session.start_time, session.stop_at_reason) == (
        timedelta(seconds=stops_after),
        StopReason.MAX_COST,
    )
    assert started.json()["session"]["stopAt"] is not None
    clock.move(seconds=stops_after + 15)
    beat(session)
    run_sweep()
    session = fresh(session)
    assert (session.status, session.stop_reason, session.total_cost) == (
        SessionStatus.STOPPED,
        StopReason.MAX_COST,
        USDC // 2,
    )
    assert session.end_time - session.start_time == timedelta(seconds=stops_after)


def test_a_cap_beyond_the_first_period_is_left_to_the_sweeps(alice, fund, make_service):
    fund(alice, 10 * USDC)

    session = start(alice, make_service("per_minute", rate=USDC), max_cost=Decimal(1))

    assert (session.stop_at, session.stop_at_reason) == (None, "")


@pytest.mark.parametrize(("minimum", "needed"), [(USDC, USDC), (3 * USDC, 3 * USDC)])
def test_a_session_fee_counts_towards_the_minimum_charge_a_start_holds(api, alice, fund, make_service, minimum, needed):
    """A per-session service of 1 USDC whose minimum charge is 1 USDC can never cost more than 1
    USDC: a start needs that much, not the fee and the minimum again (billing holds the minimum
    less the session's cost; the start held both). With a minimum of 3 USDC, it needs 3."""
    service = make_service("per_session", rate=USDC, minimum_charge=minimum)
    fund(alice, needed - 1)
    refused = api(alice).post("/api/v1/streams/start", {"serviceId": service.pk}, format="json")
    fund(alice, 1)

    started = api(alice).post("/api/v1/streams/start", {"serviceId": service.pk}, format="json")

    assert (refused.status_code, refused.json()["needed"]) == (402, f"{needed // USDC}.000000")
    assert started.status_code == 201, started.json()
    session = fresh(StreamingSession.objects.get(session_id=started.json()["session"]["id"]))
    assert (session.total_cost, session.hold.amount) == (USDC, minimum - USDC)
    stop(session)
    assert balance_of(alice) == needed - minimum


def test_a_session_never_holds_more_than_its_max_cost_lets_it_charge(api, alice, fund, make_service, clock):
    """The first hold was a whole period (and the minimum charge) whatever maxCost said: money tied
    up that the session could never charge, and a start refused (402) that maxCost kept within the
    user's funds. Every renewal of the hold was capped already; the first is too."""
    fund(alice, 2 * USDC)
    service = make_service("per_hour", rate=60 * USDC)  # a minute's period: 1 USDC; more than she has with the minimum
    service.minimum_charge = 3 * USDC
    service.save(update_fields=["minimum_charge"])

    refused = api(alice).post("/api/v1/streams/start", {"serviceId": service.pk}, format="json")
    capped = api(alice).post("/api/v1/streams/start", {"serviceId": service.pk, "maxCost": "0.5"}, format="json")

    assert refused.status_code == 402  # 4 USDC held without a cap: she has 2
    assert capped.status_code == 201, capped.json()
    session = StreamingSession.objects.get(session_id=capped.json()["session"]["id"])
    assert session.hold.amount == USDC // 2
    clock.move(seconds=60)
    beat(session)
    run_sweep()
    session = fresh(session)
    assert (session.status, session.stop_reason, session.total_cost) == (
        SessionStatus.STOPPED,
        StopReason.MAX_COST,
        USDC // 2,
    )
    assert balance_of(alice) == USDC + USDC // 2


# Silent sessions stop when their idle timeout runs out, whoever stops them later (test_presence.py):
# this test is about prices, not presence, and leaves the session silent.
@override_settings(SESSION_IDLE_SECONDS=3600)
def test_a_price_change_never_touches_a_running_session(alice, fund, make_service, clock):
    from marketplace.services import service_update

    fund(alice, 10 * USDC)
    service = make_service("per_minute", rate=USDC)
    session = start(alice, service)
    service_update(service=service, rate=5 * USDC)

    clock.move(seconds=120)
    session = stop(session)

    assert session.total_cost == 2 * USDC


def test_stopping_again_charges_nothing_more(api, alice, fund, make_service, clock):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    clock.move(seconds=60)
    client = api(alice)

    first = client.patch(f"/api/v1/streams/{session.session_id}/stop")
    clock.move(seconds=60)
    second = client.patch(f"/api/v1/streams/{session.session_id}/stop")

    assert first.status_code == second.status_code == 200
    assert first.json()["totalCost"] == second.json()["totalCost"] == "1.000000"
    assert first.json()["ratePerMinute"] == "1.000000"
    assert balance_of(alice) == 9 * USDC


def test_sweeps_repeated_at_the_same_instant_charge_once(alice, fund, make_service, clock):
    session = charged_once(alice, fund, make_service, clock)

    run_sweep()  # a re-run, as after a crash that lost nothing
    run_sweep()

    assert fresh(session).total_cost == USDC
    assert len(charges_of(session)) == 1
    assert balance_of(alice) == 9 * USDC


def test_a_crash_mid_sweep_loses_the_batch_and_the_rerun_bills_it_once(alice, bob, fund, make_service, clock):
    from unittest import mock

    from streaming import billing

    fund(alice, 10 * USDC)
    fund(bob, 10 * USDC)
    service = make_service("per_minute", rate=USDC)
    sessions = [start(alice, service), start(bob, service)]
    clock.move(seconds=60)
    for session in sessions:
        beat(session)
    real_bill = billing._bill
    calls = {"n": 0}

    def crash_in_second_batch(**params):
        calls["n"] += 1
        billed = real_bill(**params)  # the batch is billed, then the worker dies before it commits
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return billed

    with (
        mock.patch("streaming.billing._bill", side_effect=crash_in_second_batch),
        pytest.raises(RuntimeError),
    ):
        run_sweep(batch_size=1)
    assert [fresh(s).total_cost for s in sessions] == [USDC, 0]

    run_sweep(batch_size=1)

    assert [fresh(s).total_cost for s in sessions] == [USDC, USDC]
    assert balance_of(alice) == balance_of(bob) == 9 * USDC


def test_shards_split_the_sessions_by_their_vendors_wallet_and_charge_each_once(
    alice, bob, victor, wanda, fund, make_service, clock
):
    """A shard bills the sessions whose vendor's wallet id is its number modulo the shards: every
    session is in exactly one shard, and charged once."""
    fund(alice, 10 * USDC)
    fund(bob, 10 * USDC)
    catalogue = [make_service("per_minute", rate=USDC, vendor=vendor) for vendor in (victor, wanda)]
    sessions = [
        start(alice, catalogue[0]),
        start(bob, catalogue[1]),
        start(alice, catalogue[1]),
        start(bob, catalogue[0]),
    ]
    clock.move(seconds=60)
    for session in sessions:
        beat(session)

    first = run_sweep(shard=0, shards=2)
    charged_by_the_first = {s.pk for s in sessions if fresh(s).total_cost == USDC}
    second = run_sweep(shard=1, shards=2)

    assert charged_by_the_first == {s.pk for s in sessions if s.payee_account_id % 2 == 0}
    assert first.sessions + second.sessions == 4
    assert [fresh(s).total_cost for s in sessions] == [USDC] * 4
    assert [len(charges_of(s)) for s in sessions] == [1] * 4
    assert balance_of(alice) == balance_of(bob) == 8 * USDC


def test_shard_arguments_out_of_range_are_refused_and_charge_nothing(alice, fund, make_service, clock):
    from django.core.management import CommandError, call_command

    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    clock.move(seconds=60)
    beat(session)

    for shard, shards in ((1, 1), (0, 0), (-1, 2), (2, 2)):
        with pytest.raises(ValueError, match="shards must be at least 1"):
            run_sweep(shard=shard, shards=shards)
    with pytest.raises(CommandError, match="shards must be at least 1"):
        call_command("billing_sweep", "--shards", "0")

    assert fresh(session).total_cost == 0
    assert balance_of(alice) == 10 * USDC


@override_settings(PLATFORM_FEE_BPS=2500)
def test_commission_follows_the_setting(alice, victor, fund, make_service, clock):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    clock.move(seconds=60)
    stop(session)

    assert balance_of(victor) == 750_000
    assert system_balance(SystemAccount.PLATFORM_REVENUE) == 250_000


# Silent sessions stop when their idle timeout runs out, whoever stops them later (test_presence.py):
# this test is about payouts, not presence, and leaves the session silent.
@override_settings(SESSION_IDLE_SECONDS=3600)
def earning_past_the_threshold(payer, vendor, make_service, clock) -> None:
    """The vendor (a payout address, a threshold of 1 USDC) earns two minutes of the payer's
    per-minute session, not billed yet."""
    from accounts.models import VendorProfile

    VendorProfile.objects.create(
        user=vendor, business_name="Victor Co", payout_address="0x00" + "cd" * 31, payout_threshold=USDC
    )
    session = start(payer, make_service("per_minute", rate=USDC))
    clock.move(seconds=120)
    beat(session)


def sweep_and_pay_out() -> None:
    """The periodic task: the sweep, then the payouts of the vendors it paid."""
    from django.test import TestCase

    from streaming.tasks import billing_sweep_task

    with TestCase.captureOnCommitCallbacks(execute=True):
        billing_sweep_task()


def test_vendor_payout_is_queued_past_the_threshold(alice, victor, fund, make_service, clock, sandbox):
    from wallets.models import Withdrawal, WithdrawalKind
    from wallets.tests.conftest import chain_deposit

    chain_deposit(alice, 10 * USDC)  # custody on chain to pay out from
    earning_past_the_threshold(alice, victor, make_service, clock)

    sweep_and_pay_out()

    payout = Withdrawal.objects.get(kind=WithdrawalKind.PAYOUT)
    assert payout.user == victor
    assert payout.amount == split(2 * USDC)[0]
    assert balance_of(victor) == 0


def test_earnings_past_the_threshold_wait_for_the_tokens_minimum_withdrawal(
    alice, victor, fund, make_service, clock, sandbox, caplog
):
    """A threshold below the token's minimum (1 USDC, staff raised it to 5): no payout is asked of the
    outbox, which would refuse it at every sweep; the earnings wait in the vendor's wallet until they
    reach the minimum."""
    import logging

    from streaming.payouts import payouts_queue
    from wallets.models import Asset, Withdrawal
    from wallets.services import asset_update
    from wallets.tests.conftest import chain_deposit

    chain_deposit(alice, 10 * USDC)
    asset_update(asset=Asset.objects.get(code="USDC"), minimum_withdrawal=5 * USDC)
    earning_past_the_threshold(alice, victor, make_service, clock)
    caplog.set_level(logging.INFO, logger="paygo.streaming")

    sweep_and_pay_out()

    earned = split(2 * USDC)[0]
    assert balance_of(victor) == earned
    assert not Withdrawal.objects.exists()
    assert "skipped" not in caplog.text  # not refused: not asked
    asset_update(asset=Asset.objects.get(code="USDC"), minimum_withdrawal=earned)
    assert [payout.amount for payout in payouts_queue(vendor_ids=[victor.pk])] == [earned]
    assert balance_of(victor) == 0


def test_a_payout_waits_in_the_vendors_wallet_while_the_treasury_key_does_not_open(
    alice, victor, make_service, clock, sandbox, settings
):
    """The treasury's key sealed under a master key no longer configured (deleted, or rotated away
    without CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS): a payout queued then moved the vendor's money in
    flight for a signature that could not be made. The sweep bills, queues none, and a later sweep
    pays out once the old key is named again."""
    # The settings fixture alone (no @override_settings beside it: its teardown put back the
    # decorator's settings after the decorator had ended, and the next test ran with them).
    settings.SESSION_IDLE_SECONDS = 3600
    from streaming.payouts import payouts_queue
    from wallets.models import Withdrawal, WithdrawalKind
    from wallets.tests.conftest import chain_deposit

    old = "old-master-" + "o" * 30
    settings.CHIPI_KEY_ENCRYPTION_KEY, settings.CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS = old, []
    chain_deposit(alice, 10 * USDC)  # the treasury, its key sealed under `old`
    settings.CHIPI_KEY_ENCRYPTION_KEY = "new-master-" + "n" * 30
    earning_past_the_threshold(alice, victor, make_service, clock)

    sweep_and_pay_out()

    earned = split(2 * USDC)[0]
    assert balance_of(victor) == earned
    assert not Withdrawal.objects.exists()

    settings.CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS = [old]  # the operator names the old key again
    [payout] = payouts_queue(vendor_ids=[victor.pk])
    assert (payout.kind, payout.amount) == (WithdrawalKind.PAYOUT, earned)
    assert balance_of(victor) == 0


@override_settings(SESSION_IDLE_SECONDS=3600)
def test_the_payout_threshold_is_in_usdc_whatever_the_default_token(api, alice, victor, fund, make_service, clock):
    """The threshold is set and shown in USDC; paid against the default asset, which staff may
    change, a threshold of 100 USDC was read as 10^-10 ETH once ETH was the default."""
    from accounts.models import VendorProfile
    from streaming.payouts import payouts_queue
    from wallets.models import Asset, Withdrawal
    from wallets.services import asset_make_default

    VendorProfile.objects.create(user=victor, business_name="Victor Co", payout_address="0x00" + "cd" * 31)
    assert (
        api(victor).put("/api/v1/vendorprofiles/update", {"payoutThreshold": "100"}, format="json").status_code == 200
    )
    asset_make_default(asset=Asset.objects.get(code="ETH"))
    fund(alice, 10**18, "ETH")
    session = start(alice, make_service("per_minute", rate=10**12, token="ETH"))
    clock.move(seconds=120)
    beat(session)
    run_sweep()
    assert balance_of(victor, "ETH") == split(2 * 10**12)[0]  # two minutes at 10^-6 ETH, less the fee

    assert payouts_queue(vendor_ids=[victor.pk]) == []
    assert not Withdrawal.objects.exists()


def charged_once(user, fund, make_service, clock):
    """A funded user's per-minute session, charged by one sweep a minute after it started."""
    fund(user, 10 * USDC)
    session = start(user, make_service("per_minute", rate=USDC))
    clock.move(seconds=60)
    beat(session)
    run_sweep()
    return session


def test_database_refuses_charges_of_unknown_sessions(alice, victor, fund, make_service, clock):
    from django.db import IntegrityError, transaction

    from wallets import ledger
    from wallets.models import Account, Entry

    session = charged_once(alice, fund, make_service, clock)
    payer, payee = Account.objects.get(pk=session.payer_account_id), Account.objects.get(pk=session.payee_account_id)
    charge = ledger.ChargeDebit(payer.pk, 1, 10**12, clock.now(), clock.now(), 0)

    with pytest.raises(IntegrityError, match="unknown session"), transaction.atomic():
        ledger.post_batch([ledger.TxSpec(kind=TransactionKind.CHARGE, entries=[(payee.pk, 1)], charges=[charge])])

    assert list(Entry.objects.filter(session__isnull=False).values_list("session_id", flat=True)) == [session.pk]
    assert charges_of(session) == [USDC]


def test_database_refuses_charges_off_their_sessions_payer(alice, bob, victor, fund, make_service, clock):
    """The guard checks each (session, account) pair a statement names: a charge debiting another
    wallet than its session's payer is refused, alone or beside a correct charge of the same session."""
    from django.db import IntegrityError, transaction

    from wallets import ledger
    from wallets.models import Account, Entry

    session = charged_once(alice, fund, make_service, clock)
    other = fund(bob, 10 * USDC)
    payer, payee = session.payer_account_id, Account.objects.get(pk=session.payee_account_id)
    off = ledger.ChargeDebit(other.pk, 1, session.pk, clock.now(), clock.now(), 0)
    right = ledger.ChargeDebit(payer, 1, session.pk, clock.now(), clock.now(), 0)

    for charges in ([off], [right, off]):
        with pytest.raises(IntegrityError, match="another account than its payer"), transaction.atomic():
            ledger.post_batch(
                [ledger.TxSpec(kind=TransactionKind.CHARGE, entries=[(payee.pk, len(charges))], charges=charges)]
            )

    assert list(Entry.objects.filter(session__isnull=False).values_list("session_id", flat=True)) == [session.pk]
    assert balance_of(bob) == 10 * USDC
    assert charges_of(session) == [USDC]


def test_database_keeps_sessions_that_have_charges(alice, fund, make_service, clock):
    from django.db import IntegrityError, transaction

    from streaming.models import StreamingSession

    charged = charged_once(alice, fund, make_service, clock)

    with pytest.raises(IntegrityError, match="cannot be deleted"), transaction.atomic():
        StreamingSession.objects.filter(pk=charged.pk)._raw_delete(using="default")
    with pytest.raises(IntegrityError, match="never changes"), transaction.atomic():
        StreamingSession.objects.filter(pk=charged.pk).update(id=10**12)

    assert charges_of(charged) == [USDC]


def test_health_finds_charges_that_disagree_with_their_sessions(alice, fund, make_service, clock):
    from django.db import connection, transaction
    from django.db.models import F

    from streaming.models import StreamingSession
    from streaming.selectors import charges_health
    from wallets.models import Entry

    session = charged_once(alice, fund, make_service, clock)
    charge = Entry.objects.get(session=session)
    assert charges_health() == {
        "healthy": True,
        "dangling_charges": 0,
        "charges_off_payer": 0,
        "sessions_whose_total_is_not_their_charges": 0,
    }

    with transaction.atomic():
        with connection.cursor() as cursor:  # past the database's own checks, as a bad script would
            cursor.execute("ALTER TABLE wallets_entry DISABLE TRIGGER streaming_charges_refer")
            cursor.execute("ALTER TABLE wallets_entry DISABLE TRIGGER wallets_entry_balanced")
            cursor.execute(
                "INSERT INTO wallets_entry (transaction_id, account_id, asset_id, amount, session_id, billed_from, "
                "billed_until, fee, created_at) VALUES (%s, %s, %s, -1, %s, now(), now(), 0, now()), "
                "(%s, %s, %s, -1, %s, now(), now(), 0, now())",
                [
                    *(charge.transaction_id, session.payee_account_id, charge.asset_id, session.pk),
                    *(charge.transaction_id, charge.account_id, charge.asset_id, 10**12),
                ],
            )
        StreamingSession.objects.filter(pk=session.pk).update(total_cost=F("total_cost") + 5)
        health = charges_health()
        transaction.set_rollback(True)

    assert health == {
        "healthy": False,
        "dangling_charges": 1,
        "charges_off_payer": 1,
        "sessions_whose_total_is_not_their_charges": 1,
    }
    assert charges_health()["healthy"]


@pytest.mark.parametrize("deactivated", ["vendor", "payer"])
def test_deactivating_either_side_stops_their_sessions_charged_up_to_then(
    alice, bob, victor, wanda, fund, make_service, clock, deactivated
):
    """An operator shuts a (say fraudulent) vendor down, or a payer's account: the sessions they
    host or pay for stop then, charged to that instant (the time used: staff ended it, so no
    minimum charge is owed), and nobody else's."""
    from django.test import TestCase
    from django.utils import timezone

    from accounts.services import user_deactivate

    fund(alice, 10 * USDC)
    fund(bob, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC, minimum_charge=5 * USDC))
    elsewhere = start(bob, make_service("per_minute", rate=USDC, vendor=wanda))
    for _ in range(3):
        clock.move(seconds=30)
        beat(session)
        beat(elsewhere)
    run_sweep()

    with TestCase.captureOnCommitCallbacks(execute=True):
        user_deactivate(user=victor if deactivated == "vendor" else alice)
    deactivated_at = timezone.now()
    stopped = fresh(session)
    paid, earned = balance_of(alice), balance_of(victor)
    for _ in range(6):  # alice's player keeps beating for three more minutes
        clock.move(seconds=30)
        beat(session)
        beat(elsewhere)
        run_sweep()

    session = fresh(session)
    assert (session.status, session.stop_reason, session.end_time) == (
        SessionStatus.STOPPED,
        StopReason.STAFF,
        deactivated_at,
    )
    assert session.total_cost == stopped.total_cost == 3 * USDC // 2  # 90 s
    assert (balance_of(alice), balance_of(victor)) == (paid, earned)
    assert paid == 10 * USDC - session.total_cost
    assert fresh(elsewhere).status == SessionStatus.ACTIVE
    assert fresh(elsewhere).total_cost == 9 * USDC // 2  # charged to the last sweep: 90 s, then 180 s more
    assert balance_of(bob) == 10 * USDC - 9 * USDC // 2


@pytest.mark.parametrize(("who", "reason"), [("vendor", StopReason.VENDOR), ("staff", StopReason.STAFF)])
def test_retiring_a_service_stops_its_sessions_charged_up_to_then(
    api, alice, bob, victor, olga, fund, make_service, clock, who, reason
):
    """A retired (deleted) service is gone from the marketplace and its page: its sessions stop
    then, charged to that instant, as stopped by whoever retired it, however long the user's
    player goes on beating. Another service's sessions, and a service merely deactivated, go on."""
    from django.utils import timezone

    fund(alice, 10 * USDC)
    fund(bob, 10 * USDC)
    retired, paused = make_service("per_minute", rate=USDC), make_service("per_minute", rate=USDC)
    session, elsewhere = start(alice, retired), start(bob, paused)
    for _ in range(3):
        clock.move(seconds=30)
        beat(session)
        beat(elsewhere)
    assert api(victor).patch(f"/api/v1/service/{paused.pk}/toggle-status").status_code == 200

    response = api(victor if who == "vendor" else olga).delete(f"/api/v1/service/{retired.pk}")

    assert response.status_code == 200, response.json()
    retired_at = timezone.now()
    stopped = fresh(session)
    for _ in range(4):
        clock.move(seconds=30)
        beat(session)
        beat(elsewhere)
        run_sweep()
    session = fresh(session)
    assert (session.status, session.stop_reason, session.end_time) == (SessionStatus.STOPPED, reason, retired_at)
    assert session.total_cost == stopped.total_cost == int(1.5 * USDC)
    assert balance_of(alice) == 10 * USDC - session.total_cost
    assert fresh(elsewhere).status == SessionStatus.ACTIVE
