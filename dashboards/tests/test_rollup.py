"""The rollup: every dashboard answers the same, to the minor unit, whatever the watermark.

A dashboard reads the rollup up to the watermark and the ledger after it. With no rollup at all it
reads the ledger alone, so the ledger-alone answers are the reference: random ledgers, time zones
with half- and quarter-hour offsets and DST changes, windows of every period, watermarks anywhere.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum

from dashboards import rollup, selectors
from dashboards.models import (
    DAY,
    QUARTER_HOUR,
    SERVICE_SPANS,
    SPAN_ORIGIN,
    ChargeBucket,
    CustomerTotal,
    LedgerBucket,
    RunningSession,
    ServiceBucket,
    SessionBucket,
    UserBucket,
    Watermark,
)
from dashboards.periods import DAY as DAILY
from dashboards.periods import MONTH, PERIODS, WEEK, window
from dashboards.periods import YEAR as YEARLY
from dashboards.tests.conftest import NOW, USDC, ledger_by_kind, make_service, rollup_by_kind, run_session
from streaming.models import StreamingSession
from wallets import ledger
from wallets.models import Entry, LedgerTransaction
from wallets.services import withdrawal_request
from wallets.tests.conftest import fund_wallet

pytestmark = pytest.mark.django_db

ROLLUP_TABLES = (ChargeBucket, CustomerTotal, LedgerBucket, ServiceBucket, SessionBucket, UserBucket)
# Windows of days across every 2026 DST change of these zones (March/April, September to November).
DST_SPANS = ((date(2026, 3, 1), date(2026, 4, 15)), (date(2026, 9, 20), date(2026, 11, 10)))


def random_history(rng: random.Random, users, vendors) -> None:
    """Sessions of every kind of unit at random past times (many around DST changes, some hours
    long across buckets and days), posted in an order unrelated to their times; deposits and
    withdrawals at random times; a session in another token."""
    for user in users:
        fund_wallet(user, 5_000 * USDC)
        fund_wallet(user, 100 * USDC, "USDT")
    services = [
        make_service(vendors[0], unit="per_minute", rate=USDC + 17),
        make_service(vendors[0], category_name="Digital Products & Content", unit="per_session", rate=2_500_001),
        make_service(vendors[1], category_name="Data & Analytics", unit="per_second", rate=1_234),
        make_service(vendors[1], unit="per_hour", rate=3 * USDC + 1),
    ]
    other_token = make_service(vendors[1], unit="per_minute", rate=USDC, token="USDT")

    def moment() -> datetime:
        if rng.random() < 0.4:
            first, last = rng.choice(DST_SPANS)
            span = (last - first).days * 86_400
            at = datetime.combine(first, datetime.min.time(), tzinfo=UTC) + timedelta(seconds=rng.randrange(span))
        else:
            at = NOW - timedelta(seconds=rng.randrange(365 * 86_400))
        return at.replace(microsecond=rng.choice([0, rng.randrange(1_000_000)]))

    for _ in range(18):
        seconds = rng.choice([45, 600, 3 * 3600 + 17])
        sweeps = tuple(sorted(rng.sample(range(30, seconds, 30), k=min(4, (seconds - 30) // 30))))
        start = moment()
        if start + timedelta(seconds=seconds) < NOW:
            run_session(rng.choice(users), rng.choice(services), start, seconds, sweeps=sweeps)
    run_session(users[0], other_token, NOW - timedelta(days=3), 600, sweeps=(120,))
    for user in users:
        with time_machine.travel(moment(), tick=False):
            fund_wallet(user, rng.randrange(1, 50) * USDC)
        with time_machine.travel(moment(), tick=False):
            withdrawal_request(
                user=user, asset=ledger.asset_get("USDC"), amount=rng.randrange(1, 9) * USDC, to_address="0x1"
            )


def dashboards(users, vendors, tz: ZoneInfo) -> dict:
    """Every dashboard's payload for these people in this zone: every period, windows cut mid-period
    and windows of days across DST changes."""
    windows = [window(period=period, tz=tz, now=NOW) for period in PERIODS]
    windows.append(window(period=MONTH, tz=tz, now=NOW, since=date(2026, 2, 14), until=date(2026, 10, 3)))
    windows.append(window(period=WEEK, tz=tz, now=NOW, since=date(2026, 3, 4), until=date(2026, 11, 20)))
    windows += [window(period=DAILY, tz=tz, now=NOW, since=first, until=last) for first, last in DST_SPANS]
    payloads: dict = {}
    for n, span in enumerate(windows):
        payloads["admin", n] = selectors._admin_figures(window=span, now=NOW)
        for user in users:
            payloads["user", user.pk, n] = selectors.user_overview(user, window=span, now=NOW)
        for vendor in vendors:
            payloads["vendor", vendor.pk, n] = selectors.vendor_overview(vendor, window=span, now=NOW)
            payloads["earnings", vendor.pk, n] = selectors.vendor_earnings(vendor, window=span)
    for user in users:
        payloads["wallet", user.pk] = selectors.wallet_analytics(user, tz=tz, now=NOW)
    return payloads


def from_the_ledger_alone(compute):
    """compute() with no rollup at all (rolled back afterwards)."""
    with transaction.atomic():
        for model in (*ROLLUP_TABLES, RunningSession, Watermark):
            model.objects.all().delete()
        result = compute()
        transaction.set_rollback(True)
    return result


def cut_points(rng: random.Random, ids: list[int], n: int) -> list[int]:
    return sorted(rng.sample(ids, k=min(n, len(ids))))


@pytest.mark.parametrize(
    ("seed", "zone"),
    [
        (1, "Asia/Kathmandu"),  # +05:45
        (2, "America/New_York"),  # DST
        (3, "Australia/Lord_Howe"),  # +10:30, half an hour of DST
        (4, "Asia/Kolkata"),  # +05:30
        (5, "Pacific/Chatham"),  # +12:45 / +13:45
        (6, "UTC"),
    ],
)
def test_every_dashboard_is_the_same_at_every_watermark(seed, zone, alice, bob, victor, wanda):
    rng = random.Random(seed)
    users, vendors, tz = [alice, bob], [victor, wanda], ZoneInfo(zone)
    random_history(rng, users, vendors)

    def compute() -> dict:
        return dashboards(users, vendors, tz)

    reference = compute()  # no rollup yet: the ledger alone
    year = reference["admin", PERIODS.index(YEARLY)]["totals"]
    assert year["charges"] > 20 and year["sessions"] > 10 and year["deposits"] != "0.000000"
    entries = cut_points(rng, list(Entry.objects.values_list("id", flat=True)), 3)
    sessions = cut_points(rng, list(StreamingSession.objects.values_list("id", flat=True)), 3)
    for entry_id, session_id in zip(entries, sessions, strict=True):
        mark = rollup.rollup_advance(entries_through=entry_id, sessions_through=session_id)
        assert (mark.entry_id, mark.session_id) == (entry_id, session_id)
        assert compute() == reference, f"differs at entry {entry_id}, session {session_id}"

    rollup.rollup_advance()
    for model in ROLLUP_TABLES:
        assert model.objects.exists()
    assert compute() == reference

    # More traffic after a full rollup (a tail on top of it), some of it stamped in the past.
    run_session(bob, make_service(wanda, unit="per_minute", rate=USDC), NOW - timedelta(days=40), 900, sweeps=(300,))
    fund_wallet(alice, 7 * USDC)
    # The ledger alone, once: rolling up changes only the rollup's tables, never the ledger.
    alone = from_the_ledger_alone(compute)
    assert compute() == alone
    rollup.rollup_advance()
    assert compute() == alone


def by_service(span: int) -> dict:
    """{(service, vendor, asset): (payers' debits, vendors' net credits, sessions started)} as
    ServiceBucket's rows of one span say."""
    rows = ServiceBucket.objects.filter(span=span).values("service", "vendor", "asset")
    rows = rows.annotate(paid=Sum("payer_amount"), earned=Sum("payee_amount"), started=Sum("sessions"))
    return {(row["service"], row["vendor"], row["asset"]): (row["paid"], row["earned"], row["started"]) for row in rows}


def by_service_from_the_ledger() -> dict:
    """The same, straight from the charge entries and the sessions."""
    figures: dict = {}
    for session in StreamingSession.objects.all():
        key = (session.service_id, session.vendor_id, session.asset_id)
        paid, earned, started = figures.get(key, (0, 0, 0))
        for amount, fee in Entry.objects.filter(session=session).values_list("amount", "fee"):
            paid, earned = paid + amount, earned - amount - fee
        figures[key] = (paid, earned, started + 1)
    return figures


def test_the_rollup_equals_the_ledger(alice, bob, victor, wanda):
    random_history(random.Random(7), [alice, bob], [victor, wanda])

    rollup.rollup_advance()

    for span in (QUARTER_HOUR, DAY):
        assert rollup_by_kind(span) == ledger_by_kind()
        started = SessionBucket.objects.filter(span=span).aggregate(n=Sum("sessions"))["n"]
        assert started == StreamingSession.objects.count()
    for session in StreamingSession.objects.all():
        rows = ChargeBucket.objects.filter(session=session)
        charges = Entry.objects.filter(session=session)
        paid = sum(charges.values_list("amount", flat=True))
        earned = sum(-amount - fee for amount, fee in charges.values_list("amount", "fee"))
        assert (rows.aggregate(s=Sum("payer_amount"))["s"] or 0) == paid
        assert (rows.aggregate(s=Sum("payee_amount"))["s"] or 0) == earned
    ledger_figures = by_service_from_the_ledger()
    assert len(ledger_figures) > 2 and all(paid < 0 for paid, _, _ in ledger_figures.values())
    for span in SERVICE_SPANS:
        assert by_service(span) == ledger_figures, f"span {span}"
        starts = ServiceBucket.objects.filter(span=span).values_list("start", flat=True)
        assert all((start - SPAN_ORIGIN).total_seconds() % span == 0 for start in starts)


def test_a_charge_stamped_before_summed_ones_lands_in_its_own_buckets(alice, victor, fund):
    fund(alice, 100 * USDC)
    service = make_service(victor, unit="per_minute", rate=USDC)
    start = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    session = run_session(alice, service, start, 3600, sweeps=(1200, 2400))
    rollup.rollup_advance()
    before = list(ChargeBucket.objects.filter(session=session).order_by("start").values_list("start", "payer_amount"))

    # An entry of the same session with an earlier time than every summed one (a correction).
    late = ledger.ChargeDebit(session.payer_account_id, 5, session.pk, start, start, 0)
    ledger.post_batch(
        [
            ledger.TxSpec(
                kind="charge", entries=[(session.payee_account_id, 5)], charges=[late], reference="charge:late"
            )
        ],
        now=start - timedelta(hours=1),
    )
    StreamingSession.objects.filter(pk=session.pk).update(total_cost=F("total_cost") + 5)  # as billing would
    rollup.rollup_advance()

    after = list(ChargeBucket.objects.filter(session=session).order_by("start").values_list("start", "payer_amount"))
    assert after == [(start - timedelta(hours=1), -5), *before]
    for span in SERVICE_SPANS:
        assert by_service(span) == by_service_from_the_ledger(), f"span {span}"


def test_a_second_run_sums_nothing_twice(alice, victor, fund):
    fund(alice, 100 * USDC)
    run_session(alice, make_service(victor, unit="per_minute", rate=USDC), NOW - timedelta(days=2), 600, sweeps=(120,))

    first = rollup.rollup_advance()
    summed = list(LedgerBucket.objects.order_by("id").values())
    second = rollup.rollup_advance()

    assert (second.entry_id, second.session_id) == (first.entry_id, first.session_id)
    assert first.entry_id == Entry.objects.latest("id").id
    assert list(LedgerBucket.objects.order_by("id").values()) == summed


@pytest.mark.parametrize("rolled_up", [False, True])
def test_the_watermark_is_read_once_per_dashboard(api, alice, victor, fund, django_assert_num_queries, rolled_up):
    fund(alice, 100 * USDC)
    run_session(alice, make_service(victor, unit="per_minute", rate=USDC), NOW - timedelta(days=2), 600, sweeps=(120,))
    if rolled_up:
        rollup.rollup_advance()

    client = api(alice)  # signing in records a sign-in: not the dashboard's query
    with django_assert_num_queries(8):  # as in test_queries, rollup or not
        assert client.get("/api/v1/dashboard/user/overview").status_code == 200


def test_the_task_is_on_the_beat_and_sums_everything_committed(alice, fund):
    from dashboards.tasks import rollup_advance_task

    fund(alice, 3 * USDC)

    assert settings.CELERY_BEAT_SCHEDULE["dashboards-rollup"]["task"] == rollup_advance_task.name
    rollup_advance_task.apply()
    assert Watermark.objects.get().entry_id == Entry.objects.latest("id").id


def test_every_entry_after_the_watermark_is_of_a_transaction_after_its_floor(alice, victor, fund):
    fund(alice, 100 * USDC)
    run_session(alice, make_service(victor, unit="per_minute", rate=USDC), NOW - timedelta(days=2), 600, sweeps=(120,))

    mark = rollup.rollup_advance()
    assert mark.transaction_floor == LedgerTransaction.objects.latest("id").id
    fund(alice, 7 * USDC)
    tail = Entry.objects.filter(id__gt=mark.entry_id)
    assert tail.exists() and not tail.filter(transaction_id__lte=mark.transaction_floor).exists()

    # Stopped midway (ids given), the floor stays where it held.
    fund(alice, 3 * USDC)
    midway = rollup.rollup_advance(entries_through=tail.order_by("id").values_list("id", flat=True)[1])
    assert midway.transaction_floor == mark.transaction_floor
