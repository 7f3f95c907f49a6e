"""Streaming fixtures: services of every unit, a controlled clock, sessions, sweeps."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import TestCase

from marketplace.models import Category
from marketplace.services import service_create
from streaming import services
from streaming.models import StreamingSession
from streaming.sweep import sweep

USDC = 1_000_000
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
_names = itertools.count(1)


@pytest.fixture
def clock():
    """A controlled clock starting at T0; clock.move(seconds=...) moves it."""
    with time_machine.travel(T0, tick=False) as traveller:

        class Clock:
            def now(self) -> datetime:
                from django.utils import timezone

                return timezone.now()

            def move(self, **delta) -> datetime:
                traveller.shift(timedelta(**delta))
                return self.now()

        yield Clock()


@pytest.fixture
def make_service(victor):
    def make(unit="per_minute", rate=USDC, vendor=None, **extra):
        return service_create(
            vendor=vendor or victor,
            name=f"Service {next(_names)}",
            category=Category.objects.filter(parent__isnull=True).first(),
            rate=rate,
            unit=unit,
            **extra,
        )

    return make


def start(user, service, **extra) -> StreamingSession:
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.session_start(user=user, service=service, **extra)


def beat(session: StreamingSession) -> None:
    """A heartbeat now (billing runs up to the last one)."""
    services.session_heartbeat(session_id=session.pk)


def run_sweep(**kwargs):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return sweep(**kwargs)


def stop(session, reason="user"):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.session_stop(session=session, reason=reason)


def fresh(session: StreamingSession) -> StreamingSession:
    return StreamingSession.objects.select_related("hold").get(pk=session.pk)


def charges_of(session: StreamingSession) -> list[int]:
    """What each of the session's charges took, oldest first (its payer's debits that carry it)."""
    from wallets.models import Entry

    return [-amount for amount in Entry.objects.filter(session=session).order_by("id").values_list("amount", flat=True)]
