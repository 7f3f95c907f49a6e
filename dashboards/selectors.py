"""Reads behind the dashboards: a user's spending, a vendor's earnings, the platform's figures.

Every amount is a sum of ledger entries in the default asset (the dashboards speak USDC, and say so
as `token`), so that each figure equals the ledger to the minor unit:
- a user's spending is minus the sum of their entries on charge transactions;
- a vendor's earnings are the sum of their credit entries on charge transactions (net of the fee);
- gross volume is the sum of the payers' debits on charges, platform revenue the platform revenue
  account's credits on charges.
Sessions are reached from a charge through its SessionCharge. A session counts in the bucket it
started in, money in the bucket it moved in. Session counts next to money figures are of sessions
in the default asset too; lists of sessions show every session, each in its own token.

Each function runs a fixed number of queries whatever the data size.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Avg, Count, F, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from rest_framework.exceptions import NotFound

from dashboards.periods import DAY, MONTH, Window, floor, local_midnight, shift, trunc
from marketplace.models import Service
from paygo.api.amounts import format_minor
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
from wallets.selectors import ledger_health

# The session a ledger entry's charge belongs to.
SESSION = "transaction__session_charge__session"
RECENT = 5
TOP = 5
RECENT_ACTIVITY_DAYS = 7
ZERO = Value(0, output_field=MinorUnitsField())
ENDED = ~Q(status=SessionStatus.ACTIVE)


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


def _charges(asset: Asset) -> QuerySet[Entry]:
    return Entry.objects.filter(asset=asset, transaction__kind=TransactionKind.CHARGE)


def _payer_charges(user, asset: Asset) -> QuerySet[Entry]:
    """The user's entries on charges: debits, so spending is minus their sum."""
    return _charges(asset).filter(account__kind=AccountKind.USER, account__owner=user)


def _payee_credits(vendor, asset: Asset) -> QuerySet[Entry]:
    """The vendor's credits on charges: what they earned, net of the platform's fee."""
    return _charges(asset).filter(account__kind=AccountKind.USER, account__owner=vendor, amount__gt=0)


def _in_window(entries: QuerySet[Entry], window: Window) -> QuerySet[Entry]:
    return entries.filter(transaction__created_at__gte=window.start, transaction__created_at__lt=window.end)


def _by_bucket(rows, window: Window, *value_names: str) -> dict:
    """{bucket start: {name: value}} from rows that carry a truncated `bucket`."""
    result: dict = defaultdict(lambda: dict.fromkeys(value_names, 0))
    for row in rows:
        totals = result[window.key(row["bucket"])]
        for name in value_names:
            totals[name] += int(row[name] or 0)
    return result


def _session_ledger_sum(account_field: str):
    """A session's entries on its charges on one of its accounts (payer or payee), summed."""
    entries = (
        Entry.objects.filter(transaction__session_charge__session=OuterRef("pk"), account=OuterRef(account_field))
        .order_by()
        .values("account")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    return Coalesce(Subquery(entries, output_field=MinorUnitsField()), ZERO)


def _sessions_by_bucket(sessions: QuerySet[StreamingSession], window: Window) -> dict:
    rows = (
        sessions.filter(start_time__gte=window.start, start_time__lt=window.end)
        .annotate(bucket=window.trunc("start_time"))
        .order_by()
        .values("bucket")
        .annotate(sessions=Count("id"))
    )
    return _by_bucket(rows, window, "sessions")


def _window_info(window: Window) -> dict:
    return {
        "period": window.period,
        "tz": str(window.tz.key),
        "from": window.first_day.isoformat(),
        "to": window.last_day.isoformat(),
    }


# --- Sessions, as the user dashboards list them ---------------------------------------------------


def sessions_with_money() -> QuerySet[StreamingSession]:
    """Sessions with what their payer paid (`spent`) and their vendor earned (`earned`), from the ledger."""
    return StreamingSession.objects.select_related("service", "service__category", "vendor", "user", "asset").annotate(
        spent=-_session_ledger_sum("payer_account"), earned=_session_ledger_sum("payee_account")
    )


def user_sessions(user, *, status: str | None = None) -> QuerySet[StreamingSession]:
    """The user's own sessions (as the payer), newest first."""
    sessions = sessions_with_money().filter(user=user)
    if status:
        sessions = sessions.filter(status=status)
    return sessions.order_by("-start_time", "-id")


def user_session_get(viewer, session_id) -> StreamingSession:
    """One session of the viewer's (any session for staff); someone else's is a 404."""
    try:
        key = uuid.UUID(str(session_id))
    except ValueError:
        raise NotFound("No such session.") from None
    sessions = sessions_with_money().filter(session_id=key)
    if not viewer.is_staff:
        sessions = sessions.filter(user=viewer)
    session = sessions.first()
    if session is None:
        raise NotFound("No such session.")
    return session


def session_charge_timeline(session: StreamingSession) -> list[dict]:
    """Each charge of the session as the payer's ledger entry saw it, oldest first, with the running total."""
    rows = (
        Entry.objects.filter(transaction__session_charge__session=session, account_id=session.payer_account_id)
        .order_by("transaction__created_at", "transaction_id")
        .values(
            "transaction_id",
            "transaction__created_at",
            "transaction__reference",
            "transaction__session_charge__metered_until",
            "amount",
        )
    )
    money = Money(session.asset)
    timeline, total = [], 0
    for row in rows:
        total -= int(row["amount"])
        timeline.append(
            {
                "transaction_id": row["transaction_id"],
                "reference": row["transaction__reference"],
                "at": row["transaction__created_at"],
                "metered_until": row["transaction__session_charge__metered_until"],
                "amount": money(-int(row["amount"])),
                "cumulative": money(total),
            }
        )
    return timeline


# --- A user's dashboard ---------------------------------------------------------------------------


def user_overview(user, *, window: Window, now: datetime) -> dict:
    asset = default_asset()
    money = Money(asset)
    spent = -_payer_charges(user, asset).aggregate(total=_sum())["total"]
    sessions = StreamingSession.objects.filter(user=user, asset=asset)
    counts = sessions.aggregate(
        total=Count("id"),
        average_seconds=Avg("total_usage_seconds", filter=ENDED),
        recent=Count("id", filter=Q(start_time__gte=now - timedelta(days=RECENT_ACTIVITY_DAYS))),
    )
    categories = list(
        _payer_charges(user, asset)
        .order_by()
        .values(f"{SESSION}__service__category_id", f"{SESSION}__service__category__name")
        .annotate(spent=Sum("amount"), sessions=Count(f"{SESSION}__id", distinct=True))
        .order_by("spent", f"{SESSION}__service__category__name")[:TOP]
    )
    recent = list(user_sessions(user)[:RECENT])
    spent_by_bucket = _by_bucket(
        _in_window(_payer_charges(user, asset), window)
        .annotate(bucket=window.trunc("transaction__created_at"))
        .order_by()
        .values("bucket")
        .annotate(spent=Sum("amount")),
        window,
        "spent",
    )
    sessions_by_bucket = _sessions_by_bucket(sessions, window)
    return {
        "token": asset.code,
        **_window_info(window),
        "overview": {
            "total_sessions": counts["total"],
            "total_spent": money(spent),
            "average_session_length": round(counts["average_seconds"] or 0),
            "recent_activity": counts["recent"],
        },
        "favorite_categories": [
            {
                "category_id": row[f"{SESSION}__service__category_id"],
                "category": row[f"{SESSION}__service__category__name"] or "Other",
                "total_spent": money(-row["spent"]),
                "session_count": row["sessions"],
            }
            for row in categories
        ],
        "recent_sessions": recent,
        "analytics": [
            {
                "period": window.label(bucket),
                "session_count": sessions_by_bucket.get(bucket, {}).get("sessions", 0),
                "total_spent": money(-spent_by_bucket.get(bucket, {}).get("spent", 0)),
            }
            for bucket in window.buckets
        ],
    }


def wallet_analytics(user, *, tz, now: datetime) -> dict:
    """The wallet page's analytics (the wallets issue's shape), from the user's charges."""
    asset = default_asset()
    money = Money(asset)
    charges = _payer_charges(user, asset)
    today = now.astimezone(tz).date()
    today_start = local_midnight(today, tz)
    month_start = local_midnight(today.replace(day=1), tz)
    totals = charges.aggregate(
        total=_sum(),
        today=_sum(transaction__created_at__gte=today_start),
        month=_sum(transaction__created_at__gte=month_start),
        services=Count(f"{SESSION}__service_id", distinct=True),
    )
    by_service = list(
        charges.order_by()
        .values(f"{SESSION}__service_id", f"{SESSION}__service__name")
        .annotate(spent=Sum("amount"))
        .order_by("spent", f"{SESSION}__service__name")[:10]
    )
    first_month = shift(floor(today, MONTH), MONTH, -11)
    monthly = list(
        charges.filter(transaction__created_at__gte=local_midnight(first_month, tz))
        .annotate(bucket=trunc(MONTH, "transaction__created_at", tz))
        .order_by()
        .values("bucket")
        .annotate(spent=Sum("amount"))
        .order_by("bucket")
    )
    daily = list(
        charges.filter(transaction__created_at__gte=local_midnight(today - timedelta(days=29), tz))
        .annotate(bucket=trunc(DAY, "transaction__created_at", tz))
        .order_by()
        .values("bucket")
        .annotate(spent=Sum("amount"))
        .order_by("bucket")
    )
    balance = (
        Account.objects.filter(kind=AccountKind.USER, owner=user, asset=asset).values_list("balance", flat=True).first()
    )
    average = StreamingSession.objects.filter(ENDED, user=user, asset=asset).aggregate(
        seconds=Avg("total_usage_seconds")
    )["seconds"]
    breakdown = [
        {"service": row[f"{SESSION}__service__name"] or "Other", "amount": money(-row["spent"])} for row in by_service
    ]
    return {
        "total_spending": money(-totals["total"]),
        "services_used": totals["services"],
        "avg_usage_time": round(average or 0),
        "today_spend": money(-totals["today"]),
        "month_spend": money(-totals["month"]),
        "service_breakdown": breakdown,
        "total_balance": money(balance or 0),
        "token": asset.code,
        "tz": str(tz.key),
        "chart_data": {
            "monthly_spending": [
                {"month": row["bucket"].astimezone(tz).strftime("%Y-%m"), "amount": money(-row["spent"])}
                for row in monthly
            ],
            "top_services": breakdown[:TOP],
            "usage_over_time": [
                {"date": row["bucket"].astimezone(tz).date().isoformat(), "usage": money(-row["spent"])}
                for row in daily
            ],
        },
    }


# --- A vendor's dashboard -------------------------------------------------------------------------


def _vendor_earnings_by_bucket(vendor, asset: Asset, window: Window) -> dict:
    return _by_bucket(
        _in_window(_payee_credits(vendor, asset), window)
        .annotate(bucket=window.trunc("transaction__created_at"))
        .order_by()
        .values("bucket")
        .annotate(earnings=Sum("amount")),
        window,
        "earnings",
    )


def vendor_overview(vendor, *, window: Window, now: datetime) -> dict:
    asset = default_asset()
    money = Money(asset)
    credits = _payee_credits(vendor, asset)
    earnings = credits.aggregate(total=_sum())["total"]
    hosted = StreamingSession.objects.filter(vendor=vendor, asset=asset)
    sessions_hosted = hosted.count()
    services = list(
        Service.objects.filter(vendor=vendor, deleted_at__isnull=True)
        .select_related("category")
        .annotate(session_count=Count("sessions", filter=Q(sessions__asset=asset)))
        .order_by("-created_at", "-id")
    )
    earned_by_service = {
        row[f"{SESSION}__service_id"]: row
        for row in credits.order_by()
        .values(f"{SESSION}__service_id", f"{SESSION}__service__name")
        .annotate(earnings=Sum("amount"), sessions=Count(f"{SESSION}__id", distinct=True))
    }
    recent = list(sessions_with_money().filter(vendor=vendor).order_by("-start_time", "-id")[:RECENT])
    customers = list(
        StreamingSession.objects.filter(vendor=vendor, asset=asset)
        .order_by()
        .values("user_id", "user__name")
        .annotate(last_session_at=Max("start_time"), sessions=Count("id"))
        .order_by("-last_session_at", "user_id")[:RECENT]
    )
    earned_from = dict(
        credits.filter(**{f"{SESSION}__user_id__in": [row["user_id"] for row in customers]})
        .order_by()
        .values_list(f"{SESSION}__user_id")
        .annotate(earnings=Sum("amount"))
    )
    earnings_by_bucket = _vendor_earnings_by_bucket(vendor, asset, window)
    sessions_by_bucket = _sessions_by_bucket(hosted, window)

    top = sorted(earned_by_service.values(), key=lambda row: (-row["earnings"], row[f"{SESSION}__service_id"] or 0))
    return {
        "token": asset.code,
        **_window_info(window),
        "overview": {
            "total_earnings": money(earnings),
            "total_sessions_hosted": sessions_hosted,
            "active_services": sum(1 for service in services if service.is_active),
            "total_services": len(services),
            "average_earning_per_session": money(earnings // sessions_hosted if sessions_hosted else 0),
        },
        "top_services": [
            {
                "service_id": row[f"{SESSION}__service_id"],
                "name": row[f"{SESSION}__service__name"] or "Other",
                "earnings": money(row["earnings"]),
                "sessions": row["sessions"],
            }
            for row in top[:TOP]
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
                "id": service.pk,
                "name": service.name,
                "category": service.category.name,
                "is_active": service.is_active,
                "unit": service.unit,
                "rate": format_minor(int(service.rate), asset.decimals) if service.token == asset.code else None,
                "service_token": service.token,
                "sessions": service.session_count,
                "earnings": money(earned_by_service.get(service.pk, {}).get("earnings", 0)),
            }
            for service in services
        ],
        "analytics": [
            {
                "period": window.label(bucket),
                "earnings": money(earnings_by_bucket.get(bucket, {}).get("earnings", 0)),
                "sessions": sessions_by_bucket.get(bucket, {}).get("sessions", 0),
            }
            for bucket in window.buckets
        ],
    }


def vendor_earnings(vendor, *, window: Window) -> dict:
    """Earnings per bucket of the window, and their totals (the buckets partition the window)."""
    asset = default_asset()
    money = Money(asset)
    earnings_by_bucket = _vendor_earnings_by_bucket(vendor, asset, window)
    sessions_by_bucket = _sessions_by_bucket(StreamingSession.objects.filter(vendor=vendor, asset=asset), window)
    report = []
    total_earnings = total_sessions = 0
    for bucket in window.buckets:
        earned = earnings_by_bucket.get(bucket, {}).get("earnings", 0)
        sessions = sessions_by_bucket.get(bucket, {}).get("sessions", 0)
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

HEALTH_CACHE_KEY = "dashboards:ledger-health"
HEALTH_MAX_AGE_SECONDS = 300


def ledger_health_checked(*, refresh: bool = False) -> dict:
    """The ledger's conservation check with the time it ran.

    The check reads the whole ledger, so it runs on a schedule (dashboards.ledger_health_check)
    and the dashboards show its latest result; a missing or stale result is computed here.
    """
    checked = None if refresh else cache.get(HEALTH_CACHE_KEY)
    if checked is None or _age_seconds(checked) > HEALTH_MAX_AGE_SECONDS:
        checked = {**ledger_health(), "checked_at": timezone.now().isoformat()}
        cache.set(HEALTH_CACHE_KEY, checked, HEALTH_MAX_AGE_SECONDS * 2)
    return checked


def _age_seconds(checked: dict) -> float:
    try:
        return (timezone.now() - datetime.fromisoformat(checked["checked_at"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return float("inf")


def admin_overview(*, window: Window, now: datetime, refresh_health: bool = False) -> dict:
    asset = default_asset()
    money = Money(asset)
    moved = (
        Entry.objects.filter(
            asset=asset,
            transaction__kind__in=[TransactionKind.CHARGE, TransactionKind.DEPOSIT, TransactionKind.WITHDRAWAL],
            transaction__created_at__gte=window.start,
            transaction__created_at__lt=window.end,
        )
        .annotate(bucket=window.trunc("transaction__created_at"))
        .order_by()
        .values("bucket")
        .annotate(
            gross=_sum(transaction__kind=TransactionKind.CHARGE, amount__lt=0),
            charges=Count("id", filter=Q(transaction__kind=TransactionKind.CHARGE, amount__lt=0)),
            revenue=_sum(
                transaction__kind=TransactionKind.CHARGE,
                account__kind=AccountKind.SYSTEM,
                account__system_code=SystemAccount.PLATFORM_REVENUE,
            ),
            deposits=_sum(transaction__kind=TransactionKind.DEPOSIT, account__kind=AccountKind.USER, amount__gt=0),
            withdrawals=_sum(
                transaction__kind=TransactionKind.WITHDRAWAL, account__kind=AccountKind.USER, amount__lt=0
            ),
        )
    )
    names = ("gross", "charges", "revenue", "deposits", "withdrawals")
    by_bucket = _by_bucket(moved, window, *names)
    sessions_by_bucket = _sessions_by_bucket(StreamingSession.objects.filter(asset=asset), window)
    charges_in_window = _in_window(_charges(asset), window)
    top_services = list(
        charges_in_window.filter(amount__lt=0)
        .order_by()
        .values(f"{SESSION}__service_id", f"{SESSION}__service__name", f"{SESSION}__vendor__name")
        .annotate(gross=Sum("amount"), sessions=Count(f"{SESSION}__id", distinct=True))
        .order_by("gross", f"{SESSION}__service_id")[:TOP]
    )
    top_vendors = list(
        charges_in_window.order_by()
        .values(f"{SESSION}__vendor_id", f"{SESSION}__vendor__name")
        .annotate(
            gross=_sum(amount__lt=0),
            earnings=_sum(account=F(f"{SESSION}__payee_account")),
            sessions=Count(f"{SESSION}__id", distinct=True),
        )
        .order_by("gross", f"{SESSION}__vendor_id")[:TOP]
    )
    active_sessions = StreamingSession.objects.filter(status=SessionStatus.ACTIVE).count()
    roles = dict(get_user_model().objects.order_by().values_list("role").annotate(n=Count("id")))
    outbox = Withdrawal.objects.filter(asset=asset).aggregate(
        pending=Count("id", filter=Q(status=WithdrawalStatus.PENDING)),
        sending=Count("id", filter=Q(status=WithdrawalStatus.SENDING)),
        failed=Count("id", filter=Q(status=WithdrawalStatus.FAILED)),
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
            "withdrawals": money(-by_bucket.get(bucket, {}).get("withdrawals", 0)),
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
            "withdrawals": money(-totals["withdrawals"]),
            "sessions": sum(row["sessions"] for row in sessions_by_bucket.values()),
        },
        "active_sessions": active_sessions,
        "users_by_role": {role: roles.get(role, 0) for role in ("user", "vendor", "admin")},
        "outbox": {
            "pending": outbox["pending"],
            "sending": outbox["sending"],
            "failed": outbox["failed"],
            "backlog": outbox["pending"] + outbox["sending"],
            "backlog_amount": money(outbox["amount"]),
            "oldest_pending_at": outbox["oldest"],
        },
        "ledger_health": ledger_health_checked(refresh=refresh_health),
        "series": series,
        "top_services": [
            {
                "service_id": row[f"{SESSION}__service_id"],
                "name": row[f"{SESSION}__service__name"] or "Other",
                "vendor": row[f"{SESSION}__vendor__name"] or "",
                "gross_volume": money(-row["gross"]),
                "sessions": row["sessions"],
            }
            for row in top_services
        ],
        "top_vendors": [
            {
                "vendor_id": row[f"{SESSION}__vendor_id"],
                "name": row[f"{SESSION}__vendor__name"] or "Other",
                "gross_volume": money(-row["gross"]),
                "earnings": money(row["earnings"]),
                "sessions": row["sessions"],
            }
            for row in top_vendors
        ],
    }
