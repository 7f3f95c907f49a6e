"""A session started while staff deactivate its vendor (or its user): the start and the deactivation
take turns on the two accounts' rows, so the session is refused or it is stopped by the deactivation;
never one left billing for an account that is gone."""

from __future__ import annotations

import contextlib
import threading

from django.db import connection, transaction
from rest_framework import exceptions

from accounts.models import User
from accounts.services import user_deactivate
from conftest import money_db, wait_until_blocked_on_a_lock
from marketplace.models import Service
from streaming.models import StreamingSession
from streaming.services import session_start
from streaming.tests.conftest import USDC
from wallets.tests.conftest import fund_wallet


def start_while_deactivating(who, user, service) -> object:
    """Deactivate `who` and hold the transaction open until a session start by `user` on `service`
    waits for it (or is through), then commit; what the start answered."""
    deactivated, outcome = threading.Event(), {}
    pids: list[int] = []

    def deactivate():
        try:
            with transaction.atomic():
                user_deactivate(user=who)
                deactivated.set()
                with contextlib.suppress(AssertionError):  # the start did not wait (the defect)
                    wait_until_blocked_on_a_lock(pids)
        finally:
            connection.close()

    def start():
        try:
            deactivated.wait(5)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pids.append(cursor.fetchone()[0])
            # As a request has them: read before the deactivation committed (active), not the objects
            # the deactivating thread changed in memory.
            outcome["result"] = session_start(
                user=User.objects.get(pk=user.pk), service=Service.objects.select_related("vendor").get(pk=service.pk)
            )
        except Exception as exc:
            outcome["result"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=deactivate), threading.Thread(target=start)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcome["result"]


@money_db
def test_a_session_started_while_its_vendor_is_being_deactivated_is_refused(alice, victor, make_service):
    service = make_service()
    fund_wallet(alice, 10 * USDC)

    refused = start_while_deactivating(victor, alice, service)

    assert isinstance(refused, exceptions.ValidationError), refused
    assert refused.detail["service_id"][0] == "No such service."
    assert not StreamingSession.objects.exists()


@money_db
def test_a_session_started_while_its_user_is_being_deactivated_is_refused(alice, victor, make_service):
    service = make_service()
    fund_wallet(alice, 10 * USDC)

    refused = start_while_deactivating(alice, alice, service)

    assert isinstance(refused, exceptions.AuthenticationFailed), refused
    assert not StreamingSession.objects.exists()
