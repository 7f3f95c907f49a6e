"""Reads behind the dashboards: a user's spending, a vendor's earnings, the platform's figures.

Every amount is a sum of ledger entries in the default asset (the dashboards speak USDC, and say so
as `token`), so that each figure equals the ledger to the minor unit:
- a user's spending is minus what their sessions' charges debited from them (the payer);
- a vendor's earnings are what their sessions' charges credited them (the payee), net of the fee:
  each charge less its fee (a sweep's batch credits each vendor once for all of its charges);
- gross volume is the sum of the debits on charges, platform revenue the platform revenue
  account's entries on charges.
A charge is the payer's debit that carries its session (wallets.Entry.session). A session counts in the bucket it
started in, money in the bucket it moved in. Session counts next to money figures are of sessions
in the default asset too; lists of sessions show every session, each in its own token.

Sums over the ledger read the rollup and the entries after its watermark in one statement
(dashboards/rollup.py), so that they cost the rows of the rollup, not the entries summed.
Each function runs a fixed number of queries whatever the data size.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Count,
    DateTimeField,
    F,
    IntegerField,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from rest_framework.exceptions import NotFound, PermissionDenied

from dashboards import health, rollup
from dashboards.models import USER_SPANS
from dashboards.periods import DAY, MONTH, Window, floor, local_midnight, shift, trunc
from marketplace.models import Service
from paygo.api.amounts import format_minor
from paygo.api.instants import instant
from paygo.api.permissions import staff_has
from paygo.fields import MinorUnitsField
from streaming.models import SessionStatus, StreamingSession
from wallets.models import (
    Account,
    AccountKind,
    Asset,
    Entry,
    SystemAccount,
    TransactionKind,
    Withdrawal,
    WithdrawalStatus,
)

RECENT = 5
TOP = 5
RECENT_ACTIVITY_DAYS = 7
ZERO = Value(0, output_field=MinorUnitsField())

# What staff need to look at someone else's dashboard: the view permissions on what it shows (the
# sessions, the ledger's charges, and a vendor's services); and for the platform's figures, the
# permission the admin's operator dashboard asks (dashboards.models.PlatformOverview).
USER_DASHBOARD = ("streaming.view_streamingsession", "wallets.view_ledgertransaction")
VENDOR_DASHBOARD = (*USER_DASHBOARD, "marketplace.view_service")
PLATFORM_OVERVIEW = "dashboards.view_platform_overview"
_DASHBOARDS = {"user": USER_DASHBOARD, "vendor": VENDOR_DASHBOARD}


def dashboard_subject(viewer, *, role: str, param: str, wanted: int | None):
    """Whose dashboard of `role` the viewer asks for: their own, or the user whose id `param` names
    (`wanted`), for staff who hold the dashboard's view permissions; anyone else is refused."""
    may_name = staff_has(viewer, *_DASHBOARDS[role])
    if wanted is None:
        if viewer.role != role:
            hint = f" Staff name one with ?{param}=." if may_name else ""
            raise PermissionDenied(f"This dashboard is for {role}s.{hint}")
        return viewer
    if not may_name:
        raise PermissionDenied(f"Only staff may look at someone else's dashboard ({param}).")
    try:
        return get_user_model().objects.get(pk=wanted, role=role)
    except get_user_model().DoesNotExist:
        raise NotFound(f"No {role} with id {wanted}.") from None


def default_asset() -> Asset:
    return Asset.objects.get(is_default=True)


class Money:
    """Formats minor units of one asset as the API's decimal strings."""

    def __init__(self, asset: Asset):
        self.asset = asset

    def __call__(self, minor: int | None) -> str:
        return format_minor(int(minor or 0), self.asset.decimals)


def _sum(field: str = "amount", **filters: Any):
    return Coalesce(Sum(field, filter=Q(**filters) if filters else None), ZERO)


def _by_bucket(rows, window: Window, *value_names: str) -> dict:
    """{bucket start: {name: value}} from rows that carry a truncated `bucket`."""
    result: dict = defaultdict(lambda: dict.fromkeys(value_names, 0))
    for row in rows:
        totals = result[window.key(row["bucket"])]
        for name in value_names:
            totals[name] += int(row[name] or 0)
    return result


def _session_charges_sum(amount) -> Coalesce:
    """A session's charges (the ledger's debits that carry it), `amount` of each summed."""
    entries = (
        Entry.objects.filter(session=OuterRef("pk"))
        .order_by()
        .values("session")
        .annotate(total=Sum(amount, output_field=MinorUnitsField()))
        .values("total")
    )
    return Coalesce(Subquery(entries, output_field=MinorUnitsField()), ZERO)


def _window_bucket(window: Window, field: str):
    """The bucket of `field` inside the window, NULL outside: one pass serves all-time totals and the
    window's series."""
    inside = Q(**{f"{field}__gte": window.start, f"{field}__lt": window.end})
    return Case(When(inside, then=window.trunc(field)), default=None, output_field=DateTimeField())


def _series(rows, window: Window, *names: str) -> tuple[dict, dict]:
    """(totals over every row, {bucket start: totals}) of rows carrying a `bucket` (None outside the window)."""
    totals = dict.fromkeys(names, 0)
    buckets: dict = defaultdict(lambda: dict.fromkeys(names, 0))
    for row in rows:
        for name in names:
            value = int(row[name] or 0)
            totals[name] += value
            if row["bucket"] is not None:
                buckets[window.key(row["bucket"])][name] += value
    return totals, buckets


def _window_info(window: Window) -> dict:
    return {
        "period": window.period,
        "tz": str(window.tz.key),
        "from": window.first_day.isoformat(),
        "to": window.last_day.isoformat(),
    }


# --- Sessions, as the user dashboards list them ---------------------------------------------------


def sessions_with_money() -> QuerySet[StreamingSession]:
    """Sessions with what their payer paid (`spent`) and their vendor earned (`earned`), from the ledger;
    with their holds and payers' wallets, which tell how long a running one has lasted (usage_seconds):
    fetched beside the page (two queries), not joined to it, whose eight tables took PostgreSQL 10 ms
    to plan against 1 ms (bench/dashboards.py: a heavy user's sessions 12.8 -> 31.8 ms p95)."""
    related = ("service", "service__category", "vendor", "user", "asset")
    return (
        StreamingSession.objects.select_related(*related)
        .prefetch_related("hold", "payer_account")
        .annotate(spent=_session_charges_sum(-F("amount")), earned=_session_charges_sum(-F("amount") - F("fee")))
    )


def user_sessions(user, *, status: str | None = None) -> QuerySet[StreamingSession]:
    """The user's own sessions (as the payer), newest first."""
    sessions = sessions_with_money().filter(user=user)
    if status:
        sessions = sessions.filter(status=status)
    return sessions.order_by("-start_time", "-id")


def user_session_get(viewer, session_id) -> StreamingSession:
    """One session of the viewer's (any session for staff who may see users' dashboards); someone
    else's is a 404; those who have no user dashboard are refused."""
    sees_any = staff_has(viewer, *USER_DASHBOARD)
    if viewer.role != "user" and not sees_any:
        raise PermissionDenied("This dashboard is for users.")
    try:
        key = uuid.UUID(str(session_id))
    except ValueError:
        raise NotFound("No such session.") from None
    sessions = sessions_with_money().filter(session_id=key)
    if not sees_any:
        sessions = sessions.filter(user=viewer)
    session = sessions.first()
    if session is None:
        raise NotFound("No such session.")
    return session


def session_charge_timeline(session: StreamingSession) -> list[dict]:
    """Each charge of the session (its payer's debit that carries it), oldest first, with the running total."""
    rows = (
        Entry.objects.filter(session=session)
        .order_by("transaction__created_at", "transaction_id", "id")
        .values("transaction_id", "transaction__created_at", "billed_until", "amount")
    )
    money = Money(session.asset)
    timeline, total = [], 0
    for number, row in enumerate(rows, start=1):
        total -= int(row["amount"])
        timeline.append(
            {
                "transaction_id": row["transaction_id"],
                # The charge's own name (its transaction is shared by a sweep's batch).
                "reference": f"charge:{session.session_id}:{number}",
                "at": row["transaction__created_at"],
                "metered_until": row["billed_until"],
                "amount": money(-int(row["amount"])),
                "cumulative": money(total),
            }
        )
    return timeline


# --- A user's dashboard ---------------------------------------------------------------------------


def user_overview(user, *, window: Window, now: datetime) -> dict:
    asset = default_asset()
    money = Money(asset)
    pieces = rollup.spanning_each(window.ranges(), USER_SPANS)

    def spent(source: rollup.Spending) -> QuerySet:
        # One statement: the user's charges and session starts all time per category (the rollup's
        # customer totals and the tail), and per bucket of the window (the rollup's user buckets
        # that partition it, and the tail). `whole` rows count in the all-time figures.
        rows = source.of_user(user, asset).within(pieces).rows
        if source.part == rollup.SPANS:
            rows = rows.annotate(bucket=window.trunc(source.at), whole=Value(False))
            category = {"category_pk": Value(None, output_field=IntegerField())}
            category["category_name"] = Value(None, output_field=CharField())
        else:
            if source.part == rollup.TOTALS:
                rows = rows.annotate(bucket=Value(None, output_field=DateTimeField()), whole=Value(True))
            else:
                rows = rows.annotate(bucket=_window_bucket(window, source.at), whole=Value(True))
            category = {
                "category_pk": F(source.path("service__category")),
                "category_name": F(source.path("service__category__name")),
            }
        return (
            rows.order_by()
            .values("bucket", "whole", **category)
            .annotate(spent=source.paid(), sessions=source.sessions(), charges=source.charges())
        )

    seen = rollup.tail_start()
    rows = rollup.read(rollup.spending(seen), spent)
    # What the rollup cannot sum as sessions start: the ended ones' lengths (a session ends after it
    # is summed) and the last week's starts (an edge of no bucket).
    ended, ended_seconds, recent_starts = _session_lengths(
        user, asset=asset, seen=seen, recent=now - timedelta(days=RECENT_ACTIVITY_DAYS)
    )
    recent = list(user_sessions(user)[:RECENT])

    counted = dict.fromkeys(("spent", "sessions"), 0)
    by_bucket: dict = defaultdict(lambda: {"spent": 0, "sessions": 0})
    by_category: dict = {}
    sessions_per_category: dict = defaultdict(int)
    for row in rows:
        spent, sessions = int(row["spent"] or 0), int(row["sessions"] or 0)
        if row["bucket"] is not None:
            by_bucket[window.key(row["bucket"])]["spent"] += spent
            by_bucket[window.key(row["bucket"])]["sessions"] += sessions
        if not row["whole"]:
            continue
        counted["spent"] += spent
        counted["sessions"] += sessions
        sessions_per_category[row["category_pk"]] += sessions
        if row["charges"]:  # a category the user was charged in (sessions alone do not make one)
            entry = by_category.setdefault(row["category_pk"], {"name": row["category_name"], "spent": 0})
            entry["spent"] += spent
    favorites = sorted(by_category.items(), key=lambda item: (item[1]["spent"], item[1]["name"] or ""))[:TOP]
    return {
        "token": asset.code,
        **_window_info(window),
        "overview": {
            "total_sessions": counted["sessions"],
            "total_spent": money(-counted["spent"]),
            "average_session_length": round(ended_seconds / ended) if ended else 0,
            "recent_activity": recent_starts,
        },
        "favorite_categories": [
            {
                "category_id": key,
                "category": value["name"] or "Other",
                "total_spent": money(-value["spent"]),
                "session_count": sessions_per_category.get(key, 0),
            }
            for key, value in favorites
        ],
        "recent_sessions": recent,
        "analytics": [
            {
                "period": window.label(bucket),
                "session_count": by_bucket.get(bucket, {}).get("sessions", 0),
                "total_spent": money(-by_bucket.get(bucket, {}).get("spent", 0)),
            }
            for bucket in window.buckets
        ],
    }


def wallet_analytics(user, *, tz, now: datetime) -> dict:
    """The wallet page's analytics (the wallets issue's shape), from the user's charges."""
    asset = default_asset()
    money = Money(asset)

    today = now.astimezone(tz).date()
    first_month, first_day = shift(floor(today, MONTH), MONTH, -11), today - timedelta(days=29)
    # The local months before the last 30 days, then each of those days: the user buckets that
    # partition them (a dozen per day at most), and any charge stamped after today.
    months = [shift(first_month, MONTH, n) for n in range(12)]
    edges = [local_midnight(day, tz) for day in months if day < first_day]
    edges += [local_midnight(first_day + timedelta(days=n), tz) for n in range((today - first_day).days + 2)]
    tomorrow = edges[-1]
    pieces = rollup.spanning_each(list(pairwise(edge.astimezone(UTC) for edge in edges)), USER_SPANS)
    pieces |= Q(span=USER_SPANS[0], start__gte=tomorrow)

    def spent(source: rollup.Spending) -> QuerySet:
        # One statement: the user's charges all time per service (the rollup's customer totals) and
        # per local day since `first_month` (its user buckets), and the tail's per service and day.
        rows = source.of_user(user, asset).within(pieces).rows
        if source.part == rollup.SPANS:
            # Buckets the user was charged in (a charge is a debit, never zero): a day with a
            # session start alone is no day of spending.
            rows = rows.filter(payer_amount__lt=0).annotate(day=trunc(DAY, source.at, tz))
            service = {"service_pk": Value(None, output_field=IntegerField())}
            service["service_name"] = Value(None, output_field=CharField())
        else:
            if source.part == rollup.TOTALS:
                # Services the user was charged on (a session alone does not make one).
                rows = rows.filter(charges__gt=0).annotate(day=Value(None, output_field=DateTimeField()))
            else:
                rows = rows.annotate(day=trunc(DAY, source.at, tz))
            service = {"service_pk": F(source.path("service")), "service_name": F(source.path("service__name"))}
        return rows.order_by().values("day", **service).annotate(spent=source.paid())

    seen = rollup.tail_start()
    rows = rollup.read(rollup.spending(seen)[:3], spent)  # no session starts
    balance = (
        Account.objects.filter(kind=AccountKind.USER, owner=user, asset=asset).values_list("balance", flat=True).first()
    )
    last_days = [first_day + timedelta(days=n) for n in range((today - first_day).days + 1)]
    average, used = _time_used(user, asset=asset, tz=tz, days=last_days, now=now, seen=seen)
    total = today_spent = month_spent = 0
    by_service: dict = {}
    monthly: dict = defaultdict(int)
    daily: dict = defaultdict(int)
    for row in rows:
        amount = -int(row["spent"] or 0)
        # Rows of a service count in the all-time figures, rows of a day in the series; the tail's
        # rows are both.
        if row["service_pk"] is not None:
            total += amount
            service = by_service.setdefault(row["service_pk"], [row["service_name"], 0])
            service[1] += amount
        if row["day"] is None:
            continue
        day = row["day"].astimezone(tz).date()
        today_spent += amount if day == today else 0
        month_spent += amount if floor(day, MONTH) == floor(today, MONTH) else 0
        if day >= first_month:
            monthly[floor(day, MONTH)] += amount
        if day >= first_day:
            daily[day] += amount
    ranked = sorted(by_service.values(), key=lambda item: (-item[1], item[0] or ""))[:10]
    breakdown = [{"service": name or "Other", "amount": money(amount)} for name, amount in ranked]
    return {
        "total_spending": money(total),
        "services_used": len(by_service),
        "avg_usage_time": round(average or 0),
        "today_spend": money(today_spent),
        "month_spend": money(month_spent),
        "service_breakdown": breakdown,
        "total_balance": money(balance or 0),
        "token": asset.code,
        "tz": str(tz.key),
        "chart_data": {
            "monthly_spending": [
                {"month": f"{month.year:04d}-{month.month:02d}", "amount": money(amount)}
                for month, amount in sorted(monthly.items())
            ],
            "top_services": breakdown[:TOP],
            "usage_over_time": [
                {"date": day.isoformat(), "usage": used.get(day, 0), "spent": money(daily.get(day, 0))}
                for day in sorted(daily.keys() | used.keys())
            ],
        },
    }


# The user's sessions in an asset as the rollup knows them (dashboards/rollup.py), for what it
# cannot sum as they start: how many ended and their total usage, and which ran when. `counted`:
# the ended ones the rollup counted (CustomerTotal: how many, their seconds, the longest);
# `unsettled`: every other one, few whatever the history — those it summed while they ran
# (RunningSession) and those after its watermark (the tail). Read in the statement's snapshot, as
# the rollup commits them together.
_SESSIONS_KNOWN = """
counted AS (
    SELECT COALESCE(SUM(ended), 0) AS ended, COALESCE(SUM(ended_seconds), 0) AS seconds,
           COALESCE(MAX(longest), INTERVAL '0') AS longest
    FROM dashboards_customertotal WHERE user_id = %(user)s AND asset_id = %(asset)s
),
unsettled AS (
    SELECT session.id, session.start_time, session.end_time, session.status, session.total_usage_seconds
    FROM dashboards_runningsession AS running
    JOIN streaming_streamingsession AS session ON session.id = running.session_id
    WHERE running.user_id = %(user)s AND running.asset_id = %(asset)s
    UNION ALL
    SELECT id, start_time, end_time, status, total_usage_seconds FROM streaming_streamingsession
    WHERE id > %(seen)s AND id > COALESCE((SELECT session_id FROM dashboards_watermark WHERE id = 1), 0)
      AND user_id = %(user)s AND asset_id = %(asset)s
),
lengths AS (
    SELECT counted.ended + COUNT(unsettled.id) FILTER (WHERE unsettled.status <> %(active)s) AS ended,
           counted.seconds + COALESCE(SUM(unsettled.total_usage_seconds)
                                      FILTER (WHERE unsettled.status <> %(active)s), 0) AS seconds
    FROM counted LEFT JOIN unsettled ON true
    GROUP BY counted.ended, counted.seconds
)
"""

# The number of the user's ended sessions and their total usage, and the sessions they started
# since `recent` (a week of them, read by start time).
_SESSION_LENGTHS = f"""
WITH {_SESSIONS_KNOWN}
SELECT lengths.ended, lengths.seconds,
       (SELECT COUNT(*) FROM streaming_streamingsession
        WHERE user_id = %(user)s AND asset_id = %(asset)s AND start_time >= %(recent)s)
FROM lengths
"""  # noqa: S608 (texts of ours)


def _session_lengths(user, *, asset: Asset, seen: rollup.Seen, recent: datetime) -> tuple[int, int, int]:
    """(how many of the user's sessions in `asset` ended, their total usage in seconds, how many
    started since `recent`)."""
    params = {"user": user.pk, "asset": asset.pk, "seen": seen.session_id, "recent": recent}
    with connection.cursor() as cursor:
        cursor.execute(_SESSION_LENGTHS, {**params, "active": SessionStatus.ACTIVE})
        ended, seconds, started = cursor.fetchone()
    return int(ended), int(seconds), int(started)


# The time a user's sessions ran on each of the given local days, and the average length of their
# ended sessions, in one statement. Each session is cut at the local midnights it ran across (a day
# is 23 or 25 hours long across a DST change) and counts up to `now` while it runs. The days' edges
# come as instants, computed in Python as every other dashboard day's are (periods.local_midnight):
# PostgreSQL's AT TIME ZONE reads a naive local midnight that happens twice (a zone falling back at
# midnight) as the later one, where the money's days start at the first, so that a session in the
# repeated hour was dated to a day that had not begun and counted a negative slice. The sessions
# that can have run since `since` (the first day's start): the unsettled ones, and those that
# started at most the longest counted session before it (one that ended before `since` started
# earlier): a few weeks of them.
_TIME_USED = f"""
WITH {_SESSIONS_KNOWN},
mine AS (
    SELECT start_time, COALESCE(end_time, %(now)s) AS end_time
    FROM (
        SELECT id, start_time, end_time FROM streaming_streamingsession
        WHERE user_id = %(user)s AND asset_id = %(asset)s
          AND start_time >= %(since)s - (SELECT longest FROM counted)
        UNION
        SELECT id, start_time, end_time FROM unsettled
    ) AS candidates
    WHERE start_time < %(now)s AND COALESCE(end_time, %(now)s) > %(since)s
),
days AS (
    -- Day k (1-based) is [edges[k], edges[k + 1]); each session is cut at the days from the one it
    -- started in to the one it ended in, found in the sorted edges by width_bucket.
    SELECT k AS day,
           ROUND(SUM(EXTRACT(EPOCH FROM LEAST(mine.end_time, edges.at[k + 1])
                                        - GREATEST(mine.start_time, edges.at[k]))))::bigint AS seconds
    FROM mine
    CROSS JOIN (SELECT %(edges)s::timestamptz[] AS at) AS edges
    CROSS JOIN LATERAL generate_series(
        GREATEST(width_bucket(mine.start_time, edges.at), 1),
        LEAST(width_bucket(mine.end_time, edges.at), cardinality(edges.at) - 1)
    ) AS k
    -- Only days the session ran in: a slice is never empty, let alone negative.
    WHERE mine.start_time < edges.at[k + 1] AND mine.end_time > edges.at[k]
    GROUP BY k
),
ended AS (
    SELECT CASE WHEN ended > 0 THEN seconds::numeric / ended END AS seconds FROM lengths
)
SELECT ended.seconds, days.day, days.seconds FROM ended LEFT JOIN days ON days.seconds > 0
"""  # noqa: S608 (texts of ours)


def _time_used(
    user, *, asset: Asset, tz, days: list[date], now: datetime, seen: rollup.Seen
) -> tuple[Decimal | None, dict]:
    """(the average seconds of the user's ended sessions, {local day: seconds of sessions run that
    day} for each of `days` (consecutive)) for their sessions in `asset` (as every dashboard figure
    beside money)."""
    edges = [local_midnight(day, tz).astimezone(UTC) for day in [*days, days[-1] + timedelta(days=1)]]
    params = {"user": user.pk, "asset": asset.pk, "since": edges[0], "now": now, "edges": edges}
    with connection.cursor() as cursor:
        cursor.execute(_TIME_USED, {**params, "seen": seen.session_id, "active": SessionStatus.ACTIVE})
        rows = cursor.fetchall()
    return rows[0][0], {days[k - 1]: seconds for _, k, seconds in rows if k is not None}


# --- A vendor's dashboard -------------------------------------------------------------------------

# The vendor's RECENT latest customers (whose latest session is the latest, ties by user id), each
# with that session's start and their number of sessions with the vendor, in one statement. Each
# step reads the vendor's sessions newest first (the vendor's start-time index) only until a
# customer not found yet: the cost is that of the few customers shown, not of every session hosted.
# A customer's sessions are counted from the rollup's customer totals (a row per service) and the
# sessions after its watermark, not one by one.
_RECENT_CUSTOMERS = """
WITH RECURSIVE found (step, user_id, last_session_at, seen) AS (
    SELECT 0, NULL::bigint, NULL::timestamptz, ARRAY[]::bigint[]
    UNION ALL
    SELECT found.step + 1, next.user_id, next.start_time, found.seen || next.user_id
    FROM found
    CROSS JOIN LATERAL (
        SELECT session.user_id, session.start_time
        FROM streaming_streamingsession AS session
        WHERE session.vendor_id = %(vendor)s AND session.asset_id = %(asset)s
          AND session.user_id <> ALL (found.seen)
        ORDER BY session.start_time DESC, session.user_id
        LIMIT 1
    ) AS next
    WHERE found.step < %(customers)s
)
SELECT found.user_id, customer.name, found.last_session_at,
       (SELECT COALESCE(SUM(total.sessions), 0) FROM dashboards_customertotal AS total
        WHERE total.vendor_id = %(vendor)s AND total.user_id = found.user_id AND total.asset_id = %(asset)s)::bigint
       + (SELECT COUNT(*) FROM streaming_streamingsession AS session
          WHERE session.id > %(seen)s
            AND session.id > COALESCE((SELECT session_id FROM dashboards_watermark WHERE id = 1), 0)
            AND session.user_id = found.user_id AND session.vendor_id = %(vendor)s AND session.asset_id = %(asset)s)
FROM found JOIN accounts_user AS customer ON customer.id = found.user_id
ORDER BY found.step
"""


def _recent_customers(vendor, *, asset: Asset, seen: rollup.Seen) -> list[dict]:
    """The vendor's latest customers in `asset` (see _RECENT_CUSTOMERS), newest first."""
    params = {"vendor": vendor.pk, "asset": asset.pk, "customers": RECENT, "seen": seen.session_id}
    with connection.cursor() as cursor:
        cursor.execute(_RECENT_CUSTOMERS, params)
        names = ("user_id", "user__name", "last_session_at", "sessions")
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def vendor_overview(vendor, *, window: Window, now: datetime) -> dict:
    asset = default_asset()
    money = Money(asset)
    seen = rollup.tail_start()

    def ever(source: rollup.Services) -> QuerySet:
        # Every service's earnings and sessions hosted, all time: a few rows per service.
        return (
            source.of_vendor(vendor, asset)
            .ever()
            .rows.order_by()
            .values(service_pk=F(source.path("service")))
            .annotate(earnings=source.earned(), sessions=source.sessions())
        )

    hosted = rollup.read(rollup.services(seen), ever)
    by_bucket = _vendor_series(vendor, asset=asset, window=window, seen=seen)
    # Retired services too, in the same query: what they earned is still the vendor's, and named
    # (a retired service's earnings were labelled "Other"); the lists and counts are of the others.
    every_service = list(
        Service.objects.filter(vendor=vendor).select_related("category").order_by("-created_at", "-id")
    )
    services = [item for item in every_service if item.deleted_at is None]
    recent = list(sessions_with_money().filter(vendor=vendor).order_by("-start_time", "-id")[:RECENT])
    customers = _recent_customers(vendor, asset=asset, seen=seen)

    def earnings_from_customers(charges: rollup.Charges) -> QuerySet:
        customer = charges.path("user")
        return (
            charges.earned_by(vendor, asset)
            .rows.filter(**{f"{customer}__in": [row["user_id"] for row in customers]})
            .order_by()
            .values(customer_pk=F(customer))
            .annotate(earnings=charges.earned())
        )

    earned_from: dict = defaultdict(int)
    for row in rollup.read(rollup.customer_charges(seen), earnings_from_customers):
        earned_from[row["customer_pk"]] += int(row["earnings"] or 0)

    per_service: dict = defaultdict(lambda: {"earnings": 0, "sessions": 0})
    for row in hosted:
        per_service[row["service_pk"]]["earnings"] += int(row["earnings"] or 0)
        per_service[row["service_pk"]]["sessions"] += int(row["sessions"] or 0)
    names = {item.pk: item.name for item in every_service}
    top = sorted(
        (item for item in per_service.items() if item[1]["earnings"]), key=lambda item: (-item[1]["earnings"], item[0])
    )
    total = sum(value["earnings"] for value in per_service.values())
    hosted_count = sum(value["sessions"] for value in per_service.values())
    return {
        "token": asset.code,
        **_window_info(window),
        "overview": {
            "total_earnings": money(total),
            "total_sessions_hosted": hosted_count,
            "active_services": sum(1 for item in services if item.is_active),
            "total_services": len(services),
            "average_earning_per_session": money(total // hosted_count if hosted_count else 0),
        },
        "top_services": [
            {
                "service_id": key,
                "name": names.get(key, "Other"),
                "earnings": money(value["earnings"]),
                "sessions": value["sessions"],
            }
            for key, value in top[:TOP]
        ],
        "recent_sessions": recent,
        "recent_customers": [
            {
                "user_id": row["user_id"],
                "name": row["user__name"],
                "last_session_at": row["last_session_at"],
                "sessions": row["sessions"],
                "earnings": money(earned_from.get(row["user_id"], 0)),
            }
            for row in customers
        ],
        "services": [
            {
                "id": item.pk,
                "name": item.name,
                "category": item.category.name,
                "is_active": item.is_active,
                "unit": item.unit,
                "rate": format_minor(int(item.rate), asset.decimals) if item.token == asset.code else None,
                "service_token": item.token,
                "sessions": per_service.get(item.pk, {}).get("sessions", 0),
                "earnings": money(per_service.get(item.pk, {}).get("earnings", 0)),
            }
            for item in services
        ],
        "analytics": [
            {
                "period": window.label(bucket),
                "earnings": money(by_bucket.get(bucket, {}).get("earnings", 0)),
                "sessions": by_bucket.get(bucket, {}).get("sessions", 0),
            }
            for bucket in window.buckets
        ],
    }


def _vendor_series(vendor, *, asset: Asset, window: Window, seen: rollup.Seen) -> dict:
    """{bucket: {earnings, sessions}}: the vendor's earnings and the sessions it hosted (by the time
    they started) per bucket of the window, in one statement."""

    def series(source: rollup.Services) -> QuerySet:
        return (
            source.of_vendor(vendor, asset)
            .cut(window)
            .rows.annotate(bucket=window.trunc(source.at))
            .order_by()
            .values("bucket")
            .annotate(earnings=source.earned(), sessions=source.sessions())
        )

    return _by_bucket(rollup.read(rollup.services(seen), series), window, "earnings", "sessions")


def vendor_earnings(vendor, *, window: Window) -> dict:
    """Earnings per bucket of the window, and their totals (the buckets partition the window)."""
    asset = default_asset()
    money = Money(asset)

    by_bucket = _vendor_series(vendor, asset=asset, window=window, seen=rollup.tail_start())
    report = []
    total_earnings = total_sessions = 0
    for bucket in window.buckets:
        earned = by_bucket.get(bucket, {}).get("earnings", 0)
        sessions = by_bucket.get(bucket, {}).get("sessions", 0)
        total_earnings += earned
        total_sessions += sessions
        report.append({"period": window.label(bucket), "earnings": money(earned), "sessions": sessions})
    return {
        "token": asset.code,
        **_window_info(window),
        "report": report,
        "total_earnings": money(total_earnings),
        "total_sessions": total_sessions,
    }


# --- The platform, for staff ----------------------------------------------------------------------

OVERVIEW_MAX_AGE_SECONDS = 60


def admin_overview_cache_key(window: Window) -> str:
    span = f"{window.start.isoformat()}:{window.end.isoformat()}"
    return f"dashboards:admin-overview:{window.period}:{window.tz.key}:{span}"


def admin_overview(*, window: Window, now: datetime, refresh: bool = False) -> dict:
    """The platform's figures, computed at most once a minute per window.

    They sum every charge, deposit and withdrawal of the window (tens of thousands of entries a
    month on a busy ledger), so staff share one computation for OVERVIEW_MAX_AGE_SECONDS; each
    answer says when it was computed (`computedAt`), and `refresh` recomputes it at once. The ledger
    health check is never run here (it is scheduled: dashboards.health): its latest result is shown.
    """
    key = admin_overview_cache_key(window)
    overview = None if refresh else cache.get(key)
    if overview is None:
        overview = {**_admin_figures(window=window, now=now), "computed_at": instant(now)}
        cache.set(key, overview, OVERVIEW_MAX_AGE_SECONDS)
    return {**overview, "ledger_health": health.latest(), "chipi": chipi_status()}


def chipi_status() -> dict:
    """Which Chipi the money goes through: "sandbox" (simulated money) or "live" (Chipi Pay)."""
    from wallets.chipi.gateway import sandbox_in_use

    return {"mode": "sandbox" if sandbox_in_use() else "live"}


# The TOP services and vendors by what was charged (gross is <= 0: most first), summed in SQL from
# the per-service rows of the rollup and the tail, so that only they leave the database: a service
# or vendor with sessions and no charge in the window is not "top".
_TOP_SQL = """
WITH summed AS (
    SELECT service_pk, vendor_pk, COALESCE(SUM(gross), 0) AS gross, COALESCE(SUM(earnings), 0) AS earnings,
           COALESCE(SUM(sessions), 0) AS sessions
    FROM ({rows}) AS per_service GROUP BY service_pk, vendor_pk
)
(SELECT 'service', service_pk, vendor_pk, gross, earnings, sessions FROM summed
 WHERE gross <> 0 ORDER BY gross, service_pk LIMIT {top})
UNION ALL
(SELECT 'vendor', NULL, vendor_pk, SUM(gross), SUM(earnings), SUM(sessions) FROM summed
 GROUP BY vendor_pk HAVING SUM(gross) <> 0 ORDER BY 4, 3 LIMIT {top})
"""


def _top(per_service: QuerySet) -> tuple[list[dict], list[tuple[int, dict]]]:
    """(top services, top (vendor, figures)) from per-service rows of gross, earnings and sessions."""
    rows, params = per_service.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(_TOP_SQL.format(rows=rows, top=TOP), params)
        ranked = cursor.fetchall()
    services, vendors = [], []
    for what, service_pk, vendor_pk, gross, earnings, sessions in ranked:
        figures = {"gross": int(gross), "earnings": int(earnings), "sessions": int(sessions)}
        if what == "service":
            services.append({"service_pk": service_pk, "vendor_pk": vendor_pk, **figures})
        else:
            vendors.append((vendor_pk, figures))
    return services, vendors


def _admin_figures(*, window: Window, now: datetime) -> dict:
    asset = default_asset()
    money = Money(asset)
    seen = rollup.tail_start()
    charge, deposit = TransactionKind.CHARGE, TransactionKind.DEPOSIT
    money_out = [TransactionKind.WITHDRAWAL, TransactionKind.REFUND]

    def moved(flows: rollup.Flows) -> QuerySet:
        return (
            flows.rows.filter(asset=asset, kind__in=[charge, deposit, *money_out])
            .annotate(bucket=window.trunc(flows.at))
            .order_by()
            .values("bucket")
            .annotate(
                gross=flows.debits(kind=charge),
                charges=flows.debit_count(kind=charge),
                revenue=flows.net(kind=charge, holder=SystemAccount.PLATFORM_REVENUE),
                # Credited to a wallet once per on-chain payment, never taken back (a sweep that
                # reverts leaves the money in the deposit wallet, and the ledger as it was).
                deposits=flows.credits(kind=deposit, holder=AccountKind.USER),
                # Money that left PayGo's custody: what the outbox moved to the custody mirror when a
                # withdrawal or payout was sent, less the sends reverted on chain and refunded from
                # it. A request's debit is not money out (it waits in flight: the outbox's backlog),
                # nor a refusal refunded from in flight.
                withdrawals=flows.net(kind__in=money_out, holder=SystemAccount.CUSTODY),
            )
        )

    names = ("gross", "charges", "revenue", "deposits", "withdrawals")
    by_bucket = _by_bucket(rollup.read(rollup.flows(seen, window), moved), window, *names)

    def started(starts: rollup.Starts) -> QuerySet:
        return (
            starts.rows.filter(asset=asset)
            .annotate(bucket=window.trunc(starts.at))
            .order_by()
            .values("bucket")
            .annotate(sessions=starts.count())
        )

    sessions_by_bucket = _by_bucket(rollup.read(rollup.starts(seen, window), started), window, "sessions")

    def services(source: rollup.Services) -> QuerySet:
        # Per service (and so per vendor): the payers' debits and the vendors' credits on the window's
        # charges, and the sessions started in it; the rollup's rows are a few dozen spans per service.
        return (
            source.within(window)
            .rows.filter(**{source.path("asset"): asset})
            .order_by()
            .values(service_pk=F(source.path("service")), vendor_pk=F(source.path("vendor")))
            .annotate(gross=source.paid(), earnings=source.earned(), sessions=source.sessions())
        )

    top_services, top_vendors = _top(rollup.union(rollup.services(seen), services))
    # Names of the few shown, once they are known: joined to every summed row, they cost more than the sums.
    service_names, vendor_names = {}, {}
    for pk, name, vendor_id, vendor_name in Service.objects.filter(
        Q(pk__in=[row["service_pk"] for row in top_services]) | Q(vendor__in=[key for key, _ in top_vendors])
    ).values_list("pk", "name", "vendor_id", "vendor__name"):
        service_names[pk], vendor_names[vendor_id] = name, vendor_name
    active_sessions = StreamingSession.objects.filter(status=SessionStatus.ACTIVE, asset=asset).count()
    roles = dict(get_user_model().objects.order_by().values_list("role").annotate(n=Count("id")))
    outbox = Withdrawal.objects.filter(asset=asset).aggregate(
        pending=Count("id", filter=Q(status=WithdrawalStatus.PENDING)),
        sending=Count("id", filter=Q(status=WithdrawalStatus.SENDING)),
        failed=Count("id", filter=Q(status=WithdrawalStatus.FAILED)),
        needs_review=Count("id", filter=Q(status=WithdrawalStatus.NEEDS_REVIEW)),
        amount=_sum(status__in=[WithdrawalStatus.PENDING, WithdrawalStatus.SENDING]),
        oldest=Min("created_at", filter=Q(status__in=[WithdrawalStatus.PENDING, WithdrawalStatus.SENDING])),
    )
    totals = {name: sum(row[name] for row in by_bucket.values()) for name in names}
    series = [
        {
            "period": window.label(bucket),
            "gross_volume": money(-by_bucket.get(bucket, {}).get("gross", 0)),
            "platform_revenue": money(by_bucket.get(bucket, {}).get("revenue", 0)),
            "charges": by_bucket.get(bucket, {}).get("charges", 0),
            "deposits": money(by_bucket.get(bucket, {}).get("deposits", 0)),
            "withdrawals": money(by_bucket.get(bucket, {}).get("withdrawals", 0)),
            "sessions": sessions_by_bucket.get(bucket, {}).get("sessions", 0),
        }
        for bucket in window.buckets
    ]
    return {
        "token": asset.code,
        **_window_info(window),
        "totals": {
            "gross_volume": money(-totals["gross"]),
            "platform_revenue": money(totals["revenue"]),
            "vendor_earnings": money(-totals["gross"] - totals["revenue"]),
            "charges": totals["charges"],
            "deposits": money(totals["deposits"]),
            "withdrawals": money(totals["withdrawals"]),
            "sessions": sum(row["sessions"] for row in sessions_by_bucket.values()),
        },
        "active_sessions": active_sessions,
        "users_by_role": {role: roles.get(role, 0) for role in ("user", "vendor", "admin")},
        "outbox": {
            "pending": outbox["pending"],
            "sending": outbox["sending"],
            "failed": outbox["failed"],
            # In doubt, their money in flight, until staff settle them (the withdrawals' admin action).
            "needs_review": outbox["needs_review"],
            "backlog": outbox["pending"] + outbox["sending"],
            "backlog_amount": money(outbox["amount"]),
            "oldest_pending_at": outbox["oldest"],
        },
        "series": series,
        "top_services": [
            {
                "service_id": row["service_pk"],
                "name": service_names.get(row["service_pk"]) or "Other",
                "vendor": vendor_names.get(row["vendor_pk"]) or "",
                "gross_volume": money(-row["gross"]),
                "sessions": row["sessions"],
            }
            for row in top_services
        ],
        "top_vendors": [
            {
                "vendor_id": key,
                "name": vendor_names.get(key) or "Other",
                "gross_volume": money(-value["gross"]),
                "earnings": money(value["earnings"]),
                "sessions": value["sessions"],
            }
            for key, value in top_vendors
        ],
    }
