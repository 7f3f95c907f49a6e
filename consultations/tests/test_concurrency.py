"""Calls, messages and status changes racing on one consultation, on PostgreSQL with real threads:
the consultation's row lock makes them happen one after the other, and the times they record follow."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings

from accounts.tests.conftest import while_writing
from conftest import backend_pid, in_thread, money_db, wait_until_blocked_on_a_lock
from consultations import services
from consultations.models import Consultation, ConsultationCall, Message
from consultations.selectors import message_list_for
from consultations.tests.conftest import LIST
from notifications.models import Notification
from paygo.api.errors import Conflict
from streaming.models import SessionStatus, StopReason, StreamingSession
from streaming.sweep import sweep
from streaming.tests.conftest import USDC, charges_of
from wallets.tests.conftest import balance_of, fund_wallet


def _race(*functions):
    """Run the functions at once, each on its own connection; what each returned or raised."""
    barrier = threading.Barrier(len(functions))

    def run(fn):
        try:
            barrier.wait()
            return fn()
        except Exception as exc:
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(functions)) as pool:
        return list(pool.map(run, functions))


@money_db
def test_two_call_starts_at_once_start_one_call(alice, consult):
    fund_wallet(alice, 10 * USDC)
    consultation = consult("accepted")

    def start():
        return services.consultation_call_start(consultation=Consultation.objects.get(pk=consultation.pk), actor=alice)

    outcomes = _race(start, start, start)

    started = [o for o in outcomes if isinstance(o, StreamingSession)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(started) == 1 and len(refused) == 2, outcomes
    assert all(o.detail["code"] == "call_running" for o in refused)
    assert StreamingSession.objects.count() == ConsultationCall.objects.count() == 1
    assert balance_of(alice) == 10 * USDC


@money_db
def test_a_cancel_racing_a_call_start_leaves_no_call_on_a_closed_consultation(alice, consult):
    fund_wallet(alice, 10 * USDC)
    consultation = consult("accepted")

    def start():
        return services.consultation_call_start(consultation=Consultation.objects.get(pk=consultation.pk), actor=alice)

    def cancel():
        return services.consultation_status_change(
            consultation=Consultation.objects.get(pk=consultation.pk), actor=alice, status="cancelled"
        )

    started, cancelled = _race(start, cancel)

    consultation.refresh_from_db()
    running = StreamingSession.objects.filter(status=SessionStatus.ACTIVE).count()
    if isinstance(started, StreamingSession):
        # The call came first: an active consultation cannot be cancelled, only completed.
        assert isinstance(cancelled, Conflict), cancelled
        assert (consultation.status, running) == ("accepted", 1)
    else:
        # The cancel came first: no call starts on a cancelled consultation.
        assert isinstance(started, Conflict) and started.detail["code"] == "not_accepted", started
        assert (consultation.status, running) == ("cancelled", 0)
        assert not StreamingSession.objects.exists()


def _arriving_while_held(consultation, clock, change, held):
    """`change` runs in a thread that arrives while this one holds the consultation's row; this one
    runs `held` under the lock a minute later (as a call start or a message would), moves the clock
    a second more and commits, and only then may `change` go on. What `change` returned."""
    pids = []

    @in_thread
    def arriving():
        pids.append(backend_pid())
        return change(Consultation.objects.get(pk=consultation.pk))

    with ThreadPoolExecutor(max_workers=1) as pool:
        with transaction.atomic():
            Consultation.objects.select_for_update().get(pk=consultation.pk)
            outcome = pool.submit(arriving)
            wait_until_blocked_on_a_lock(pids)
            clock.move(seconds=60)
            held(Consultation.objects.get(pk=consultation.pk))
            clock.move(seconds=1)
        return outcome.result()


@money_db
def test_a_consultation_completed_while_a_call_starts_closes_after_the_call(alice, victor, consult, clock):
    fund_wallet(alice, 10 * USDC)
    consultation = consult("accepted")

    def complete(consultation):
        return services.consultation_status_change(consultation=consultation, actor=victor, status="completed")

    def call(consultation):
        return services.consultation_call_start(consultation=consultation, actor=alice)

    completed = _arriving_while_held(consultation, clock, complete, call)

    # Completed a second into the call (when it got the row), not before the call began: the call is
    # stopped and charged up to the consultation's close.
    call = StreamingSession.objects.get()
    assert completed.status == "completed"
    assert (call.status, call.stop_reason) == (SessionStatus.STOPPED, "vendor")
    assert call.start_time == completed.accepted_at + timedelta(seconds=60)
    assert call.end_time == completed.closed_at == completed.updated_at == call.start_time + timedelta(seconds=1)
    assert call.total_cost == USDC // 60
    assert balance_of(alice) == 10 * USDC - USDC // 60


@money_db
def test_a_message_written_while_another_holds_the_row_is_the_latest(alice, victor, consult, clock):
    consultation = consult("accepted")

    def write(consultation):
        return services.message_send(consultation=consultation, sender=alice, body="Are you there?")

    def answer(consultation):
        return services.message_send(consultation=consultation, sender=victor, body="Yes, one moment.")

    latest = _arriving_while_held(consultation, clock, write, answer)

    consultation.refresh_from_db()
    answered = Message.objects.get(body="Yes, one moment.")
    assert latest.created_at == answered.created_at + timedelta(seconds=1)
    assert consultation.last_message_at == consultation.updated_at == latest.created_at
    assert list(message_list_for(consultation)[:2]) == [latest, answered]  # newest first


@money_db
@override_settings(SESSION_IDLE_SECONDS=60)
@pytest.mark.parametrize("attempt", range(3))
def test_a_new_call_racing_the_sweep_over_a_call_ended_by_silence_charges_that_call_once(
    alice, consult, clock, attempt
):
    """The call start stops the silent call at its idle end, and the sweep would too: whichever comes
    first, it is charged its minute once, and the other finds it stopped."""
    fund_wallet(alice, 10 * USDC)
    consultation = consult("accepted")
    silent = services.consultation_call_start(consultation=consultation, actor=alice)
    clock.move(minutes=5)

    def start():
        return services.consultation_call_start(consultation=Consultation.objects.get(pk=consultation.pk), actor=alice)

    started, swept = _race(start, sweep)

    assert isinstance(started, StreamingSession), started
    assert not isinstance(swept, Exception), swept
    silent.refresh_from_db()
    assert (silent.status, silent.stop_reason) == (SessionStatus.STOPPED, StopReason.IDLE)
    assert silent.end_time == silent.start_time + timedelta(seconds=60)
    assert charges_of(silent) == [USDC]
    assert StreamingSession.objects.get(status=SessionStatus.ACTIVE).pk == started.pk
    assert balance_of(alice) == 9 * USDC  # the new call started now: nothing due on it yet


def _ask(api, user, service):
    """POST /consultations as `user`, about victor's `service`: the response."""
    request = {"vendorId": service.vendor_id, "serviceId": service.pk, "initialMessage": "Can we talk?"}
    return api(user).post(LIST, request, format="json")


def _one_consultation_asked_for(refused) -> None:
    """`refused` is the 409 of the one consultation there is, which has the first request's message and
    notification only."""
    opened = Consultation.objects.get()
    assert refused.status_code == 409, refused.json()
    assert (refused.json()["code"], refused.json()["consultationId"]) == ("consultation_open", opened.pk)
    assert Message.objects.count() == Notification.objects.count() == 1


@money_db
def test_a_request_arriving_while_the_first_is_being_stored_is_a_409_not_a_500(api, alice, victor, service):
    """The second cannot see the first, not committed yet, and inserts too: the unique index makes it
    wait for the first's commit and then refuses its row, which the service answers as the conflict
    it is, naming the consultation that won."""

    def first():
        services.consultation_create(user=alice, vendor_id=victor.pk, service_id=service.pk, initial_message="Hi")

    second = while_writing(first, lambda: _ask(api, alice, service))

    _one_consultation_asked_for(second)


@money_db
@pytest.mark.parametrize("attempt", range(3))
def test_two_requests_at_once_open_one_consultation(api, alice, service, attempt):
    asked = _race(lambda: _ask(api, alice, service), lambda: _ask(api, alice, service))

    outcomes = sorted(asked, key=lambda outcome: getattr(outcome, "status_code", 0))

    assert [getattr(o, "status_code", o) for o in outcomes] == [201, 409], outcomes
    _one_consultation_asked_for(outcomes[1])
