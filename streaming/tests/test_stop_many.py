"""Stops of many sessions in one transaction (a service retired, an account deactivated) beside
what holds sessions' rows meanwhile (the live hub's signs of life, a metrics or usage report):
one lock order, so that PostgreSQL never ends one of them as a deadlock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction

from accounts.models import User
from conftest import backend_pid, in_thread, money_db, wait_until_blocked_on_a_lock
from streaming import services
from streaming.models import SessionStatus, StreamingSession
from streaming.tests.conftest import T0, USDC, fresh
from wallets.tests.conftest import balance_of, fund_wallet

AT = T0 + timedelta(seconds=30)


def _stop_many(stopping: str, service, vendor) -> Callable[[], object]:
    from accounts.services import user_deactivate
    from marketplace.services import service_delete

    def stop() -> object:
        with time_machine.travel(AT, tick=False):
            if stopping == "the service retired":
                return service_delete(service=service)
            return user_deactivate(user=User.objects.get(pk=vendor.pk))

    return stop


def _in_flight(hold: Callable[[], object]) -> tuple[Callable[[], None], threading.Event, threading.Event]:
    """A thread's body that runs hold() (at AT) in a transaction it keeps open, its rows locked,
    from `held` until `released` is set."""
    held, released = threading.Event(), threading.Event()

    @in_thread
    def run() -> None:
        with time_machine.travel(AT, tick=False), transaction.atomic():
            hold()
            held.set()
            released.wait(30)

    return run, held, released


def _stopped_at_half_a_minute(session: StreamingSession) -> None:
    ended = fresh(session)
    assert (ended.status, ended.end_time, ended.total_cost) == (SessionStatus.STOPPED, AT, USDC // 2)


@money_db
@pytest.mark.parametrize("stopping", ["the service retired", "its vendor deactivated"])
def test_the_hubs_signs_of_life_and_a_stop_of_many_sessions_lock_them_in_one_order(
    alice, bob, victor, make_service, stopping
):
    """The live hub records its sockets' signs of life in one UPDATE of many sessions; a retirement
    or a deactivation stops many sessions in one stop, locking them in id order. The UPDATE took
    them in the order its plan visited them (here the table's, where a heartbeat moved the first
    session's row after the second's): it held the second while it waited for the first, which
    the stop held while it waited for the second. PostgreSQL ended one of the two as a deadlock:
    the retirement or deactivation failed (a 500, its sessions left running), or the signs of life
    were lost. Both now lock sessions in id order."""
    fund_wallet(alice, 10 * USDC)
    fund_wallet(bob, 10 * USDC)
    service = make_service()
    first = services.session_start(user=alice, service=service, now=T0)
    second = services.session_start(user=bob, service=service, now=T0)
    services.session_heartbeat(session_id=first.pk, now=T0 + timedelta(seconds=10))
    with connection.cursor() as cursor:  # the premise: the table holds the second before the first
        cursor.execute("SELECT id FROM streaming_streamingsession ORDER BY ctid")
        assert [pk for (pk,) in cursor.fetchall() if pk in (first.pk, second.pk)] == [second.pk, first.pk]
    # A heartbeat in flight holds the first session's row until it is released.
    beating, beat_held, beat_released = _in_flight(lambda: services.session_heartbeat(session_id=first.pk, now=AT))
    stopper_pid, hub_pid = [], []

    @in_thread
    def stop():
        beat_held.wait(30)
        stopper_pid.append(backend_pid())
        return _stop_many(stopping, service, victor)()

    @in_thread
    def hub_tick():
        beat_held.wait(30)
        wait_until_blocked_on_a_lock(stopper_pid)  # the stop waits for the first session
        with connection.cursor() as cursor:
            cursor.execute("SET deadlock_timeout = '60s'")  # the stop is the one to find a cycle
        hub_pid.append(backend_pid())
        return services.sessions_seen(session_ids=[first.pk, second.pk], now=AT + timedelta(seconds=1))

    with ThreadPoolExecutor(max_workers=3) as pool:
        holding, stopped, seen = pool.submit(beating), pool.submit(stop), pool.submit(hub_tick)
        try:
            assert beat_held.wait(30)
            wait_until_blocked_on_a_lock(stopper_pid)
            wait_until_blocked_on_a_lock(hub_pid)
        finally:
            beat_released.set()
        holding.result()
        stopped.result()  # was: OperationalError, deadlock detected
        assert seen.result() == 0  # the stop came first: nothing left running to be seen

    _stopped_at_half_a_minute(first)
    _stopped_at_half_a_minute(second)
    assert balance_of(alice) == balance_of(bob) == 10 * USDC - USDC // 2


@money_db
@pytest.mark.parametrize("report", ["metrics", "usage"])
def test_a_report_in_flight_while_its_service_is_retired_neither_deadlocks(alice, victor, make_service, report):
    """A metrics or usage report writes its session's row twice in one transaction, and so at its
    commit PostgreSQL checks the row's foreign keys again, share-locking (KEY SHARE) what it refers
    to: its service among them. The retirement held the service's row FOR UPDATE, which that
    conflicts with, while it waited for the session's row, which the report held: a deadlock, the
    retirement or the report ended by PostgreSQL. The retirement updates no key of the service: it
    locks the row FOR NO KEY UPDATE (which still keeps starts, edits and other retirements out)."""
    fund_wallet(alice, 10 * USDC)
    unit, rate = ("per_minute", USDC) if report == "metrics" else ("per_request", USDC // 2)
    service = make_service(unit, rate=rate)
    session = services.session_start(user=alice, service=service, now=T0)

    def send_report() -> None:
        locked = StreamingSession.objects.get(pk=session.pk)
        if report == "metrics":
            services.session_metrics_record(session=locked, sample={"fps": 30}, now=AT)
        else:
            services.usage_report(session=locked, event_id="e1", quantity=1, now=AT)

    reporting, report_held, report_released = _in_flight(send_report)
    stopper_pid = []

    @in_thread
    def retire():
        report_held.wait(30)
        stopper_pid.append(backend_pid())
        return _stop_many("the service retired", service, victor)()

    with ThreadPoolExecutor(max_workers=2) as pool:
        reported, retired = pool.submit(reporting), pool.submit(retire)
        try:
            assert report_held.wait(30)
            wait_until_blocked_on_a_lock(stopper_pid)  # it holds the service and waits for the session
        finally:
            report_released.set()
        reported.result()
        retired.result()  # was: OperationalError, deadlock detected

    _stopped_at_half_a_minute(session)
    assert fresh(session).last_heartbeat_at == AT  # the report counted
    assert balance_of(alice) == 10 * USDC - USDC // 2
