"""Reads of wallets: balances, a user's ledger history, the ledger's health.

Spending analytics (GET /wallet/analytics) are a dashboard: dashboards.selectors.wallet_analytics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from wallets.models import Account, AccountKind, Asset, Entry, HoldStatus
from wallets.starknet import address_normalize


@dataclass(frozen=True)
class Balance:
    asset: Asset
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


def wallet_owner(address: object):
    """The user whose wallet address this is, however it is spelled (wallets.starknet), or None."""
    normalized = address_normalize(address)
    return get_user_model().objects.filter(wallet_address=normalized).first() if normalized else None


def chain_payment_asset(token: str) -> Asset | None:
    """The asset a payment on chain is in, by the token Chipi names (its symbol, "USDC", or its
    chainToken, "USDC_E"), or None for a token PayGo has no asset for (left uncredited).

    Active or not: a token staff deactivated takes no new business (sessions, transfers, swaps),
    but a payment in it that arrived at a deposit address is in PayGo's custody and is the payer's,
    so it is credited (and swept) as any deposit. Skipped, PayGo kept it and the user never knew."""
    from wallets.chipi.interface import ASSET_BY_CHAIN_TOKEN

    return Asset.objects.filter(code=ASSET_BY_CHAIN_TOKEN.get(token, token)).first()


def transfer_recipient(
    *, recipient_id: int | None = None, recipient_email: str | None = None, recipient_address: str | None = None
):
    """The user a transfer names, by id, email or wallet address (one of them), or None. Whether they
    may be paid (active, not the sender) is wallets.services.wallet_transfer's rule."""
    users = get_user_model().objects
    if recipient_id is not None:
        return users.filter(pk=recipient_id).first()
    if recipient_email is not None:
        return users.filter(email=users.normalize_email(recipient_email)).first()
    return wallet_owner(recipient_address)


def balances_for(user) -> list[Balance]:
    """The user's balance in every active asset (zero where no account was opened yet), and in
    every asset staff deactivated that the user still holds (theirs to withdraw: TokenField)."""
    accounts = {
        account.asset_id: account
        for account in Account.objects.filter(kind=AccountKind.USER, owner=user).only("asset_id", "balance", "held")
    }
    held = [asset_id for asset_id, account in accounts.items() if account.balance or account.held]
    result = []
    for asset in Asset.objects.filter(Q(is_active=True) | Q(pk__in=held)).order_by("-is_default", "id"):
        account = accounts.get(asset.pk)
        result.append(Balance(asset, account.balance if account else 0, account.held if account else 0))
    return result


class History:
    """A user's ledger history: their side of every ledger transaction that touched their wallets,
    newest first (by its transaction's time, then entry id), filtered by the transaction's kind, the
    token, and a range of times (`since` included, `until` excluded).

    Read wallet by wallet from the index (account, created_at DESC, id DESC), in which each wallet's
    history is a range already in the order it is shown: a slice down to its `stop`th line reads the
    `stop` newest matching entries of each of the user's wallets (one per asset at most) and merges
    them, whatever the history's length. The paginator slices it and counts it up to a limit."""

    def __init__(self, user, *, kind=None, token=None, since=None, until=None):
        self.user, self.kind, self.token, self.since, self.until = user, kind, token, since, until

    def _newest(self, depth: int) -> tuple[str, list]:
        """SQL of (id, created_at) of the `depth` newest matching entries of each of the user's wallets."""
        joins, where, params = "", "", []
        if self.kind:
            joins = " JOIN wallets_ledgertransaction AS t ON t.id = e.transaction_id AND t.kind = %s"
            params.append(self.kind)
        if self.since:
            where += " AND e.created_at >= %s"
            params.append(self.since)
        if self.until:
            where += " AND e.created_at < %s"
            params.append(self.until)
        params += [depth, AccountKind.USER, self.user.pk]
        wallets = ""
        if self.token:
            wallets = " AND a.asset_id IN (SELECT id FROM wallets_asset WHERE code = %s)"
            params.append(self.token.upper())
        return (
            "SELECT n.id, n.created_at FROM wallets_account AS a CROSS JOIN LATERAL ("  # noqa: S608 (ours; values bound)
            f"SELECT e.id, e.created_at FROM wallets_entry AS e{joins} WHERE e.account_id = a.id{where} "
            "ORDER BY e.created_at DESC, e.id DESC LIMIT %s) AS n "
            f"WHERE a.kind = %s AND a.owner_id = %s{wallets}",
            params,
        )

    def count_up_to(self, limit: int) -> int:
        """How many lines the history has, counted up to `limit`."""
        sql, params = self._newest(limit)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT least(COUNT(*), %s) FROM ({sql}) AS h", [limit, *params])  # noqa: S608 (ours)
            return cursor.fetchone()[0]

    def __getitem__(self, lines: slice) -> list[Entry]:
        """The lines from `start` to `stop`: the newest `stop` of each wallet, merged and cut (from the index
        alone), then those lines' entries, and what they show."""
        if not isinstance(lines, slice) or lines.step is not None or lines.start is None or lines.stop is None:
            raise TypeError("a History is read a slice of lines at a time")
        sql, params = self._newest(lines.stop)
        page = (
            f"wallets_entry.id = ANY (ARRAY(SELECT h.id FROM ({sql}) AS h "  # noqa: S608 (ours; values bound)
            "ORDER BY h.created_at DESC, h.id DESC LIMIT %s OFFSET %s))"
        )
        params += [lines.stop - lines.start, lines.start]
        return list(
            Entry.objects.filter(RawSQL(page, params, output_field=BooleanField()))  # noqa: S611 (as above)
            .select_related("transaction", "asset", "session__service")
            .order_by("-created_at", "-id")
        )


def entries_for(
    user,
    *,
    kind: str | None = None,
    token: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> History:
    """The user's side of every ledger transaction that touched their wallets, newest first (History)."""
    return History(user, kind=kind, token=token, since=since, until=until)


def ledger_health() -> dict:
    """The conservation check: every transaction sums to zero per asset, every entry has its
    transaction and its account (in the account's asset), every cached balance equals its entries,
    every held amount equals its active holds, no user wallet is negative."""
    with connection.cursor() as cursor:
        # Unbalanced transactions; entries whose transaction or account is missing, or whose asset
        # is not their account's (the database checks both as entries are written: migration 0006).
        cursor.execute(
            "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM wallets_entry GROUP BY transaction_id, asset_id "
            "HAVING SUM(amount) <> 0) AS t), "
            "(SELECT COUNT(*) FROM wallets_entry e LEFT JOIN wallets_account a ON a.id = e.account_id "
            "LEFT JOIN wallets_ledgertransaction t ON t.id = e.transaction_id "
            "WHERE a.id IS NULL OR a.asset_id <> e.asset_id OR t.id IS NULL)"
        )
        unbalanced, dangling = cursor.fetchone()
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
        "healthy": not (unbalanced or dangling or balance_mismatches or held_mismatches or negative or nonzero_assets),
        "unbalanced_transactions": unbalanced,
        "dangling_entries": dangling,
        "balance_mismatches": balance_mismatches,
        "held_mismatches": held_mismatches,
        "negative_user_accounts": negative,
        "assets_not_summing_to_zero": len(nonzero_assets),
    }
