"""A user's and a customer's rollup (UserBucket, CustomerTotal, RunningSession): equal to the ledger
and the sessions from nothing and run by run, with a tail or none, and a session's end counted once
whenever it comes."""

from __future__ import annotations

import random
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db.models import Max, Sum

from dashboards import rollup, selectors
from dashboards.models import SPAN_ORIGIN, USER_SPANS, CustomerTotal, RunningSession, UserBucket, Watermark
from dashboards.periods import DAY, MONTH, window
from dashboards.tests.conftest import NOW, USDC, make_service, run_session
from dashboards.tests.test_rollup import ROLLUP_TABLES, cut_points, from_the_ledger_alone, random_history
from streaming import services as streaming
from streaming.models import SessionStatus, StreamingSession
from wallets.models import Entry

pytestmark = pytest.mark.django_db


def by_user(span: int) -> dict:
    """{(user, asset): (charges' debits, sessions started)} as UserBucket's rows of one span say."""
    rows = UserBucket.objects.filter(span=span).values("user", "asset")
    rows = rows.annotate(paid=Sum("payer_amount"), started=Sum("sessions"))
    return {(row["user"], row["asset"]): (row["paid"], row["started"]) for row in rows}


def by_customer() -> dict:
    """{(user, service, asset, vendor): (debits, net credits, charges, sessions, ended, their usage,
    the longest)} as CustomerTotal's rows say, with the sessions still in RunningSession ended now."""
    figures = {
        (row.user_id, row.service_id, row.asset_id, row.vendor_id): [
            row.payer_amount,
            row.payee_amount,
            row.charges,
            row.sessions,
            row.ended,
            row.ended_seconds,
            row.longest,
        ]
        for row in CustomerTotal.objects.all()
    }
    return {key: tuple(value) for key, value in figures.items()}


def from_the_ledger(*, entries_through: int, sessions_through: int, ended: set[int] | None = None) -> tuple:
    """(by_user for any span, by_customer) straight from the entries and sessions up to the ids
    given, a session counted as ended when it is in `ended` (default: every session ended now)."""
    users: dict = {}
    customers: dict = {}
    for session in StreamingSession.objects.filter(id__lte=sessions_through):
        done = session.status != SessionStatus.ACTIVE if ended is None else session.pk in ended
        key = (session.user_id, session.service_id, session.asset_id, session.vendor_id)
        paid, earned, charges, started, n, seconds, longest = customers.get(key, (0, 0, 0, 0, 0, 0, timedelta(0)))
        length = session.end_time - session.start_time if done else timedelta(0)
        customers[key] = (
            paid,
            earned,
            charges,
            started + 1,
            n + done,
            seconds + (session.total_usage_seconds if done else 0),
            max(longest, length),
        )
        paid_by, started_by = users.get((session.user_id, session.asset_id), (0, 0))
        users[session.user_id, session.asset_id] = (paid_by, started_by + 1)
    for entry in Entry.objects.filter(session__isnull=False, id__lte=entries_through).select_related("session"):
        session = entry.session
        key = (session.user_id, session.service_id, entry.asset_id, session.vendor_id)
        paid, earned, charges, started, n, seconds, longest = customers.get(key, (0, 0, 0, 0, 0, 0, timedelta(0)))
        earned -= entry.amount + entry.fee
        customers[key] = (paid + entry.amount, earned, charges + 1, started, n, seconds, longest)
        paid_by, started_by = users.get((session.user_id, entry.asset_id), (0, 0))
        users[session.user_id, entry.asset_id] = (paid_by + entry.amount, started_by)
    return users, customers


def assert_equal_to_the_ledger(mark: Watermark, *, ended: set[int] | None = None) -> None:
    users, customers = from_the_ledger(entries_through=mark.entry_id, sessions_through=mark.session_id, ended=ended)
    for span in USER_SPANS:
        assert by_user(span) == users, f"span {span}"
        starts = UserBucket.objects.filter(span=span).values_list("start", flat=True)
        assert all((start - SPAN_ORIGIN).total_seconds() % span == 0 for start in starts)
    assert by_customer() == customers


def test_user_buckets_and_customer_totals_equal_the_ledger_from_nothing_and_run_by_run(alice, bob, victor, wanda):
    rng = random.Random(11)
    random_history(rng, [alice, bob], [victor, wanda])
    running = streaming.session_start(user=alice, service=make_service(victor, rate=USDC), now=NOW - timedelta(hours=1))

    # Run by run, stopped anywhere: the rows hold everything up to the watermark and nothing after.
    entries = cut_points(rng, list(Entry.objects.values_list("id", flat=True)), 4)
    sessions = cut_points(rng, list(StreamingSession.objects.values_list("id", flat=True)), 4)
    for entry_id, session_id in zip(entries, sessions, strict=True):
        mark = rollup.rollup_advance(entries_through=entry_id, sessions_through=session_id)
        assert_equal_to_the_ledger(mark)
    mark = rollup.rollup_advance()
    assert (mark.entry_id, mark.session_id) == (Entry.objects.latest("id").id, StreamingSession.objects.latest("id").id)
    assert_equal_to_the_ledger(mark)
    assert list(RunningSession.objects.values_list("session_id", flat=True)) == [running.pk]
    run_by_run = (by_user(USER_SPANS[0]), by_customer())

    # From nothing: the same rows.
    for model in (*ROLLUP_TABLES, RunningSession, Watermark):
        model.objects.all().delete()
    mark = rollup.rollup_advance()
    assert_equal_to_the_ledger(mark)
    assert (by_user(USER_SPANS[0]), by_customer()) == run_by_run
    assert by_customer()[alice.pk, running.service_id, running.asset_id, victor.pk][4] == 0  # still running


def dashboards(user, vendor, tz) -> dict:
    return {
        "overview": selectors.user_overview(user, window=window(period=MONTH, tz=tz, now=NOW), now=NOW),
        "days": selectors.user_overview(user, window=window(period=DAY, tz=tz, now=NOW), now=NOW),
        "wallet": selectors.wallet_analytics(user, tz=tz, now=NOW),
        "vendor": selectors.vendor_overview(vendor, window=window(period=MONTH, tz=tz, now=NOW), now=NOW),
    }


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kathmandu"])
def test_a_session_summed_while_it_runs_counts_its_end_once(zone, alice, victor, fund):
    tz = ZoneInfo(zone)
    fund(alice, 1_000 * USDC)
    service = make_service(victor, unit="per_minute", rate=USDC)
    run_session(alice, service, NOW - timedelta(days=3), 600, sweeps=(120,))
    session = streaming.session_start(user=alice, service=service, now=NOW - timedelta(seconds=50))

    def compute() -> dict:
        return dashboards(alice, victor, tz)

    rollup.rollup_advance()
    assert RunningSession.objects.filter(session=session).exists()
    assert compute() == from_the_ledger_alone(compute)

    stopped = streaming.session_stop(session=session, reason="user", now=NOW)
    assert stopped.status != SessionStatus.ACTIVE and stopped.total_usage_seconds == 50
    # Ended, not yet seen ended by the rollup: read through RunningSession.
    assert compute() == from_the_ledger_alone(compute)
    ended_before = compute()["overview"]["overview"]["average_session_length"]

    mark = rollup.rollup_advance()
    assert not RunningSession.objects.exists()
    assert_equal_to_the_ledger(mark)
    assert compute() == from_the_ledger_alone(compute)
    rollup.rollup_advance()  # nothing new: the end is not counted again
    assert_equal_to_the_ledger(mark)
    assert compute()["overview"]["overview"]["average_session_length"] == ended_before == (600 + 50) // 2


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_time_used_counts_a_long_session_that_began_before_the_last_30_days(zone, settings, alice, victor, fund):
    # A session of 35 days, ended 5 days ago: it started long before the wallet's 30 days and ran
    # through most of them. The rollup's longest counted session is what lets the wallet find it
    # without reading every session of the user.
    settings.SESSION_IDLE_SECONDS = 10 * 86_400  # its client present throughout, heartbeating daily
    tz = ZoneInfo(zone)
    fund(alice, 1_000 * USDC)
    service = make_service(victor, unit="per_second", rate=1)
    run_session(alice, service, NOW - timedelta(days=40, minutes=7), 35 * 86_400)
    run_session(alice, service, NOW - timedelta(days=2), 600)

    def compute() -> dict:
        return dashboards(alice, victor, tz)

    reference = compute()
    assert sum(day["usage"] for day in reference["wallet"]["chart_data"]["usage_over_time"]) > 20 * 86_400
    mark = rollup.rollup_advance()
    assert CustomerTotal.objects.aggregate(longest=Max("longest"))["longest"] >= timedelta(days=35)
    assert_equal_to_the_ledger(mark)
    assert compute() == reference == from_the_ledger_alone(compute)
