"""The sweep under real concurrency on PostgreSQL, and its arithmetic over many runs."""

from __future__ import annotations

import threading
import time
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


@money_db
def test_a_sweep_waits_for_a_sign_of_life_in_flight_rather_than_skip_the_session(alice, make_service):
    """A heartbeat, a metrics or usage report, or the live hub's UPDATE of its watched sessions
    holds the session's row until it commits. The sweep's walk skips locked rows (another sweep's
    or a stop's batch), and skipped, a session was neither charged, nor held for the coming
    period, nor told when its money ran out: with one period left in the wallet it ran a second
    one with nothing held, and the next sweep stopped it back at the instant its funds ran out,
    the period it ran unpaid. The sweep now bills what its walk skipped, waiting for the row."""
    from django.db import transaction

    from wallets.models import Account

    fund_wallet(alice, 2 * USDC)  # two minutes at 1 USDC a minute
    session = services.session_start(user=alice, service=make_service("per_minute", rate=USDC), now=T0)
    services.session_heartbeat(session_id=session.pk, now=T0 + timedelta(seconds=60))
    sweep(now=T0 + timedelta(seconds=60))
    assert (fresh(session).total_cost, fresh(session).stop_at, fresh(session).hold.amount) == (USDC, None, USDC)
    locked, release, sweeper_pid = threading.Event(), threading.Event(), []

    @in_thread
    def sign_of_life_in_flight():
        with transaction.atomic():  # a metrics or usage report, or the hub's UPDATE, mid-transaction
            services.sessions_seen(session_ids=[session.pk], now=T0 + timedelta(seconds=120))
            locked.set()
            release.wait(30)

    @in_thread
    def sweep_at_minute_two():
        locked.wait(30)
        sweeper_pid.append(backend_pid())
        return sweep(now=T0 + timedelta(seconds=120))

    with ThreadPoolExecutor(max_workers=2) as pool:
        seeing, sweeping = pool.submit(sign_of_life_in_flight), pool.submit(sweep_at_minute_two)
        try:
            assert locked.wait(30)
            wait_until_blocked_on_a_lock(sweeper_pid)  # it waits for the row; it does not skip it
        finally:
            release.set()
        seeing.result()
        result = sweeping.result()

    assert (result.sessions, result.charged, result.amount) == (1, 1, USDC)
    billed = fresh(session)
    assert billed.status == SessionStatus.ACTIVE
    assert billed.last_heartbeat_at == T0 + timedelta(seconds=120)  # the sign of life counted too
    assert (billed.total_cost, billed.charged_until) == (2 * USDC, T0 + timedelta(seconds=120))
    # Nothing left to hold: told it stops now, as its funds ran out (the hub stops it there).
    assert (billed.stop_at, billed.stop_at_reason, billed.hold.amount) == (
        T0 + timedelta(seconds=120),
        "insufficient_funds",
        0,
    )
    assert charges_of(session) == [USDC, USDC]
    assert balance_of(alice) == 0 and Account.objects.get(owner=alice).held == 0

    sweep(now=T0 + timedelta(seconds=150))
    stopped = fresh(session)
    assert (stopped.status, stopped.stop_reason) == (SessionStatus.STOPPED, "insufficient_funds")
    assert (stopped.end_time, stopped.total_cost) == (T0 + timedelta(seconds=120), 2 * USDC)  # all it used, paid


def _blocked_by(pid: list[int], blocker: list[int]) -> None:
    """Poll until the backend `pid` waits for a lock that `blocker` holds."""
    from django.db import connection

    with connection.cursor() as cursor:
        for _ in range(3000):
            cursor.execute("SELECT %s = ANY (pg_blocking_pids(%s))", [blocker[0], pid[0]])
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid[0]} never waited for {blocker[0]}")


@money_db
def test_a_sweep_that_meets_a_deadlock_while_it_waits_bills_one_session_at_a_time(alice, bob, make_service):
    """The sweep bills what its walk skipped waiting for the rows, in id order. A transaction that
    takes them in another order (as the live hub's one UPDATE did, in the order its plan visited
    them, before it locked them in id order) meets it in a cycle, and PostgreSQL ends one of the
    two: when it is the sweep's batch, the sweep bills those sessions again one at a time, each
    charged once."""
    from django.db import connection, transaction

    fund_wallet(alice, 10 * USDC)
    fund_wallet(bob, 10 * USDC)
    service = make_service("per_minute", rate=USDC)
    first, second = (services.session_start(user=user, service=service, now=T0) for user in (alice, bob))
    at = T0 + timedelta(seconds=60)
    holds_second, holds_first, first_released, take_first = (threading.Event() for _ in range(4))
    sweeper_pid, other_pid = [], []

    @in_thread
    def in_the_other_order():  # the second session, then the first
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL deadlock_timeout = '60s'")  # the sweep finds the cycle first
            other_pid.append(backend_pid())
            services.sessions_seen(session_ids=[second.pk], now=at)
            holds_second.set()
            take_first.wait(30)
            # A second later: a sign of life at the instant the first one's was would move nothing.
            assert services.sessions_seen(session_ids=[first.pk], now=at + timedelta(seconds=1)) == 1

    @in_thread
    def holding_the_first():
        with transaction.atomic():
            services.sessions_seen(session_ids=[first.pk], now=at)
            holds_first.set()
            first_released.wait(30)

    @in_thread
    def sweeping():
        holds_second.wait(30)
        holds_first.wait(30)
        with connection.cursor() as cursor:
            cursor.execute("SET deadlock_timeout = '3s'")
        sweeper_pid.append(backend_pid())
        return sweep(now=at)

    with ThreadPoolExecutor(max_workers=3) as pool:
        other = pool.submit(in_the_other_order)
        holding = pool.submit(holding_the_first)
        swept = pool.submit(sweeping)
        try:
            assert holds_second.wait(30) and holds_first.wait(30)
            wait_until_blocked_on_a_lock(sweeper_pid)  # its walk skipped both; it waits for the first
            first_released.set()
            holding.result()
            _blocked_by(sweeper_pid, other_pid)  # it holds the first and waits for the second
        finally:
            first_released.set()
            take_first.set()  # the cycle: PostgreSQL ends the sweep's batch
        other.result()
        result = swept.result()

    assert (result.sessions, result.charged, result.amount) == (2, 2, 2 * USDC)
    for session, seen in ((first, at + timedelta(seconds=1)), (second, at)):
        billed = fresh(session)
        assert (billed.total_cost, billed.charged_until, billed.hold.amount) == (USDC, at, USDC)
        assert billed.last_heartbeat_at == seen
        assert charges_of(session) == [USDC]
    assert balance_of(alice) == balance_of(bob) == 9 * USDC


def _locked_elsewhere(account_id: int) -> bool:
    """Whether another transaction holds this account's row lock (asked without waiting)."""
    from django.db import OperationalError, connection, transaction

    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM wallets_account WHERE id = %s FOR UPDATE NOWAIT", [account_id])
    except OperationalError as exc:
        assert "could not obtain lock" in str(exc)
        return True
    return False


@money_db
def test_a_shard_decides_while_another_shards_batch_is_uncommitted(alice, bob, victor, wanda, make_service):
    """Shards split the sessions by their vendor's wallet, and the platform's revenue account (which
    every batch credits) is locked only as a batch posts: while one shard's batch is posted but not
    yet committed, another shard's batch claims its sessions, locks its own wallets and decides, and
    waits only to post. (By session id, with the revenue account locked first, in id order, the
    second shard waited for the first one's whole batch before taking anything.)"""
    from django.db import transaction

    from streaming.billing import bill_batch
    from wallets import ledger
    from wallets.models import Account, SystemAccount

    fund_wallet(alice, 50 * USDC)
    fund_wallet(bob, 50 * USDC)
    with time_machine.travel(T0, tick=False):
        first = services.session_start(user=alice, service=make_service(vendor=victor))
        second = services.session_start(user=bob, service=make_service(vendor=wanda))
    later = T0 + timedelta(seconds=60)
    for session in (first, second):
        services.session_heartbeat(session_id=session.pk, now=later)
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, ledger.asset_get("USDC"))
    assert revenue.pk < min(second.payer_account_id, second.payee_account_id)  # first in id order
    # One shard per vendor's wallet: with more shards than the largest wallet id, a wallet's shard is its id.
    shards = max(first.payee_account_id, second.payee_account_id) + 1
    billed, may_commit, second_pid = threading.Event(), threading.Event(), []

    @in_thread
    def first_shard():
        with transaction.atomic():
            outcomes = bill_batch(now=later, after_id=0, shard=first.payee_account_id, shards=shards, limit=10)
            billed.set()
            may_commit.wait(30)
        return [(o.id, o.charge) for o in outcomes]

    @in_thread
    def second_shard():
        billed.wait(30)
        second_pid.append(backend_pid())
        with transaction.atomic():
            outcomes = bill_batch(now=later, after_id=0, shard=second.payee_account_id, shards=shards, limit=10)
        return [(o.id, o.charge) for o in outcomes]

    with ThreadPoolExecutor(max_workers=2) as pool:
        holding, waiting = pool.submit(first_shard), pool.submit(second_shard)
        try:
            assert billed.wait(30)
            wait_until_blocked_on_a_lock(second_pid)
            # It waits holding its own wallets: it is at its posting, for the revenue account.
            assert _locked_elsewhere(second.payer_account_id) and _locked_elsewhere(second.payee_account_id)
            assert _locked_elsewhere(revenue.pk)
        finally:
            may_commit.set()
        assert holding.result() == [(first.pk, USDC)]
        assert waiting.result() == [(second.pk, USDC)]

    assert balance_of(alice) == balance_of(bob) == 49 * USDC
    assert Account.objects.get(owner=alice).held == Account.objects.get(owner=bob).held == USDC


@money_db
def test_a_posting_locks_the_users_wallets_before_the_system_accounts(alice, victor, make_service):
    """The one lock order: users' wallets by id, then system accounts. A session's start locks its
    payer's and vendor's wallets and then the platform's revenue account; while another transaction
    holds the revenue account, the start waits for it holding the wallets, not the other way round.
    The revenue account's id is the lowest here, so id order alone would have taken it first."""
    from django.db import connection, transaction

    from wallets import ledger
    from wallets.models import Account, SystemAccount

    fund_wallet(alice, 50 * USDC)
    service = make_service(vendor=victor)
    usdc = ledger.asset_get("USDC")
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, usdc)
    payer = Account.objects.get(owner=alice, asset=usdc)
    assert revenue.pk < payer.pk
    revenue_locked, release, starter_pid = threading.Event(), threading.Event(), []

    @in_thread
    def hold_revenue():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM wallets_account WHERE id = %s FOR UPDATE", [revenue.pk])
            revenue_locked.set()
            release.wait(30)

    @in_thread
    def start():
        revenue_locked.wait(30)
        starter_pid.append(backend_pid())
        return services.session_start(user=alice, service=service)

    with ThreadPoolExecutor(max_workers=2) as pool:
        holding, starting = pool.submit(hold_revenue), pool.submit(start)
        try:
            assert revenue_locked.wait(30)
            wait_until_blocked_on_a_lock(starter_pid)
            assert _locked_elsewhere(payer.pk)  # it waits for the revenue account holding the wallet
        finally:
            release.set()
        holding.result()
        session = starting.result()

    assert session.status == SessionStatus.ACTIVE
    assert Account.objects.get(pk=payer.pk).held == USDC


@money_db
def test_shards_stops_and_starts_at_once_neither_deadlock_nor_charge_twice(alice, bob, victor, wanda, make_service):
    """Two shards sweeping again and again while sessions of both shards' vendors start and stop: every
    posting locks users' wallets before the revenue account, so none waits for another in a cycle
    (PostgreSQL would abort one as a deadlock), no instant of a session is charged twice (each of
    its charges bills from where the one before ended, or later) and every session pays exactly
    what its charges say."""
    from streaming.models import StreamingSession
    from wallets.models import Entry

    fund_wallet(alice, 500 * USDC)
    fund_wallet(bob, 500 * USDC)
    catalogue = [make_service(vendor=vendor, rate=USDC) for vendor in (victor, wanda)]
    payees = {service.pk: services.session_start(user=alice, service=service).payee_account_id for service in catalogue}
    shards = max(payees.values()) + 1  # each vendor's wallet its own shard
    start = threading.Barrier(4)

    @in_thread
    def sweeping(payee: int):
        start.wait()
        for _ in range(15):
            sweep(shard=payee, shards=shards)

    @in_thread
    def starting_and_stopping(user):
        start.wait()
        for round_ in range(6):
            session = services.session_start(user=user, service=catalogue[round_ % 2])
            services.session_stop(session=session, reason="user")

    with ThreadPoolExecutor(max_workers=4) as pool:
        running = [pool.submit(sweeping, payee) for payee in sorted(set(payees.values()))]
        running += [pool.submit(starting_and_stopping, user) for user in (alice, bob)]
        for done in running:
            done.result()  # a deadlock, refused posting or error of any kind is raised here

    for session in StreamingSession.objects.all():
        assert session.total_cost == sum(charges_of(session)), session.pk
        billed = Entry.objects.filter(session=session).order_by("billed_from", "id")
        intervals = list(billed.values_list("billed_from", "billed_until"))
        ends = [session.start_time] + [until for _, until in intervals[:-1]]
        assert all(since >= end for (since, _), end in zip(intervals, ends, strict=True)), session.pk
    assert StreamingSession.objects.filter(status=SessionStatus.ACTIVE).count() == 2


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
