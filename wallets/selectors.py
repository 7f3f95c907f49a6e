"""Reads of wallets: balances, a user's ledger history, spending analytics, the ledger's health."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, TruncDate, TruncMonth
from django.utils import timezone

from paygo.api.amounts import format_minor
from paygo.fields import MinorUnitsField
from wallets.models import Account, AccountKind, Asset, Entry, HoldStatus, TransactionKind


@dataclass(frozen=True)
class Balance:
    asset: Asset
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


def balances_for(user) -> list[Balance]:
    """The user's balance in every active asset (zero where no account was opened yet)."""
    accounts = {
        account.asset_id: account
        for account in Account.objects.filter(kind=AccountKind.USER, owner=user).only("asset_id", "balance", "held")
    }
    result = []
    for asset in Asset.objects.filter(is_active=True).order_by("-is_default", "id"):
        account = accounts.get(asset.pk)
        result.append(Balance(asset, account.balance if account else 0, account.held if account else 0))
    return result


def entries_for(
    user,
    *,
    kind: str | None = None,
    token: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Entry]:
    """The user's side of every ledger transaction that touched their wallets, newest first."""
    entries = Entry.objects.filter(account__kind=AccountKind.USER, account__owner=user).select_related(
        "transaction", "asset"
    )
    if kind:
        entries = entries.filter(transaction__kind=kind)
    if token:
        entries = entries.filter(asset__code=token.upper())
    if since:
        entries = entries.filter(transaction__created_at__gte=since)
    if until:
        entries = entries.filter(transaction__created_at__lt=until)
    return entries.order_by("-transaction__created_at", "-id")


def spending_analytics(user, *, now: datetime | None = None) -> dict:
    """What the web frontend's wallet analytics page reads, from the user's charges in the
    default asset (charges carry the service in their metadata)."""
    now = now or timezone.now()
    asset = Asset.objects.get(is_default=True)
    decimals = asset.decimals
    charges = Entry.objects.filter(
        account__kind=AccountKind.USER, account__owner=user, asset=asset, transaction__kind=TransactionKind.CHARGE
    )
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    zero = Value(0, output_field=MinorUnitsField())
    totals = charges.aggregate(
        total=Coalesce(Sum("amount"), zero),
        today=Coalesce(Sum("amount", filter=Q(transaction__created_at__gte=today)), zero),
        month=Coalesce(Sum("amount", filter=Q(transaction__created_at__gte=month)), zero),
        services=Count(KeyTextTransform("serviceId", "transaction__metadata"), distinct=True),
    )
    by_service = list(
        charges.annotate(service=KeyTextTransform("serviceName", "transaction__metadata"))
        .values("service")
        .annotate(spent=Sum("amount"))
        .order_by("spent")[:10]
    )
    year_ago = (month - timedelta(days=335)).replace(day=1)
    monthly = (
        charges.filter(transaction__created_at__gte=year_ago)
        .annotate(month=TruncMonth("transaction__created_at"))
        .values("month")
        .annotate(spent=Sum("amount"))
        .order_by("month")
    )
    daily = (
        charges.filter(transaction__created_at__gte=today - timedelta(days=29))
        .annotate(day=TruncDate("transaction__created_at"))
        .values("day")
        .annotate(spent=Sum("amount"))
        .order_by("day")
    )
    total_balance = (
        Account.objects.filter(kind=AccountKind.USER, owner=user, asset=asset).values_list("balance", flat=True).first()
        or 0
    )

    def money(minor) -> str:
        return format_minor(-int(minor), decimals)  # charges are debits: spending is their negation

    breakdown = [{"service": row["service"] or "Other", "amount": money(row["spent"])} for row in by_service]
    return {
        "total_spending": money(totals["total"]),
        "services_used": totals["services"],
        "avg_usage_time": 0,
        "today_spend": money(totals["today"]),
        "month_spend": money(totals["month"]),
        "service_breakdown": breakdown,
        "total_balance": format_minor(total_balance, decimals),
        "token": asset.code,
        "chart_data": {
            "monthly_spending": [
                {"month": row["month"].strftime("%Y-%m"), "amount": money(row["spent"])} for row in monthly
            ],
            "top_services": breakdown[:5],
            "usage_over_time": [{"date": row["day"].isoformat(), "usage": money(row["spent"])} for row in daily],
        },
    }


def ledger_health() -> dict:
    """The conservation check: every transaction sums to zero per asset, every cached balance
    equals its entries, every held amount equals its active holds, no user wallet is negative."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM wallets_entry GROUP BY transaction_id, asset_id "
            "HAVING SUM(amount) <> 0) AS t"
        )
        unbalanced = cursor.fetchone()[0]
        cursor.execute(
            "SELECT COUNT(*) FROM wallets_account a LEFT JOIN "
            "(SELECT account_id, SUM(amount) AS total FROM wallets_entry GROUP BY account_id) e "
            "ON e.account_id = a.id WHERE a.balance <> COALESCE(e.total, 0)"
        )
        balance_mismatches = cursor.fetchone()[0]
        cursor.execute(
            "SELECT COUNT(*) FROM wallets_account a LEFT JOIN "
            "(SELECT account_id, SUM(amount) AS total FROM wallets_hold WHERE status = %s GROUP BY account_id) h "
            "ON h.account_id = a.id WHERE a.held <> COALESCE(h.total, 0)",
            [HoldStatus.ACTIVE],
        )
        held_mismatches = cursor.fetchone()[0]
        cursor.execute(
            "SELECT COUNT(*) FROM wallets_account WHERE kind = %s AND (balance < 0 OR balance < held)",
            [AccountKind.USER],
        )
        negative = cursor.fetchone()[0]
        cursor.execute("SELECT asset_id, SUM(balance) FROM wallets_account GROUP BY asset_id HAVING SUM(balance) <> 0")
        nonzero_assets = cursor.fetchall()
    return {
        "healthy": not (unbalanced or balance_mismatches or held_mismatches or negative or nonzero_assets),
        "unbalanced_transactions": unbalanced,
        "balance_mismatches": balance_mismatches,
        "held_mismatches": held_mismatches,
        "negative_user_accounts": negative,
        "assets_not_summing_to_zero": len(nonzero_assets),
    }
