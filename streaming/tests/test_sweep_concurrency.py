"""The sweep under real concurrency on PostgreSQL, and its arithmetic over many runs."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import time_machine

from conftest import backend_pid, in_thread, money_db, wait_until_blocked_on_a_lock
from streaming import services
from streaming.models import SessionStatus
from streaming.sweep import sweep
from streaming.tests.conftest import T0, USDC, charges_of, fresh
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
    assert sum(len(charges_of(s)) for s in started) == 10
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


@money_db
def test_stop_waiting_for_a_sweep_that_renewed_the_hold_bills_from_the_new_hold(alice, make_service):
    """The sweep charges the first billable half minute and raises the hold from 0.5 to 1 USDC while
    a stop waits for the session's row: the stop must close the hold the sweep left, not the one
    it read before waiting (that posting would be refused, and the stop would fail)."""
    from django.db import transaction

    from streaming.billing import bill_batch
    from wallets.models import Account, Hold, HoldStatus

    fund_wallet(alice, 50 * USDC)
    with time_machine.travel(T0, tick=False):
        session = services.session_start(user=alice, service=make_service("per_minute", rate=USDC, free_seconds=30))
    assert Hold.objects.get(pk=session.hold_id).amount == USDC // 2
    later = T0 + timedelta(seconds=60)
    services.session_heartbeat(session_id=session.pk, now=later)
    billed, may_commit, stopper_pid = threading.Event(), threading.Event(), []

    @in_thread
    def sweep_batch():
        with transaction.atomic():
            outcomes = bill_batch(now=later, after_id=0, shard=0, shards=1, limit=10)
            billed.set()
            may_commit.wait(30)
        return [(o.charge, o.new_hold) for o in outcomes]

    @in_thread
    def stop():
        billed.wait(30)
        stopper_pid.append(backend_pid())
        return services.session_stop(session=session, reason="user", now=later)

    with ThreadPoolExecutor(max_workers=2) as pool:
        sweeping, stopping = pool.submit(sweep_batch), pool.submit(stop)
        try:
            billed.wait(30)
            wait_until_blocked_on_a_lock(stopper_pid)
        finally:
            may_commit.set()
        assert sweeping.result() == [(USDC // 2, USDC)]
        stopped = stopping.result()

    hold = Hold.objects.get(pk=session.hold_id)
    assert stopped.status == SessionStatus.COMPLETED
    assert stopped.total_cost == USDC // 2  # the sweep's half minute; the stop, at the same instant, adds nothing
    assert (hold.status, hold.amount) == (HoldStatus.RELEASED, 0)
    assert balance_of(alice) == 50 * USDC - USDC // 2
    assert Account.objects.get(owner=alice).held == 0


def _no_drift(alice, fund, make_service, sweeps: int) -> None:
    """1 USDC a minute (16,666.66... minor units a second), billed every 1.007 s."""
    from django.db import transaction

    from streaming.billing import bill_batch
    from streaming.models import StreamingSession

    fund(alice, 1000 * USDC)
    session = services.session_start(user=alice, service=make_service("per_minute", rate=USDC))
    now = session.start_time
    for _ in range(sweeps):
        now += timedelta(milliseconds=1_007)
        StreamingSession.objects.filter(pk=session.pk).update(last_heartbeat_at=now)
        with transaction.atomic():
            bill_batch(now=now, after_id=0, shard=0, shards=1, limit=10)

    session = fresh(session)
    assert session.total_cost == USDC * sweeps * 1_007 // 60_000
    charges = charges_of(session)
    assert session.charge_count == len(charges) == sweeps
    assert sum(charges) == session.total_cost
    assert balance_of(alice) == 1000 * USDC - session.total_cost


@pytest.mark.django_db
def test_no_drift_over_many_sweeps(alice, fund, make_service):
    _no_drift(alice, fund, make_service, sweeps=300)


@pytest.mark.stress
@pytest.mark.timeout(1800)
@money_db
def test_no_drift_over_ten_thousand_sweeps(alice, fund, make_service):
    """The issue's 10,000 sweeps through the real billing path (make stress). Each sweep commits, as
    the beat's do: inside one test transaction every sweep's row versions of the same session and
    accounts stay live to it, and each sweep walked all the earlier ones (20 minutes instead of a few).
    The suite runs the same 10,000 steps on the arithmetic in test_pricing.py."""
    _no_drift(alice, fund, make_service, sweeps=10_000)
