"""The ledger: the only code that changes a balance.

Every change is a ledger transaction of entries summing to zero per asset; the accounts' cached
`balance` and `held` change in the same database transaction. Accounts are locked with
SELECT ... FOR UPDATE in one fixed order, users' wallets by id and then system accounts by id
(wallets_lock_accounts, wallets/sql/wallets_post.sql), so concurrent postings never deadlock nor
lose an update.
User accounts never go below zero nor below what they hold: checked by wallets_post, and by CHECK
constraints in the database.

`post_batch` is the set-based form: any number of transactions in a constant number of round
trips (the billing sweep posts a whole batch of charges through it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from paygo.db import execute_bound
from wallets.models import (
    Account,
    AccountKind,
    Asset,
    Hold,
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


class ChargeDebit(NamedTuple):
    """A metering charge: the debit of a session's payer, which carries the session and the
    interval it bills and is that session's charge record; `fee` is the platform's share of it
    (the credits to the vendor and the platform are entries of the same transaction)."""

    account_id: int
    amount: int  # positive: what is taken from the payer
    session_id: int
    billed_from: datetime
    billed_until: datetime
    fee: int


@dataclass
class TxSpec:
    """One ledger transaction to post: entries (account id, signed amount), charges (debits that
    carry a session) and hold changes."""

    kind: str
    entries: list[tuple[int, int]]
    reference: str | None = None
    memo: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    created_by_id: int | None = None
    hold_changes: list[HoldChange] = field(default_factory=list)
    # The metadata already encoded as a JSON object, for callers that post thousands at a time.
    metadata_json: str | None = None
    charges: list[ChargeDebit] = field(default_factory=list)

    def moves_money(self) -> bool:
        return bool(self.entries or self.charges)

    def signed_amounts(self) -> list[tuple[int, int]]:
        """Every entry as (account id, signed amount), the charges as debits."""
        return [*self.entries, *((c.account_id, -c.amount) for c in self.charges)]

    def metadata_text(self) -> str:
        return self.metadata_json if self.metadata_json is not None else json.dumps(self.metadata)


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

    A spec with hold changes and no entries (nor charges) moves no money and records no transaction (its id
    is None): it only changes what is held.

    One statement whatever the batch size: the database function wallets_post
    (wallets/sql/wallets_post.sql) locks every account involved in the one order, checks the batch and
    writes it. A refusal (InsufficientFunds, ...) writes nothing, keeps no lock, and leaves the
    caller's database transaction usable. `locked` (from lock_accounts, in the same transaction)
    must cover the batch's accounts; wallets_post takes their locks again (re-locking a row this
    transaction holds costs next to nothing).
    """
    if not specs:
        return []
    _validate_shapes(specs)
    account_ids = {aid for spec in specs for aid, _ in spec.signed_amounts()} | _hold_account_ids(specs)
    if locked is not None and not account_ids <= set(locked):
        raise LedgerError(f"unknown or unlocked accounts: {sorted(account_ids - set(locked))}")
    _check_zero_sum(specs)
    return _post(specs, now or timezone.now())


def lock_accounts(account_ids: Iterable[int]) -> dict[int, tuple]:
    """SELECT ... FOR UPDATE in the one lock order that keeps postings deadlock-free (users' wallets
    by id, then system accounts: wallets_lock_accounts). Returns {id: (id, kind, balance, held,
    asset_id)}; call inside a transaction."""
    rows = execute_bound(
        "SELECT id, kind, balance, held, asset_id FROM wallets_lock_accounts(%(ids)b::bigint[])",
        {"ids": sorted(set(account_ids))},
    )
    return {row[0]: (row[0], row[1], int(row[2]), int(row[3]), row[4]) for row in rows}


def hold_amounts(hold_ids: Iterable[int]) -> dict[int, int]:
    """{hold id: amount} as committed now, in one statement (no lock: a hold changes only under
    its owner's lock, which the caller holds)."""
    rows = execute_bound("SELECT id, amount FROM wallets_hold WHERE id = ANY(%(ids)b)", {"ids": list(hold_ids)})
    return {hold_id: int(amount) for hold_id, amount in rows}


def _id(obj: Any) -> int:
    return obj if isinstance(obj, int) else obj.pk


def _hold_account_ids(specs: Iterable[TxSpec]) -> set[int]:
    return {change.account_id for spec in specs for change in spec.hold_changes}


_KINDS = frozenset(TransactionKind.values)


def _validate_shapes(specs: Sequence[TxSpec]) -> None:
    references = _references(specs)
    if len(references) != len(set(references)):
        raise LedgerError("two transactions of one batch share a reference")
    for spec in specs:
        if spec.kind not in _KINDS:
            raise LedgerError(f"unknown transaction kind {spec.kind!r}")
        if not spec.moves_money() and not spec.hold_changes:
            raise LedgerError("a transaction needs entries or hold changes")
        for _, amount in spec.signed_amounts():
            if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
                raise LedgerError(f"entry amounts are non-zero integers of minor units, not {amount!r}")
        for charge in spec.charges:
            if charge.amount <= 0 or not 0 <= charge.fee <= charge.amount or charge.billed_until < charge.billed_from:
                raise LedgerError(f"a charge debits a positive amount over an interval, its fee within it: {charge!r}")


def _check_zero_sum(specs: Sequence[TxSpec]) -> None:
    """Each transaction's entries sum to zero: refused here before a round trip. Per asset, the
    database's trigger checks it as the entries are written (wallets/sql/ledger_guards.sql)."""
    for spec in specs:
        if sum(amount for _, amount in spec.signed_amounts()):
            raise UnbalancedTransaction(f"entries of {spec.kind} {spec.reference or ''} do not sum to zero per asset")


_POST = (
    "SELECT tx_ids, refused, refused_account, available, needed, taken_reference FROM wallets_post("
    "%(now)b, %(transactions)s::jsonb, %(entries)s::jsonb, %(holds)s::jsonb)"
)


def _post(specs: Sequence[TxSpec], now: datetime) -> list[int | None]:
    """One call of wallets_post, which checks and writes the whole batch (or refuses it).

    The batch goes as JSON documents, in the shapes the function's header describes: encoding
    them takes a few C calls, where arrays of thousands of strings cost more to send than to post.
    Each transaction's metadata is spliced in already encoded."""
    with_entries = [spec for spec in specs if spec.moves_money()]
    transactions = ",".join(
        f"{json.dumps([s.kind, s.reference, s.memo, s.created_by_id])[:-1]},{s.metadata_text()}]" for s in with_entries
    )
    entries = [
        [n, account_id, amount] for n, spec in enumerate(with_entries, start=1) for account_id, amount in spec.entries
    ]
    entries += [
        [n, c.account_id, -c.amount, c.session_id, c.billed_from.isoformat(), c.billed_until.isoformat(), c.fee]
        for n, spec in enumerate(with_entries, start=1)
        for c in spec.charges
    ]
    params = {
        "now": now,
        "transactions": f"[{transactions}]",
        "entries": json.dumps(entries),
        "holds": json.dumps([[c.hold_id, c.account_id, c.delta, c.close] for spec in specs for c in spec.hold_changes]),
    }
    try:
        ((tx_ids, refused, account_id, available, needed, taken),) = execute_bound(_POST, params)
    except DatabaseError:
        # Not a refusal (those come back as values) but a broken guard: the database transaction
        # is aborted, so the caller's atomic block must not commit nor go on as if nothing happened.
        if connection.in_atomic_block:
            transaction.set_rollback(True)
        raise
    if refused:
        raise _refusal(refused, account_id, available, needed, taken)
    ids = iter(tx_ids)
    return [next(ids) if spec.moves_money() else None for spec in specs]


def _refusal(refused: str, account_id, available, needed, taken) -> LedgerError:
    if refused == "insufficient_funds":
        return InsufficientFunds(account_id, available=int(available), needed=int(needed))
    if refused == "duplicate_reference":
        return DuplicateReference(taken)
    if refused == "unbalanced":
        return UnbalancedTransaction("the entries of a transaction do not sum to zero per asset")
    messages = {
        "unknown_account": f"unknown accounts: [{account_id}]",
        "hold_not_active": "a hold in the batch is not active, appears twice, or would not end empty or above zero",
        "held_below_zero": f"account {account_id} would hold less than nothing",
    }
    return LedgerError(messages.get(refused, refused))


def _references(specs: Sequence[TxSpec]) -> list[str]:
    return [spec.reference for spec in specs if spec.reference]


# --- Holds ----------------------------------------------------------------------------------------


def hold_open(*, account: Account | int, reference: str) -> Hold:
    """An empty hold, to be filled by post_batch's hold changes in the same transaction."""
    return Hold.objects.create(account_id=_id(account), amount=0, reference=reference)
