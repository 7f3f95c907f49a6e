"""The sweep under real concurrency on PostgreSQL, and its arithmetic over many runs."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import time_machine

from conftest import in_thread, money_db
from streaming import services
from streaming.models import SessionCharge, SessionStatus
from streaming.sweep import sweep
from streaming.tests.conftest import T0, USDC, fresh
from wallets.tests.conftest import balance_of, fund_wallet


@pytest.fixture
def sessions_running(alice, bob, make_service):
    fund_wallet(alice, 50 * USDC)
    fund_wallet(bob, 50 * USDC)
    service = make_service("per_minute", rate=USDC)
    with time_machine.travel(T0, tick=False):
        started = [services.session_start(user=user, service=service) for user in (alice, bob) * 5]
    later = T0 + timedelta(seconds=60)
    for session in started:
        services.session_heartbeat(session_id=session.pk, now=later)
    return started, later


@money_db
def test_two_sweeps_at_once_charge_each_period_once(sessions_running, alice, bob):
    started, later = sessions_running
    barrier = threading.Barrier(2)

    @in_thread
    def run(_):
        barrier.wait()
        return sweep(now=later, batch_size=3).charged

    with ThreadPoolExecutor(max_workers=2) as pool:
        charged = sum(pool.map(run, range(2)))

    assert charged == 10  # each session charged by exactly one of the two
    assert all(fresh(s).total_cost == USDC for s in started)
    assert SessionCharge.objects.count() == 10
    assert balance_of(alice) == balance_of(bob) == 45 * USDC


@money_db
def test_stop_during_a_sweep_charges_once(sessions_running, alice, bob):
    started, later = sessions_running
    barrier = threading.Barrier(2)

    @in_thread
    def run_sweep(_):
        barrier.wait()
        return sweep(now=later, batch_size=1)

    @in_thread
    def stop_all(_):
        barrier.wait()
        with time_machine.travel(later, tick=False):
            return [services.session_stop(session=s, reason="user").total_cost for s in started]

    with ThreadPoolExecutor(max_workers=2) as pool:
        sweeping = pool.submit(run_sweep, 0)
        stopping = pool.submit(stop_all, 0)
        sweeping.result()
        costs = stopping.result()

    assert costs == [USDC] * 10
    assert all(fresh(s).status == SessionStatus.COMPLETED for s in started)
    assert balance_of(alice) == balance_of(bob) == 45 * USDC


def _no_drift(alice, fund, make_service, sweeps: int) -> None:
    """1 USDC a minute (16,666.66... minor units a second), billed every 1.007 s."""
    from streaming.billing import ROW_FIELDS, Row, bill
    from streaming.models import StreamingSession

    fund(alice, 1000 * USDC)
    session = services.session_start(user=alice, service=make_service("per_minute", rate=USDC))
    now = session.start_time
    for _ in range(sweeps):
        now += timedelta(milliseconds=1_007)
        StreamingSession.objects.filter(pk=session.pk).update(last_heartbeat_at=now)
        row = Row.from_values(StreamingSession.objects.filter(pk=session.pk).values(*ROW_FIELDS).get())
        bill([row], now=now)

    session = fresh(session)
    assert session.total_cost == USDC * sweeps * 1_007 // 60_000
    charges = SessionCharge.objects.filter(session=session).values_list("amount", flat=True)
    assert session.charge_count == len(charges) == sweeps
    assert sum(charges) == session.total_cost
    assert balance_of(alice) == 1000 * USDC - session.total_cost


@pytest.mark.django_db
def test_no_drift_over_many_sweeps(alice, fund, make_service):
    _no_drift(alice, fund, make_service, sweeps=300)


@pytest.mark.stress
@pytest.mark.timeout(1800)
@pytest.mark.django_db
def test_no_drift_over_ten_thousand_sweeps(alice, fund, make_service):
    """The issue's 10,000 sweeps through the real billing path (make stress; about two minutes).
    The suite runs the same 10,000 steps on the arithmetic in test_pricing.py."""
    _no_drift(alice, fund, make_service, sweeps=10_000)
