"""Reads of wallets: balances, a user's ledger history, the ledger's health.

Spending analytics (GET /wallet/analytics) are a dashboard: dashboards.selectors.wallet_analytics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import BooleanField, F, Q, QuerySet
from django.db.models.expressions import RawSQL

from wallets.models import Account, AccountKind, Asset, ChipiWallet, ChipiWalletRole, Entry, HoldStatus
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


def _deposit_wallets() -> QuerySet[ChipiWallet]:
    return ChipiWallet.objects.filter(role=ChipiWalletRole.DEPOSIT).exclude(address="").select_related("owner")


def deposit_wallets_wanted(*, now: datetime, polled_before: datetime, limit: int) -> QuerySet[ChipiWallet]:
    """Up to `limit` deposit wallets a deposit is expected in (poll_wanted_until still ahead) that
    were not looked at after `polled_before`, looked at longest ago first: a wallet just asked for
    comes before one looked at a few minutes ago. Reads wallets_chipiwallet_wanted_idx."""
    wanted = _deposit_wallets().filter(poll_wanted_until__gt=now)
    due = wanted.filter(Q(polled_at__isnull=True) | Q(polled_at__lte=polled_before))
    return due.order_by(F("polled_at").asc(nulls_first=True), "pk")[:limit]


def deposit_wallets_round_robin(*, limit: int, exclude: Sequence[int]) -> QuerySet[ChipiWallet]:
    """Up to `limit` deposit wallets, looked at longest ago (or never) first, but those in `exclude`:
    taken in turn, every wallet's comes. Reads wallets_chipiwallet_poll_idx in its order."""
    rest = _deposit_wallets().exclude(pk__in=exclude)
    return rest.order_by(F("polled_at").asc(nulls_first=True), "pk")[:limit]


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
    """The conservation check, of the whole ledger: every transaction sums to zero per asset, every
    entry has its transaction and its account (in the account's asset), every cached balance equals
    its entries, every held amount equals its active holds, no user wallet is negative.

    It reads every entry (tens of seconds at ten million): the tests' ledgers and an operator's
    full check run it; the scheduled check is dashboards.health, which checks each entry once."""
    found = {**ledger_entries_health(), **ledger_accounts_health()}
    return {"healthy": not any(found.values()), **found}


def ledger_entries_health(*, after: int = 0, through: int | None = None) -> dict:
    """The checks of the entries themselves: unbalanced transactions; entries whose transaction or
    account is missing, or whose asset is not their account's (the database checks both as entries
    are written: migration 0006).

    With bounds, only the entries with ids in (after, through] and, whole, the transactions whose
    last entry is among them: entries are append-only (the ledger's triggers refuse UPDATE and
    DELETE), so what was checked of the entries up to `after` stays true, and a transaction is
    checked again only if an entry is added to it afterwards (which no posting does). `through`
    must be an id up to which every entry is committed, so that those transactions are whole."""
    transactions, dangling = "", "a.id IS NULL OR a.asset_id <> e.asset_id OR t.id IS NULL"
    params: list[int] = []
    if through is not None:
        # A transaction whose entries straddle `through` (ids are drawn before commit) is checked
        # by the run that reads its last entry.
        transactions = (
            "WHERE x.transaction_id IN (SELECT e.transaction_id FROM wallets_entry e WHERE e.id > %s AND e.id <= %s) "
            "AND NOT EXISTS (SELECT 1 FROM wallets_entry f WHERE f.transaction_id = x.transaction_id AND f.id > %s)"
        )
        dangling = f"({dangling}) AND e.id > %s AND e.id <= %s"
        params = [after, through, through, after, through]
    unbalanced = (
        f"SELECT 1 FROM wallets_entry x {transactions} "  # noqa: S608 (conditions of ours; values are parameters)
        "GROUP BY x.transaction_id, x.asset_id HAVING SUM(x.amount) <> 0"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT COUNT(*) FROM ({unbalanced}) AS u), "  # noqa: S608 (as above)
            "(SELECT COUNT(*) FROM wallets_entry e LEFT JOIN wallets_account a ON a.id = e.account_id "
            f"LEFT JOIN wallets_ledgertransaction t ON t.id = e.transaction_id WHERE {dangling})",
            params,
        )
        unbalanced, dangling = cursor.fetchone()
    return {"unbalanced_transactions": unbalanced, "dangling_entries": dangling}


def entry_sums_mismatched(
    *, table: str, cached: str, key: str, total: str, where: str = "", sums: str | None = None, through: int = 0
) -> int:
    """How many rows of `table` have a `cached` column other than `total` (an aggregate) of their
    entries (those whose `key` is the row's id and that `where` also selects). With `sums`, a table
    of (`key`, total) that holds the aggregate of each row's entries up to entry id `through`: that
    plus the entries after it, in one statement (one snapshot: a cached figure changes in the
    transaction that posts its entries). Names are ours, never input."""
    conditions = [condition for condition in (where, "id > %s" if sums is not None else "") if condition]
    checked = f"LEFT JOIN {connection.ops.quote_name(sums)} c ON c.{key} = r.id" if sums is not None else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {table} r LEFT JOIN (SELECT {key}, {total} AS total FROM wallets_entry "  # noqa: S608
            f"{'WHERE ' + ' AND '.join(conditions) if conditions else ''} GROUP BY {key}) e ON e.{key} = r.id "
            f"{checked} WHERE r.{cached} <> {'COALESCE(c.total, 0) + ' if checked else ''}COALESCE(e.total, 0)",
            [through] if sums is not None else [],
        )
        return cursor.fetchone()[0]


def ledger_accounts_health(*, sums: str | None = None, through: int = 0) -> dict:
    """The checks of the accounts: every cached balance equals its entries, every held amount its
    active holds; no user wallet is negative or holds more than it has; each asset sums to zero.

    With `sums`, a table of (account_id, total) that holds each account's entries up to id `through`,
    a balance is compared with that total plus the entries after it (one statement, one snapshot:
    a balance changes in the transaction that posts its entries)."""
    balance_mismatches = entry_sums_mismatched(
        table="wallets_account", cached="balance", key="account_id", total="SUM(amount)", sums=sums, through=through
    )
    with connection.cursor() as cursor:
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
        "balance_mismatches": balance_mismatches,
        "held_mismatches": held_mismatches,
        "negative_user_accounts": negative,
        "assets_not_summing_to_zero": len(nonzero_assets),
    }
