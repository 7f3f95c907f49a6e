"""The migration to one open consultation per user and service, run forward on the rows the code before
it let users store (several open ones about one service)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from conftest import money_db
from consultations import services
from consultations.models import Consultation
from streaming.models import SessionStatus, StreamingSession

BEFORE_ONE_OPEN = [("consultations", "0001_initial")]


def _migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def _asked_before(user, service, status: str = "pending", *, minutes: int = 0) -> Consultation:
    """A consultation stored as the code before let it be stored: one more, open or not, whatever was open."""
    at = timezone.now() + timedelta(minutes=minutes)
    closed = status in ("cancelled", "rejected", "completed")
    return Consultation.objects.create(
        user=user,
        vendor=service.vendor,
        service=service,
        status=status,
        accepted_at=at if status in ("accepted", "completed") else None,
        closed_at=at if closed else None,
        created_at=at,
        updated_at=at,
        last_message_at=at,
    )


def _state(*consultations) -> list[tuple[int, str, bool]]:
    """(id, status, closed_at == updated_at, set) of each."""
    rows = {row[0]: row for row in Consultation.objects.values_list("pk", "status", "closed_at", "updated_at")}
    return [
        (pk, status, closed is not None and closed == updated)
        for pk, status, closed, updated in (rows[c.pk] for c in consultations)
    ]


@money_db
def test_of_several_open_consultations_the_one_in_use_stays_open_and_the_others_are_cancelled(
    alice, bob, victor, make_service, consult, caplog
):
    asked_thrice, asked_after_accept, alone, asked_after_closing, called = (make_service() for _ in range(5))
    calling = consult("active", service=called)  # its call runs across the migration
    MigrationExecutor(connection).migrate(BEFORE_ONE_OPEN)
    try:
        thrice = [_asked_before(alice, asked_thrice, minutes=m) for m in (0, 2, 1)]
        accepted = _asked_before(alice, asked_after_accept, "accepted")
        pending_after_accept = _asked_before(alice, asked_after_accept, minutes=5)
        alices, bobs = _asked_before(alice, alone), _asked_before(bob, alone)
        closed, reopened = (
            _asked_before(alice, asked_after_closing, "rejected"),
            _asked_before(alice, asked_after_closing),
        )
        newer_than_the_call = _asked_before(alice, called, "accepted", minutes=10)
        untouched = {c.pk: c.updated_at for c in (thrice[1], accepted, alices, bobs, closed, reopened, calling)}
    finally:
        with caplog.at_level(logging.WARNING, logger="paygo.consultations"):
            _migrate_to_latest()

    # The newest activity of three pending; an accepted one over a newer pending one; the one with a
    # running call over a newer accepted one. One of a user (or a service) alone, and one beside closed
    # ones, are left as they were.
    assert _state(*thrice, accepted, pending_after_accept, newer_than_the_call) == [
        (thrice[0].pk, "cancelled", True),
        (thrice[1].pk, "pending", False),
        (thrice[2].pk, "cancelled", True),
        (accepted.pk, "accepted", False),
        (pending_after_accept.pk, "cancelled", True),
        (newer_than_the_call.pk, "cancelled", True),
    ]
    assert dict(Consultation.objects.filter(pk__in=untouched).values_list("pk", "updated_at")) == untouched
    assert StreamingSession.objects.get().status == SessionStatus.ACTIVE
    assert [record.getMessage() for record in caplog.records] == [
        f"User {alice.pk} asked about service {service.pk} more than once: consultation {kept.pk} stays open; "
        f"{[c.pk for c in cancelled]} cancelled."
        for service, kept, cancelled in [
            (asked_thrice, thrice[1], [thrice[2], thrice[0]]),
            (asked_after_accept, accepted, [pending_after_accept]),
            (called, calling, [newer_than_the_call]),
        ]
    ]
    # And the database keeps it so from now on.
    with pytest.raises(IntegrityError, match="consultation_one_open_per_user_service"):
        _asked_before(alice, asked_thrice)


@money_db
def test_two_open_consultations_of_one_service_each_with_a_call_running_stop_the_migration(alice, service, consult):
    """Cancelling one would leave its call running (and billed) on a closed consultation, and stopping a
    call bills it, which is no migration's to do: it stops, names them and changes nothing."""
    first = consult("active")
    MigrationExecutor(connection).migrate(BEFORE_ONE_OPEN)
    try:
        second = _asked_before(alice, service, "accepted", minutes=1)  # the newer message: the one kept
        services.consultation_call_start(consultation=second, actor=alice)
        try:
            with pytest.raises(RuntimeError, match=rf"^Consultations \[{first.pk}\] and {second.pk} .* each have a"):
                _migrate_to_latest()
            assert _state(first, second) == [(first.pk, "accepted", False), (second.pk, "accepted", False)]
        finally:
            # An operator stops one of the calls; then it runs.
            services.consultation_call_stop(consultation=first, actor=alice)
    finally:
        _migrate_to_latest()

    assert _state(first, second) == [(first.pk, "cancelled", True), (second.pk, "accepted", False)]
