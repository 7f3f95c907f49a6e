"""The live-cost tick (streaming/live.py) against billing itself: the balance and runway that a
sweep at the same instant publishes, and what a stop by the user at that instant charges."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from paygo.api.amounts import format_minor
from streaming import live, selectors, services
from streaming.tests.conftest import T0, USDC, beat, run_sweep, start, stop
from wallets.tests.conftest import fund_wallet

pytestmark = pytest.mark.django_db

# Seconds after the start: a sweep at each, most of them between two whole seconds, until the
# money or maxCost is about to run out (the last two come after the sweep that set its stopAt).
INSTANTS = (13.25, 60, 61.999, 97.123, 150.5, 200, 250.75, 262.5)


def _charged_messages(monkeypatch) -> list[dict]:
    """What the sweep publishes to the sessions' sockets (sessions marked watched, on Redis)."""
    sent: list[dict] = []
    monkeypatch.setattr(live, "send", lambda session_id, message: sent.append(message))
    return sent


@pytest.mark.parametrize(
    ("unit", "rate", "free_seconds", "funds", "max_cost"),
    [
        pytest.param("per_minute", USDC, 0, 5 * USDC, None, id="funds-bound"),
        pytest.param("per_minute", USDC, 0, 10 * USDC, Decimal("4.5"), id="max-cost-bound"),
        pytest.param("per_second", 7_777, 7, 5 * USDC, Decimal("2.1"), id="max-cost-bound-odd-rate-free-seconds"),
        pytest.param("per_hour", 47 * USDC, 0, 3_900_000, Decimal(4), id="funds-bound-under-max-cost"),
    ],
)
def test_the_ticks_runway_and_balance_are_what_a_sweep_then_publishes(
    alice, make_service, clock, monkeypatch, unit, rate, free_seconds, funds, max_cost
):
    """A tick's runway came from the funds alone: maxCost 5 USDC at 1 USDC a minute with 10 USDC
    in the wallet, cost.charged said 240 s were left after the first minute, and every tick said
    540 s. At each instant the tick, from what the hub holds (the session as the last sweep left
    it), says what the sweep at that instant publishes, and so does the tick after it."""
    fund_wallet(alice, funds)
    service = make_service(unit, rate=rate, free_seconds=free_seconds)
    session = start(alice, service, **({} if max_cost is None else {"max_cost": max_cost}))
    sent = _charged_messages(monkeypatch)
    compared = 0
    for seconds in INSTANTS:
        now = clock.move(seconds=seconds - (clock.now() - T0).total_seconds())
        beat(session)
        before = live.tick(selectors.live_session_for(alice, session.session_id), now)
        live.mark_watched([session.session_id])
        sent.clear()

        run_sweep(now=now)

        [charged] = [message for message in sent if message["type"] == "cost.charged"]
        after = live.tick(selectors.live_session_for(alice, session.session_id), now)
        assert (before["runwaySeconds"], before["balance"]) == (charged["runwaySeconds"], charged["balance"]), seconds
        assert (after["runwaySeconds"], after["balance"]) == (charged["runwaySeconds"], charged["balance"]), seconds
        assert after["estimatedCost"] == before["estimatedCost"] == charged["charged"], seconds
        compared += 1
    assert compared == len(INSTANTS)
    assert 0 < charged["runwaySeconds"] < 60  # the last instants are in the session's last minute


def test_a_max_cost_bound_runway_is_what_the_cap_leaves(alice, make_service, clock):
    """maxCost 5 USDC at 1 USDC a minute, 10 USDC in the wallet: 30 s after the first minute's
    sweep the cap leaves 3.5 USDC, 210 s (the ticks said 510 s, from the wallet alone); the
    balance is still the wallet's."""
    fund_wallet(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC), max_cost=Decimal(5))
    now = clock.move(seconds=60)
    beat(session)
    run_sweep(now=now)

    tick = live.tick(selectors.live_session_for(alice, session.session_id), clock.move(seconds=30))

    assert (tick["runwaySeconds"], tick["balance"], tick["estimatedCost"]) == (210, "8.500000", "1.500000")


# (service, session, funds, sweeps before, instant, what a stop then charges): the seconds are
# after the start; a heartbeat at each sweep and at the stop.
STOPS = [
    pytest.param({"rate": USDC, "minimum_charge": 5 * USDC}, {}, 10 * USDC, (), 60, "5.000000", id="minimum-charge"),
    pytest.param(
        {"rate": USDC, "minimum_charge": 5 * USDC},
        {},
        10 * USDC,
        (60, 120),
        150.5,
        "5.000000",
        id="minimum-charge-after-sweeps",
    ),
    pytest.param(
        {"rate": USDC, "minimum_charge": 5 * USDC},
        {},
        10 * USDC,
        (60, 120, 180, 240, 300),
        330,
        "5.500000",
        id="past-the-minimum-charge",
    ),
    pytest.param(
        {"rate": USDC, "minimum_charge": 5 * USDC},
        {"max_cost": Decimal(3)},
        10 * USDC,
        (),
        60,
        "3.000000",
        id="minimum-charge-within-max-cost",
    ),
    pytest.param({"rate": USDC}, {"max_cost": Decimal("0.5")}, 10 * USDC, (), 45, "0.500000", id="past-max-cost"),
    pytest.param({"rate": USDC}, {}, 1_500_000, (60,), 100, "1.500000", id="past-the-funds"),
    pytest.param(
        {"rate": 7_777, "unit": "per_second", "free_seconds": 7},
        {"max_cost": Decimal("0.333333")},
        5 * USDC,
        (30,),
        59.5,
        "0.333329",
        id="past-max-cost-odd-rate",
    ),
]


@pytest.mark.parametrize(("service_kwargs", "start_kwargs", "funds", "sweeps", "at", "expected"), STOPS)
def test_the_estimate_is_what_a_stop_then_charges(
    alice, make_service, clock, service_kwargs, start_kwargs, funds, sweeps, at, expected
):
    """The estimate went on past maxCost and the funds, which no stop charges (maxCost 0.5 USDC
    at 1 USDC a minute showed 0.750000 after 45 s; stopping then charged 0.500000), and left out
    the minimum charge (1 USDC a minute with a 5 USDC minimum showed 1.000000 after a minute;
    stopping then charged 5.000000)."""
    fund_wallet(alice, funds)
    service_kwargs = {"unit": "per_minute", **service_kwargs}
    session = start(alice, make_service(service_kwargs.pop("unit"), **service_kwargs), **start_kwargs)
    for seconds in sweeps:
        clock.move(seconds=seconds - (clock.now() - T0).total_seconds())
        beat(session)
        run_sweep(now=clock.now())
    now = clock.move(seconds=at - (clock.now() - T0).total_seconds())
    beat(session)
    tick = live.tick(selectors.live_session_for(alice, session.session_id), now)

    stopped = stop(session)

    assert stopped.end_time <= now
    assert tick["estimatedCost"] == format_minor(stopped.total_cost, 6) == expected


@pytest.mark.parametrize(("minimum", "expected"), [(0, "0.007000"), (50_000, "0.050000")])
def test_a_usage_sessions_estimate_is_what_a_stop_then_charges(alice, make_service, clock, minimum, expected):
    """The usage reported since the last sweep, and the rest of the minimum charge: the estimate
    showed only what sweeps had charged."""
    fund_wallet(alice, 10 * USDC)
    session = start(alice, make_service("per_request", rate=1_000, minimum_charge=minimum))
    services.usage_report(session=session, event_id="e1", quantity=7)
    now = clock.move(seconds=5)
    tick = live.tick(selectors.live_session_for(alice, session.session_id), now)

    stopped = stop(session)

    assert tick["estimatedCost"] == format_minor(stopped.total_cost, 6) == expected
    assert tick["runwaySeconds"] is None


@override_settings(SESSION_IDLE_SECONDS=60)
@pytest.mark.parametrize("who", ["alice", "victor"])
def test_a_silent_sessions_estimate_stops_at_its_idle_end(alice, victor, make_service, clock, who):
    """Silent past its idle timeout, a session has ended there, whoever stops it later: the tick
    went on counting (the vendor's socket, no sign of life, saw 1.833333 after 110 s, and the stop
    then charged the 60 s to the idle end, 1.000000)."""
    fund_wallet(alice, 100 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    clock.move(seconds=30)
    beat(session)  # its last sign of life: the idle end is 90 s after the start
    now = clock.move(seconds=80)
    tick = live.tick(selectors.live_session_for({"alice": alice, "victor": victor}[who], session.session_id), now)

    stopped = stop(session)

    assert (stopped.stop_reason, stopped.total_cost) == ("idle", 1_500_000)
    assert (tick["estimatedCost"], tick["elapsedSeconds"]) == ("1.500000", 90)
    assert (tick["balance"], tick["runwaySeconds"]) == ("98.500000", 0)  # what it left, and no time: it has ended


@override_settings(SESSION_IDLE_SECONDS=60)
def test_a_tick_before_the_idle_end_runs_to_now(alice, make_service, clock):
    fund_wallet(alice, 100 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    now = clock.move(seconds=59.5)

    tick = live.tick(selectors.live_session_for(alice, session.session_id), now)

    assert (tick["estimatedCost"], tick["elapsedSeconds"], tick["runwaySeconds"]) == ("0.991666", 59, 5940)
