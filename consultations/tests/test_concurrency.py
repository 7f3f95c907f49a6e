"""Calls and status changes racing on one consultation, on PostgreSQL with real threads: the
consultation's row lock makes them happen one after the other."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import connection

from conftest import money_db
from consultations import services
from consultations.models import Consultation, ConsultationCall
from paygo.api.errors import Conflict
from streaming.models import SessionStatus, StreamingSession
from streaming.tests.conftest import USDC
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
