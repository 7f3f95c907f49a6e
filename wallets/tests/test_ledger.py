"""The ledger: balanced postings, funds checks, holds, the batch form and the database guards."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, InternalError, connection, transaction

from wallets import ledger
from wallets.ledger import HoldChange, TxSpec
from wallets.models import Account, Entry, Hold, HoldStatus, LedgerTransaction, SystemAccount, TransactionKind
from wallets.selectors import ledger_health
from wallets.tests.conftest import balance_of, system_balance

pytestmark = pytest.mark.django_db

USDC = 1_000_000


@pytest.fixture
def usdc():
    return ledger.asset_get("USDC")


def change_hold(hold: Hold, delta: int, close: str | None = None) -> Hold:
    """Grow, shrink or close a hold the way billing does: a hold change of post_batch, no entries."""
    hold_only = TxSpec(
        kind=TransactionKind.CHARGE, entries=[], hold_changes=[HoldChange(hold.pk, hold.account_id, delta, close)]
    )
    ledger.post_batch([hold_only])
    hold.refresh_from_db()
    return hold


def place_hold(account: Account, amount: int, reference: str = "session:1") -> Hold:
    """A hold placed the way a session's start places it: opened empty, then filled, in one transaction."""
    with transaction.atomic():
        hold = ledger.hold_open(account=account, reference=reference)
        return change_hold(hold, amount) if amount else hold


def test_deposit_moves_custody_to_user(alice, fund):
    account = fund(alice, 5 * USDC)

    assert account.balance == 5 * USDC
    assert system_balance(SystemAccount.CUSTODY) == -5 * USDC
    tx = LedgerTransaction.objects.get(kind=TransactionKind.DEPOSIT)
    assert sorted(tx.entries.values_list("amount", flat=True)) == [-5 * USDC, 5 * USDC]


def test_transfer_moves_exactly(alice, bob, fund, usdc):
    fund(alice, 3 * USDC)

    ledger.transfer(
        debit=ledger.account_for_user(alice, usdc), credit=ledger.account_for_user(bob, usdc), amount=1_234_567
    )

    assert balance_of(alice) == 3 * USDC - 1_234_567
    assert balance_of(bob) == 1_234_567


def test_transfer_beyond_balance_refused_and_nothing_written(alice, bob, fund, usdc):
    fund(alice, USDC)
    transactions_before = LedgerTransaction.objects.count()

    with pytest.raises(ledger.InsufficientFunds) as refused:
        ledger.transfer(
            debit=ledger.account_for_user(alice, usdc), credit=ledger.account_for_user(bob, usdc), amount=USDC + 1
        )

    assert refused.value.available == USDC
    assert refused.value.needed == USDC + 1
    assert balance_of(alice) == USDC
    assert balance_of(bob) == 0
    assert LedgerTransaction.objects.count() == transactions_before


def test_unbalanced_posting_refused(alice, bob, fund, usdc):
    fund(alice, USDC)

    with pytest.raises(ledger.UnbalancedTransaction):
        ledger.post(
            kind=TransactionKind.TRANSFER,
            entries=[(ledger.account_for_user(alice, usdc), -10), (ledger.account_for_user(bob, usdc), 9)],
        )

    assert balance_of(alice) == USDC


def test_sum_is_per_asset(alice, fund):
    usdc_account = fund(alice, USDC)
    usdt = ledger.account_for_user(alice, ledger.asset_get("USDT"))

    # Balanced in total, so only the database's per-asset trigger sees it: an error that ends the
    # database transaction (hence the savepoint), as any broken invariant does.
    with pytest.raises(ledger.UnbalancedTransaction), transaction.atomic():
        ledger.post(kind=TransactionKind.TRANSFER, entries=[(usdc_account, -10), (usdt, 10)])

    assert balance_of(alice) == USDC


@pytest.mark.parametrize("amount", [0, 1.5, True, "10"])
def test_entry_amounts_are_nonzero_integers(alice, bob, fund, usdc, amount):
    fund(alice, USDC)

    with pytest.raises(ledger.LedgerError):
        ledger.post(
            kind=TransactionKind.TRANSFER,
            entries=[(ledger.account_for_user(alice, usdc), amount), (ledger.account_for_user(bob, usdc), amount)],
        )


def test_duplicate_reference_refused(alice, fund, usdc):
    fund(alice, USDC)
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, usdc)
    account = ledger.account_for_user(alice, usdc)
    ledger.transfer(debit=account, credit=revenue, amount=5, kind=TransactionKind.CHARGE, reference="charge:x:1")

    with pytest.raises(ledger.DuplicateReference):
        ledger.transfer(debit=account, credit=revenue, amount=5, kind=TransactionKind.CHARGE, reference="charge:x:1")

    assert balance_of(alice) == USDC - 5


def test_a_refusal_leaves_the_callers_transaction_usable(alice, bob, fund, usdc):
    fund(alice, USDC)
    debit, credit = ledger.account_for_user(alice, usdc), ledger.account_for_user(bob, usdc)
    usdt = ledger.account_for_user(bob, ledger.asset_get("USDT"))

    with transaction.atomic():
        with pytest.raises(ledger.InsufficientFunds):
            ledger.transfer(debit=debit, credit=credit, amount=USDC + 1)
        with pytest.raises(ledger.DuplicateReference):
            ledger.transfer(debit=debit, credit=credit, amount=1, reference="charge:x:1")
            ledger.transfer(debit=debit, credit=credit, amount=1, reference="charge:x:1")
        # Found by the database's trigger, after the function had written: rolled back all the same.
        with pytest.raises(ledger.UnbalancedTransaction):
            ledger.post(kind=TransactionKind.TRANSFER, entries=[(debit, -10), (usdt, 10)])
        # The database transaction was not aborted: the caller goes on in it.
        ledger.transfer(debit=debit, credit=credit, amount=10)

    assert balance_of(alice) == USDC - 11
    assert balance_of(bob) == 11
    assert usdt.entries.count() == 0


def test_batch_ids_follow_the_batch(alice, victor, fund, usdc):
    payer = fund(alice, USDC)
    vendor = ledger.account_for_user(victor, usdc)
    specs = [
        TxSpec(kind=TransactionKind.CHARGE, entries=[(payer.pk, -n), (vendor.pk, n)], reference=f"charge:order:{n}")
        for n in (5, 1, 4, 2, 3)
    ]

    ids = ledger.post_batch(specs)

    for spec, tx_id in zip(specs, ids, strict=True):
        tx = LedgerTransaction.objects.get(pk=tx_id)
        assert tx.reference == spec.reference
        assert sorted(tx.entries.values_list("account_id", "amount")) == sorted(spec.entries)


def test_unknown_account_refused(alice, fund, usdc):
    account = fund(alice, USDC)

    with pytest.raises(ledger.LedgerError, match="unknown accounts"):
        ledger.post(kind=TransactionKind.TRANSFER, entries=[(account, -1), (10**12, 1)])

    assert balance_of(alice) == USDC


def test_inactive_or_repeated_hold_refused_and_nothing_written(alice, fund, usdc):
    account = fund(alice, USDC)
    hold = place_hold(account, 100, reference="hold:a")
    released = change_hold(place_hold(account, 5, reference="hold:b"), -5, HoldStatus.RELEASED)
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, usdc)
    charge = [(account.pk, -10), (revenue.pk, 10)]

    for changes in (
        [HoldChange(released.pk, account.pk, -5)],
        [HoldChange(hold.pk, account.pk, -10), HoldChange(hold.pk, account.pk, -10)],
        [HoldChange(hold.pk, revenue.pk, -10)],  # not that account's hold
    ):
        with pytest.raises(ledger.LedgerError, match="not active"):
            ledger.post_batch([TxSpec(kind=TransactionKind.CHARGE, entries=charge, hold_changes=changes)])

    for change in (
        HoldChange(hold.pk, account.pk, -101),  # below zero
        HoldChange(hold.pk, account.pk, -99, HoldStatus.RELEASED),  # closed with money left in it
    ):
        with pytest.raises(ledger.LedgerError, match="would not end empty or above zero"):
            ledger.post_batch([TxSpec(kind=TransactionKind.CHARGE, entries=[], hold_changes=[change])])

    account.refresh_from_db()
    assert (account.balance, account.held) == (USDC, 100)
    assert Hold.objects.get(pk=hold.pk).amount == 100


def test_system_accounts_may_go_negative_users_and_swap_liquidity_may_not(alice, usdc):
    custody = ledger.system_account(SystemAccount.CUSTODY, usdc)
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, usdc)
    swap = ledger.system_account(SystemAccount.SWAP_LIQUIDITY, usdc)

    ledger.transfer(debit=custody, credit=revenue, amount=7)

    assert system_balance(SystemAccount.CUSTODY) == -7
    with pytest.raises(ledger.InsufficientFunds):
        ledger.transfer(debit=ledger.account_for_user(alice, usdc), credit=revenue, amount=1)
    # PayGo sells in a swap only what it holds (wallets.services.wallet_swap): the database says so.
    with pytest.raises(IntegrityError, match="wallets_swap_liquidity_not_negative"), transaction.atomic():
        ledger.transfer(debit=swap, credit=revenue, amount=1)
    assert system_balance(SystemAccount.SWAP_LIQUIDITY) == 0


def test_hold_narrows_available(alice, bob, fund, usdc):
    account = fund(alice, 10 * USDC)

    hold = place_hold(account, 4 * USDC)

    account.refresh_from_db()
    assert (account.balance, account.held, account.available) == (10 * USDC, 4 * USDC, 6 * USDC)
    with pytest.raises(ledger.InsufficientFunds):
        ledger.transfer(debit=account, credit=ledger.account_for_user(bob, usdc), amount=6 * USDC + 1)
    assert hold.amount == 4 * USDC


def test_hold_beyond_available_refused(alice, fund):
    account = fund(alice, USDC)

    with pytest.raises(ledger.InsufficientFunds):
        place_hold(account, USDC + 1)

    account.refresh_from_db()
    assert account.held == 0
    assert not Hold.objects.exists()


def test_hold_grows_within_funds_and_is_released(alice, fund):
    account = fund(alice, 10 * USDC)
    hold = place_hold(account, 2 * USDC)

    hold = change_hold(hold, 3 * USDC)
    account.refresh_from_db()
    assert (hold.amount, account.held) == (5 * USDC, 5 * USDC)

    with pytest.raises(ledger.InsufficientFunds):
        change_hold(hold, 5 * USDC + 1)
    account.refresh_from_db()
    assert (Hold.objects.get(pk=hold.pk).amount, account.held) == (5 * USDC, 5 * USDC)

    hold = change_hold(hold, -5 * USDC, HoldStatus.RELEASED)
    account.refresh_from_db()
    assert (hold.status, hold.amount, account.held) == (HoldStatus.RELEASED, 0, 0)


def test_capture_from_hold_in_one_transaction(alice, victor, fund, usdc):
    account = fund(alice, 10 * USDC)
    hold = place_hold(account, 3 * USDC)
    vendor = ledger.account_for_user(victor, usdc)
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, usdc)

    ledger.post(
        kind=TransactionKind.CHARGE,
        entries=[(account, -2 * USDC), (vendor, 1_800_000), (revenue, 200_000)],
        hold_changes=[HoldChange(hold.pk, account.pk, -2 * USDC)],
    )

    account.refresh_from_db()
    hold.refresh_from_db()
    assert (account.balance, account.held, hold.amount) == (8 * USDC, USDC, USDC)
    assert balance_of(victor) == 1_800_000


def test_capture_may_spend_held_funds_but_not_more(alice, victor, fund, usdc):
    """A charge may use what is held for it; the wallet still never goes below zero."""
    account = fund(alice, USDC)
    hold = place_hold(account, USDC)
    vendor = ledger.account_for_user(victor, usdc)

    ledger.post(
        kind=TransactionKind.CHARGE,
        entries=[(account, -USDC), (vendor, USDC)],
        hold_changes=[HoldChange(hold.pk, account.pk, -USDC, close=HoldStatus.CAPTURED)],
    )

    account.refresh_from_db()
    assert (account.balance, account.held) == (0, 0)
    assert Hold.objects.get(pk=hold.pk).status == HoldStatus.CAPTURED


def test_batch_posts_many_in_constant_queries(alice, bob, victor, fund, usdc, django_assert_num_queries):
    payers = [fund(alice, 5 * USDC), fund(bob, 5 * USDC)]
    vendor = ledger.account_for_user(victor, usdc)
    specs = [
        TxSpec(
            kind=TransactionKind.CHARGE, entries=[(payer.pk, -n), (vendor.pk, n)], reference=f"charge:{payer.pk}:{n}"
        )
        for payer in payers
        for n in range(1, 51)
    ]

    # one statement (wallets_post locks, checks and writes), whatever the batch size
    with django_assert_num_queries(1):
        ids = ledger.post_batch(specs)

    assert len(ids) == 100 and len(set(ids)) == 100
    assert balance_of(alice) == balance_of(bob) == 5 * USDC - sum(range(1, 51))
    assert balance_of(victor) == 2 * sum(range(1, 51))


def test_batch_is_all_or_nothing(alice, bob, victor, fund, usdc):
    fund(alice, USDC)
    vendor = ledger.account_for_user(victor, usdc)
    broke = ledger.account_for_user(bob, usdc)
    specs = [
        TxSpec(kind=TransactionKind.CHARGE, entries=[(ledger.account_for_user(alice, usdc).pk, -10), (vendor.pk, 10)]),
        TxSpec(kind=TransactionKind.CHARGE, entries=[(broke.pk, -10), (vendor.pk, 10)]),
    ]

    with pytest.raises(ledger.InsufficientFunds):
        ledger.post_batch(specs)

    assert balance_of(alice) == USDC
    assert balance_of(victor) == 0


def test_hold_only_change_records_no_transaction(alice, fund):
    account = fund(alice, USDC)
    hold = ledger.hold_open(account=account, reference="session:1")
    before = LedgerTransaction.objects.count()

    ids = ledger.post_batch(
        [TxSpec(kind=TransactionKind.CHARGE, entries=[], hold_changes=[HoldChange(hold.pk, account.pk, 500)])]
    )

    assert ids == [None]
    assert LedgerTransaction.objects.count() == before
    account.refresh_from_db()
    assert account.held == 500


# --- The database is the backstop ----------------------------------------------------------------


def test_database_refuses_updating_or_deleting_entries(alice, fund):
    fund(alice, USDC)
    entry = Entry.objects.first()

    with pytest.raises((IntegrityError, InternalError)), transaction.atomic():
        Entry.objects.filter(pk=entry.pk).update(amount=1)
    with pytest.raises((IntegrityError, InternalError)), transaction.atomic():
        Entry.objects.filter(pk=entry.pk).delete()
    with pytest.raises((IntegrityError, InternalError)), transaction.atomic():
        LedgerTransaction.objects.filter(pk=entry.transaction_id).update(memo="rewritten")

    assert Entry.objects.get(pk=entry.pk).amount == entry.amount


def test_database_refuses_unbalanced_entries(alice, fund):
    account = fund(alice, USDC)
    tx = LedgerTransaction.objects.create(kind=TransactionKind.ADJUSTMENT)

    with pytest.raises(IntegrityError), transaction.atomic():
        Entry.objects.bulk_create(
            [Entry(transaction=tx, created_at=tx.created_at, account=account, asset_id=account.asset_id, amount=5)]
        )


def test_database_refuses_entry_in_another_asset_than_its_account(alice, fund):
    account = fund(alice, USDC)
    usdt = ledger.asset_get("USDT")
    other = ledger.system_account(SystemAccount.PLATFORM_REVENUE, usdt)
    tx = LedgerTransaction.objects.create(kind=TransactionKind.ADJUSTMENT)

    with pytest.raises(IntegrityError), transaction.atomic():
        Entry.objects.bulk_create(
            [
                Entry(transaction=tx, created_at=tx.created_at, account=account, asset_id=usdt.pk, amount=-5),
                Entry(transaction=tx, created_at=tx.created_at, account=other, asset_id=usdt.pk, amount=5),
            ]
        )
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_database_refuses_an_entry_that_carries_another_time_than_its_transactions(alice, fund):
    """An entry's created_at is its transaction's, copied (the history reads it from an index): the
    entries' guard refuses a copy that differs, as wallets_post never writes one."""
    from datetime import timedelta

    account = fund(alice, USDC)
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, account.asset_id)
    tx = LedgerTransaction.objects.create(kind=TransactionKind.ADJUSTMENT)
    later = tx.created_at + timedelta(microseconds=1)

    with pytest.raises(IntegrityError, match="not its transaction's time"), transaction.atomic():
        Entry.objects.bulk_create(
            [
                Entry(transaction=tx, created_at=tx.created_at, account=revenue, asset_id=account.asset_id, amount=-5),
                Entry(transaction=tx, created_at=later, account=account, asset_id=account.asset_id, amount=5),
            ]
        )

    assert balance_of(alice) == USDC
    assert all(
        entry.created_at == entry.transaction.created_at for entry in Entry.objects.select_related("transaction")
    )


def test_database_refuses_entries_naming_unknown_accounts_or_transactions(alice, fund):
    account = fund(alice, USDC)
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, account.asset_id)
    tx = LedgerTransaction.objects.create(kind=TransactionKind.ADJUSTMENT)
    asset = account.asset_id

    for entries in (
        [
            Entry(transaction=tx, created_at=tx.created_at, account_id=10**12, asset_id=asset, amount=-5),
            Entry(transaction=tx, created_at=tx.created_at, account=revenue, asset_id=asset, amount=5),
        ],
        [
            Entry(transaction_id=10**12, created_at=tx.created_at, account=account, asset_id=asset, amount=-5),
            Entry(transaction_id=10**12, created_at=tx.created_at, account=revenue, asset_id=asset, amount=5),
        ],
    ):
        with pytest.raises(IntegrityError, match="unknown"), transaction.atomic():
            Entry.objects.bulk_create(entries)

    assert balance_of(alice) == USDC


def test_database_keeps_accounts_that_have_entries(alice, fund):
    account = fund(alice, USDC)

    with pytest.raises(IntegrityError, match="cannot be deleted"), transaction.atomic():
        Account.objects.filter(pk=account.pk)._raw_delete(using="default")
    with pytest.raises(IntegrityError, match="never change"), transaction.atomic():
        Account.objects.filter(pk=account.pk).update(asset=ledger.asset_get("USDT"))

    assert Account.objects.get(pk=account.pk).asset.code == "USDC"
    # An account without entries may go (nothing refers to it).
    empty = ledger.system_account(SystemAccount.SWAP_LIQUIDITY, ledger.asset_get("STRK"))
    Account.objects.filter(pk=empty.pk)._raw_delete(using="default")


def test_database_refuses_negative_user_balance(alice, fund):
    account = fund(alice, USDC)

    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=account.pk).update(balance=-1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=account.pk).update(held=USDC + 1)


def test_health_detects_dangling_entries(alice, fund):
    account = fund(alice, USDC)
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, account.asset_id)

    with transaction.atomic():
        with connection.cursor() as cursor:  # past the database's own check, as a bad script would
            cursor.execute("ALTER TABLE wallets_entry DISABLE TRIGGER wallets_entry_balanced")
        tx = LedgerTransaction.objects.create(kind=TransactionKind.ADJUSTMENT)
        Entry.objects.bulk_create(
            [
                Entry(
                    transaction=tx, created_at=tx.created_at, account_id=10**12, asset_id=account.asset_id, amount=-5
                ),
                Entry(
                    transaction_id=10**12,
                    created_at=tx.created_at,
                    account=revenue,
                    asset_id=account.asset_id,
                    amount=5,
                ),
                Entry(
                    transaction=tx,
                    created_at=tx.created_at,
                    account=revenue,
                    asset_id=ledger.asset_get("USDT").pk,
                    amount=5,
                ),
            ]
        )
        health = ledger_health()
        transaction.set_rollback(True)

    assert not health["healthy"]
    assert health["dangling_entries"] == 3


def test_health_detects_a_tampered_cache(alice, fund):
    account = fund(alice, USDC)
    Account.objects.filter(pk=account.pk).update(balance=USDC - 1)

    health = ledger_health()

    assert not health["healthy"]
    assert health["balance_mismatches"] == 1
    Account.objects.filter(pk=account.pk).update(balance=USDC)  # leave the ledger whole for the fixture
