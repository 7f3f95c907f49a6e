"""Dashboard fixtures: a fixed 'now', services in known categories, sessions run at chosen times.

Every figure the tests expect is computed by hand from the sessions below (PLATFORM_FEE_BPS is
1000: the platform keeps floor(10%) of each charge, the vendor the rest).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.db.models import Count, Sum

from dashboards.models import QUARTER_HOUR, LedgerBucket
from marketplace.models import Category
from marketplace.services import service_create
from streaming import services as streaming
from streaming.models import StreamingSession
from streaming.sweep import sweep
from wallets.models import Entry

USDC = 1_000_000
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
_names = itertools.count(1)


@pytest.fixture(autouse=True)
def now():
    """The dashboards' clock: 2026-11-20 12:00 UTC (windows end 'today')."""
    with time_machine.travel(NOW, tick=False):
        yield NOW


def category(name: str) -> Category:
    return Category.objects.get(name=name)


def make_service(vendor, *, category_name="Time-Based", unit="per_minute", rate=USDC, **extra):
    return service_create(
        vendor=vendor,
        name=extra.pop("name", f"Service {next(_names)}"),
        category=category(category_name),
        rate=rate,
        unit=unit,
        **extra,
    )


def run_session(user, service, start: datetime, seconds: int, *, sweeps: tuple[int, ...] = ()) -> StreamingSession:
    """A session from `start` for `seconds`, its user's client there throughout (a heartbeat within
    every idle timeout), billed by a sweep at each offset in `sweeps` (after a heartbeat there),
    then stopped by its user."""
    session = streaming.session_start(user=user, service=service, now=start)
    beat = settings.SESSION_IDLE_SECONDS
    for offset in sorted(set(range(beat, seconds, beat)) | set(sweeps)):
        at = start + timedelta(seconds=offset)
        streaming.session_heartbeat(session_id=session.pk, now=at)
        if offset in sweeps:
            sweep(now=at)
    return streaming.session_stop(session=session, reason="user", now=start + timedelta(seconds=seconds))


@pytest.fixture
def history(alice, bob, victor, wanda, fund):
    """The ledger every figure test reads (amounts in USDC minor units):

    alice  s1  victor 'Minutes'  per_minute 1 USDC   2026-10-05 10:00 UTC  600 s  10.000000 (swept at 240 s)
    alice  s2  victor 'Pass'     per_session 2.5     2026-11-01 03:30 UTC  300 s   2.500000 (Oct 31 in New York)
    alice  s3  wanda  'Seconds'  per_second 0.001234 2026-11-10 08:00 UTC 1001 s   1.235234
    bob    s5  victor 'Minutes'                      2026-11-15 09:00 UTC  180 s   3.000000
    alice  s4  victor 'Minutes'  still active since NOW - 5 min, nothing charged yet
    """
    fund(alice, 1000 * USDC)
    fund(bob, 1000 * USDC)
    minutes = make_service(victor, name="Minutes", category_name="Time-Based", unit="per_minute", rate=USDC)
    pass_ = make_service(
        victor, name="Pass", category_name="Digital Products & Content", unit="per_session", rate=2_500_000
    )
    seconds = make_service(wanda, name="Seconds", category_name="Data & Analytics", unit="per_second", rate=1_234)
    s1 = run_session(alice, minutes, datetime(2026, 10, 5, 10, 0, tzinfo=UTC), 600, sweeps=(240,))
    s2 = run_session(alice, pass_, datetime(2026, 11, 1, 3, 30, tzinfo=UTC), 300)
    s3 = run_session(alice, seconds, datetime(2026, 11, 10, 8, 0, tzinfo=UTC), 1001)
    s5 = run_session(bob, minutes, datetime(2026, 11, 15, 9, 0, tzinfo=UTC), 180)
    s4 = streaming.session_start(user=alice, service=minutes, now=NOW - timedelta(minutes=5))
    return {"s1": s1, "s2": s2, "s3": s3, "s4": s4, "s5": s5, "minutes": minutes, "pass": pass_, "seconds": seconds}


def rollup_by_kind(span: int = QUARTER_HOUR) -> dict:
    """{(asset, transaction kind, holder): (net sum, entries)} as the rollup's LedgerBucket rows of a span say."""
    rows = LedgerBucket.objects.filter(span=span).values("asset", "kind", "holder")
    rows = rows.annotate(debits=Sum("debits"), credits=Sum("credits"), n=Sum("debit_count") + Sum("credit_count"))
    return {(row["asset"], row["kind"], row["holder"]): (row["debits"] + row["credits"], row["n"]) for row in rows}


def ledger_by_kind() -> dict:
    """The same, straight from the ledger's entries."""
    rows = Entry.objects.values("asset", "transaction__kind", "account__system_code")
    rows = rows.annotate(total=Sum("amount"), n=Count("id"))
    return {
        (row["asset"], row["transaction__kind"], row["account__system_code"] or "user"): (row["total"], row["n"])
        for row in rows
    }
