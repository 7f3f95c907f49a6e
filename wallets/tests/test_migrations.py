"""The migrations of wallets, run on a database as an earlier version left it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, InternalError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from conftest import money_db
from wallets import ledger
from wallets.models import SystemAccount, TransactionKind


def _entries() -> dict[int, tuple]:
    """{entry id: (its time, its transaction's time)}"""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT e.id, e.created_at, t.created_at FROM wallets_entry e "
            "JOIN wallets_ledgertransaction t ON t.id = e.transaction_id"
        )
        return {row[0]: row[1:] for row in cursor.fetchall()}


def _update(sql: str, params=()) -> None:
    with (
        pytest.raises((IntegrityError, InternalError), match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)


@money_db
def test_entries_written_before_0025_get_their_transactions_time_and_stay_append_only(alice):
    """0025 adds the entries' time empty, 0026 fills it in from their transactions (the one change of
    an entry the guards let through meanwhile), 0027 makes it NOT NULL and the entries strictly
    append-only again."""
    MigrationExecutor(connection).migrate([("wallets", "0024_minimum_withdrawal")])
    try:
        usdc = ledger.asset_get("USDC")
        wallet = ledger.account_for_user(alice, usdc).pk
        custody = ledger.system_account(SystemAccount.CUSTODY, usdc).pk
        past = timezone.now() - timedelta(days=300)
        for days in (0, 100, 200):
            spec = ledger.TxSpec(kind=TransactionKind.DEPOSIT, entries=[(custody, -5), (wallet, 5)])
            ledger.post_batch([spec, spec], now=past + timedelta(days=days))
        MigrationExecutor(connection).migrate([("wallets", "0025_entry_created_at")])
        assert {mine for mine, _ in _entries().values()} == {None}
        (first, _) = sorted(_entries().items())[0]
        _update("UPDATE wallets_entry SET amount = amount WHERE id = %s", [first])
        _update("UPDATE wallets_entry SET created_at = now() WHERE id = %s", [first])
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    entries = _entries()
    assert len(entries) == 12
    assert all(mine == its_transactions for mine, its_transactions in entries.values())
    _update("UPDATE wallets_entry SET created_at = created_at WHERE id = %s", [min(entries)])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT is_nullable FROM information_schema.columns "
            "WHERE table_name = 'wallets_entry' AND column_name = 'created_at'"
        )
        assert cursor.fetchone() == ("NO",)
