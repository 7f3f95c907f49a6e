"""The ledger: the only code that changes a balance.

Every change is a ledger transaction of entries summing to zero per asset; the accounts' cached
`balance` and `held` change in the same database transaction. Accounts are locked with
SELECT ... FOR UPDATE in id order, so concurrent postings never deadlock nor lose an update.
User accounts never go below zero nor below what they hold: checked here, and by CHECK
constraints in the database.

`post_batch` is the set-based form: any number of transactions in a constant number of round
trips (the billing sweep posts a whole batch of charges through it).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from wallets.models import (
    Account,
    AccountKind,
    Asset,
    Entry,
    Hold,
    HoldStatus,
    LedgerTransaction,
    SystemAccount,
    TransactionKind,
)


class LedgerError(Exception):
    """A posting the ledger refuses; nothing was written."""


class InsufficientFunds(LedgerError):
    def __init__(self, account_id: int, available: int, needed: int):
        self.account_id, self.available, self.needed = account_id, available, needed
        super().__init__(f"account {account_id} has {available} available, {needed} needed")


class UnbalancedTransaction(LedgerError):
    pass


class DuplicateReference(LedgerError):
    """A transaction with this reference exists: the thing it records happened already."""

    def __init__(self, reference: str):
        self.reference = reference
        super().__init__(f"a ledger transaction with reference {reference!r} exists")


@dataclass(frozen=True)
class HoldChange:
    """Change a hold by `delta` (negative to capture or release); `close` ends it (amount must reach 0)."""

    hold_id: int
    account_id: int
    delta: int
    close: str | None = None  # HoldStatus.RELEASED or HoldStatus.CAPTURED


@dataclass
class TxSpec:
    """One ledger transaction to post: entries (account id, signed amount) and hold changes."""

    kind: str
    entries: list[tuple[int, int]]
    reference: str | None = None
    memo: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    created_by_id: int | None = None
    hold_changes: list[HoldChange] = field(default_factory=list)


# --- Accounts -------------------------------------------------------------------------------------


def asset_get(code: str | None = None) -> Asset:
    """An active asset by code (the default asset when code is None); Asset.DoesNotExist otherwise."""
    if code is None:
        return Asset.objects.get(is_default=True)
    return Asset.objects.get(code=code.upper(), is_active=True)


def account_for_user(user, asset: Asset) -> Account:
    """The user's wallet account in this asset, opened on first use."""
    account = Account.objects.filter(kind=AccountKind.USER, owner=user, asset=asset).first()
    if account:
        return account
    try:
        with transaction.atomic():
            return Account.objects.create(kind=AccountKind.USER, owner=user, asset=asset)
    except IntegrityError:  # opened concurrently: take the one that won
        return Account.objects.get(kind=AccountKind.USER, owner=user, asset=asset)


def system_account(code: SystemAccount | str, asset: Asset | int) -> Account:
    account, _ = Account.objects.get_or_create(kind=AccountKind.SYSTEM, system_code=code, asset_id=_id(asset))
    return account


# --- Posting --------------------------------------------------------------------------------------


def post(
    *,
    kind: str,
    entries: Sequence[tuple[Account | int, int]],
    reference: str | None = None,
    memo: str = "",
    metadata: dict[str, Any] | None = None,
    created_by=None,
    hold_changes: Sequence[HoldChange] = (),
) -> LedgerTransaction:
    spec = TxSpec(
        kind=kind,
        entries=[(_id(account), amount) for account, amount in entries],
        reference=reference,
        memo=memo,
        metadata=metadata or {},
        created_by_id=_id(created_by) if created_by is not None else None,
        hold_changes=list(hold_changes),
    )
    now = timezone.now()
    (tx_id,) = post_batch([spec], now=now)
    # Built from what was written rather than read back: one round trip less on the hot path.
    tx = LedgerTransaction(
        id=tx_id,
        kind=spec.kind,
        reference=spec.reference,
        memo=spec.memo,
        metadata=spec.metadata,
        created_by_id=spec.created_by_id,
        created_at=now,
    )
    tx._state.adding = False
    tx._state.db = "default"
    return tx


def transfer(
    *,
    debit: Account,
    credit: Account,
    amount: int,
    kind: str = TransactionKind.TRANSFER,
    reference: str | None = None,
    memo: str = "",
    metadata: dict[str, Any] | None = None,
    created_by=None,
) -> LedgerTransaction:
    if amount <= 0:
        raise LedgerError("a transfer moves a positive amount")
    if debit.pk == credit.pk:
        raise LedgerError("a transfer needs two different accounts")
    return post(
        kind=kind,
        entries=[(debit, -amount), (credit, amount)],
        reference=reference,
        memo=memo,
        metadata=metadata,
        created_by=created_by,
    )


def post_batch(
    specs: Sequence[TxSpec], *, now: datetime | None = None, locked: dict[int, tuple] | None = None
) -> list[int | None]:
    """Post transactions atomically (all or none); return their ids in order.

    A spec with hold changes and no entries moves no money and records no transaction (its id
    is None): it only changes what is held.

    On PostgreSQL this is two statements whatever the batch size: the ordered lock of every
    account involved, then one statement that inserts the transactions and their entries and
    updates the balances and holds. A caller that already holds the locks (from lock_accounts,
    in the same database transaction) passes them as `locked` and saves the first.
    """
    if not specs:
        return []
    _validate_shapes(specs)
    try:
        with transaction.atomic():
            account_ids = sorted({aid for spec in specs for aid, _ in spec.entries} | _hold_account_ids(specs))
            if locked is None:
                locked = lock_accounts(account_ids)
            if not set(account_ids) <= set(locked):
                raise LedgerError(f"unknown or unlocked accounts: {sorted(set(account_ids) - set(locked))}")
            balance_delta, held_delta = _deltas(specs)
            _check_zero_sum(specs, locked)
            _check_funds(locked, balance_delta, held_delta)
            now = now or timezone.now()
            if connection.vendor == "postgresql":
                return _write_postgres(specs, locked, balance_delta, held_delta, now)
            return _write_orm(specs, locked, balance_delta, held_delta, now)
    except IntegrityError as exc:
        # Outside the rolled-back block, so that the database can be asked which reference it was.
        duplicate = _duplicate_reference(specs, exc)
        if duplicate:
            raise DuplicateReference(duplicate) from None
        raise


def lock_accounts(account_ids: Iterable[int]) -> dict[int, tuple]:
    """SELECT ... FOR UPDATE in id order: the one lock order that keeps postings deadlock-free.
    Returns {id: (id, kind, balance, held, asset_id)}; call inside a transaction."""
    account_ids = sorted(set(account_ids))
    if connection.vendor != "postgresql":
        rows = list(
            Account.objects.select_for_update()
            .filter(id__in=account_ids)
            .order_by("id")
            .values_list("id", "kind", "balance", "held", "asset_id")
        )
        return {row[0]: (row[0], row[1], int(row[2]), int(row[3]), row[4]) for row in rows}
    with connection.cursor() as cursor:
        placeholders = ", ".join(["%s"] * len(account_ids))
        cursor.execute(
            f"SELECT id, kind, balance, held, asset_id FROM wallets_account WHERE id IN ({placeholders}) "  # noqa: S608
            "ORDER BY id FOR UPDATE",
            account_ids,
        )
        return {row[0]: (row[0], row[1], int(row[2]), int(row[3]), row[4]) for row in cursor.fetchall()}


def _id(obj: Any) -> int:
    return obj if isinstance(obj, int) else obj.pk


def _hold_account_ids(specs: Iterable[TxSpec]) -> set[int]:
    return {change.account_id for spec in specs for change in spec.hold_changes}


def _validate_shapes(specs: Sequence[TxSpec]) -> None:
    references = [spec.reference for spec in specs if spec.reference]
    if len(references) != len(set(references)):
        raise LedgerError("two transactions of one batch share a reference")
    for spec in specs:
        if spec.kind not in TransactionKind.values:
            raise LedgerError(f"unknown transaction kind {spec.kind!r}")
        if not spec.entries and not spec.hold_changes:
            raise LedgerError("a transaction needs entries or hold changes")
        for _, amount in spec.entries:
            if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
                raise LedgerError(f"entry amounts are non-zero integers of minor units, not {amount!r}")


def _deltas(specs: Sequence[TxSpec]) -> tuple[dict[int, int], dict[int, int]]:
    balance_delta: dict[int, int] = defaultdict(int)
    held_delta: dict[int, int] = defaultdict(int)
    for spec in specs:
        for account_id, amount in spec.entries:
            balance_delta[account_id] += amount
        for change in spec.hold_changes:
            held_delta[change.account_id] += change.delta
    return balance_delta, held_delta


def _check_zero_sum(specs: Sequence[TxSpec], locked: dict[int, tuple]) -> None:
    for spec in specs:
        per_asset: dict[int, int] = defaultdict(int)
        for account_id, amount in spec.entries:
            per_asset[locked[account_id][4]] += amount
        if any(per_asset.values()):
            raise UnbalancedTransaction(f"entries of {spec.kind} {spec.reference or ''} do not sum to zero per asset")


def _check_funds(locked: dict[int, tuple], balance_delta: dict[int, int], held_delta: dict[int, int]) -> None:
    for account_id in set(balance_delta) | set(held_delta):
        _, kind, balance, held, _ = locked[account_id]
        new_balance = balance + balance_delta.get(account_id, 0)
        new_held = held + held_delta.get(account_id, 0)
        if new_held < 0:
            raise LedgerError(f"account {account_id} would hold less than nothing")
        if kind == AccountKind.USER and new_balance < new_held:
            # What the account may spend now: its free funds plus what this batch releases.
            available = balance - held + max(0, -held_delta.get(account_id, 0))
            needed = -balance_delta.get(account_id, 0) + max(0, held_delta.get(account_id, 0))
            raise InsufficientFunds(account_id, available=max(0, available), needed=needed)


_POSTGRES_POST = """
WITH new_tx AS (
    SELECT nextval(pg_get_serial_sequence('wallets_ledgertransaction', 'id')) AS id, t.*
    FROM unnest(%(kind)s::varchar[], %(reference)s::varchar[], %(memo)s::varchar[], %(metadata)s::jsonb[],
                %(created_by)s::bigint[]) WITH ORDINALITY AS t(kind, reference, memo, metadata, created_by_id, n)
),
tx AS (
    INSERT INTO wallets_ledgertransaction (id, kind, reference, memo, metadata, created_by_id, created_at)
    SELECT id, kind, reference, memo, metadata, created_by_id, %(now)s FROM new_tx
),
entries AS (
    INSERT INTO wallets_entry (transaction_id, account_id, asset_id, amount)
    SELECT new_tx.id, e.account_id, e.asset_id, e.amount
    FROM unnest(%(entry_tx)s::bigint[], %(entry_account)s::bigint[], %(entry_asset)s::bigint[],
                %(entry_amount)s::numeric[]) AS e(n, account_id, asset_id, amount)
    JOIN new_tx ON new_tx.n = e.n
),
balances AS (
    UPDATE wallets_account AS a SET balance = a.balance + v.d, held = a.held + v.h
    FROM unnest(%(account)s::bigint[], %(balance_delta)s::numeric[], %(held_delta)s::numeric[]) AS v(id, d, h)
    WHERE a.id = v.id
),
holds AS (
    UPDATE wallets_hold AS h SET amount = h.amount + v.d, status = COALESCE(v.close, h.status), updated_at = %(now)s
    FROM unnest(%(hold)s::bigint[], %(hold_delta)s::numeric[], %(hold_close)s::varchar[]) AS v(id, d, close)
    WHERE h.id = v.id AND h.status = 'active'
    RETURNING h.id
)
SELECT (SELECT count(*) FROM holds), array(SELECT id FROM new_tx ORDER BY n)
"""


def _write_postgres(specs, locked, balance_delta, held_delta, now) -> list[int | None]:
    """Everything in one statement. All entries of a transaction are in it, which is what the
    database's zero-sum trigger checks."""
    with_entries = [spec for spec in specs if spec.entries]
    entry_tx, entry_account, entry_asset, entry_amount = [], [], [], []
    for n, spec in enumerate(with_entries, start=1):
        for account_id, amount in spec.entries:
            entry_tx.append(n)
            entry_account.append(account_id)
            entry_asset.append(locked[account_id][4])
            entry_amount.append(str(amount))
    changed = sorted(set(balance_delta) | set(held_delta))
    changes = [change for spec in specs for change in spec.hold_changes]
    params = {
        "now": now,
        "kind": [spec.kind for spec in with_entries],
        "reference": [spec.reference for spec in with_entries],
        "memo": [spec.memo for spec in with_entries],
        "metadata": [json.dumps(spec.metadata) for spec in with_entries],
        "created_by": [spec.created_by_id for spec in with_entries],
        "entry_tx": entry_tx,
        "entry_account": entry_account,
        "entry_asset": entry_asset,
        "entry_amount": entry_amount,
        "account": changed,
        "balance_delta": [str(balance_delta.get(aid, 0)) for aid in changed],
        "held_delta": [str(held_delta.get(aid, 0)) for aid in changed],
        "hold": [c.hold_id for c in changes],
        "hold_delta": [str(c.delta) for c in changes],
        "hold_close": [c.close for c in changes],
    }
    with connection.cursor() as cursor:
        cursor.execute(_POSTGRES_POST, params)
        holds_changed, tx_ids = cursor.fetchone()
    if holds_changed != len(changes):
        raise LedgerError("a hold in the batch is not active (or appears twice)")
    ids = iter(tx_ids)
    return [next(ids) if spec.entries else None for spec in specs]


def _write_orm(specs, locked, balance_delta, held_delta, now) -> list[int | None]:
    """The same writes through the ORM, for SQLite (which serialises writers anyway)."""
    tx_ids: list[int | None] = []
    for spec in specs:
        if spec.entries:
            tx = LedgerTransaction.objects.create(
                kind=spec.kind,
                reference=spec.reference,
                memo=spec.memo,
                metadata=spec.metadata,
                created_by_id=spec.created_by_id,
                created_at=now,
            )
            Entry.objects.bulk_create(
                Entry(transaction=tx, account_id=aid, asset_id=locked[aid][4], amount=amount)
                for aid, amount in spec.entries
            )
        tx_ids.append(tx.pk if spec.entries else None)
        for change in spec.hold_changes:
            updates: dict[str, Any] = {"amount": F("amount") + change.delta, "updated_at": now}
            if change.close:
                updates["status"] = change.close
            if not Hold.objects.filter(pk=change.hold_id, status=HoldStatus.ACTIVE).update(**updates):
                raise LedgerError("a hold in the batch is not active")
    for account_id in set(balance_delta) | set(held_delta):
        Account.objects.filter(pk=account_id).update(
            balance=F("balance") + balance_delta.get(account_id, 0),
            held=F("held") + held_delta.get(account_id, 0),
        )
    return tx_ids


def _duplicate_reference(specs: Sequence[TxSpec], exc: IntegrityError) -> str | None:
    references = [spec.reference for spec in specs if spec.reference]
    if not references or "reference" not in str(exc):
        return None
    taken = LedgerTransaction.objects.filter(reference__in=references).values_list("reference", flat=True).first()
    return taken


# --- Holds ----------------------------------------------------------------------------------------


def hold_open(*, account: Account | int, reference: str) -> Hold:
    """An empty hold, to be filled by post_batch's hold changes in the same transaction."""
    return Hold.objects.create(account_id=_id(account), amount=0, reference=reference)


def hold_place(*, account: Account, amount: int, reference: str) -> Hold:
    """Reserve `amount` of the account's available funds."""
    if amount < 0:
        raise LedgerError("a hold reserves a non-negative amount")
    with transaction.atomic():
        hold = Hold.objects.create(account=account, amount=0, reference=reference)
        if amount:
            _hold_adjust(hold, amount)
        hold.refresh_from_db()
    return hold


def hold_set(*, hold: Hold, amount: int) -> Hold:
    """Set what the hold reserves (renewal); raises InsufficientFunds when an increase cannot be covered."""
    with transaction.atomic():
        current = Hold.objects.select_for_update().get(pk=hold.pk)
        if current.status != HoldStatus.ACTIVE:
            raise LedgerError("the hold is not active")
        if amount != current.amount:
            _hold_adjust(current, amount - current.amount)
        current.refresh_from_db()
    return current


def hold_release(*, hold: Hold) -> Hold:
    with transaction.atomic():
        current = Hold.objects.select_for_update().get(pk=hold.pk)
        if current.status == HoldStatus.ACTIVE:
            _hold_adjust(current, -current.amount, close=HoldStatus.RELEASED)
        current.refresh_from_db()
    return current


def _hold_adjust(hold: Hold, delta: int, close: str | None = None) -> None:
    """Change a hold and its account's `held` under the account's lock (no ledger transaction:
    a hold moves no money, it only narrows what is available)."""
    account = Account.objects.select_for_update().get(pk=hold.account_id)
    new_held = account.held + delta
    if new_held < 0:
        raise LedgerError("a hold cannot release more than it holds")
    if account.kind == AccountKind.USER and account.balance < new_held:
        raise InsufficientFunds(account.pk, available=account.available, needed=delta)
    updates: dict[str, Any] = {"amount": F("amount") + delta}
    if close:
        updates["status"] = close
    Hold.objects.filter(pk=hold.pk).update(**updates)
    Account.objects.filter(pk=account.pk).update(held=F("held") + delta)
