"""Real concurrency on PostgreSQL: threads, each with its own connection, committing for real."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import IntegrityError, transaction
from django.db.models import F
from rest_framework.exceptions import ValidationError

from conftest import backend_pid, in_thread, money_db, wait_until_blocked_on_a_lock
from wallets import ledger
from wallets.models import Account, Entry, LedgerTransaction
from wallets.services import wallet_transfer
from wallets.tests.conftest import balance_of, fund_wallet

USDC = 1_000_000


@money_db
def test_fifty_parallel_transfers_from_twenty_five(alice, bob):
    fund_wallet(alice, 25 * USDC)
    usdc = ledger.asset_get("USDC")
    start = threading.Barrier(50)

    @in_thread
    def send(_):
        start.wait()
        try:
            wallet_transfer(sender=alice, recipient=bob, asset=usdc, amount=USDC)
        except ValidationError:
            return "refused"
        return "sent"

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = Counter(pool.map(send, range(50)))

    assert outcomes == {"sent": 25, "refused": 25}
    assert balance_of(alice) == 0
    assert balance_of(bob) == 25 * USDC


@money_db
def test_crossing_transfer_storms_neither_deadlock_nor_lose_a_unit(alice, bob):
    fund_wallet(alice, 100 * USDC)
    fund_wallet(bob, 100 * USDC)
    usdc = ledger.asset_get("USDC")
    start = threading.Barrier(8)

    @in_thread
    def storm(worker: int):
        sender, recipient = (alice, bob) if worker % 2 else (bob, alice)
        start.wait()
        sent = 0
        for amount in range(1, 26):
            wallet_transfer(sender=sender, recipient=recipient, asset=usdc, amount=amount)
            sent += amount
        return worker % 2, sent

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(storm, range(8)))

    alice_sent = sum(sent for is_alice, sent in results if is_alice)
    bob_sent = sum(sent for is_alice, sent in results if not is_alice)
    assert alice_sent == bob_sent == 4 * sum(range(1, 26))
    assert balance_of(alice) == 100 * USDC - alice_sent + bob_sent
    assert balance_of(bob) == 100 * USDC - bob_sent + alice_sent
    assert balance_of(alice) + balance_of(bob) == 200 * USDC


@money_db
def test_parallel_requests_with_one_idempotency_key_move_money_once(alice, bob):
    from conftest import client_for

    fund_wallet(alice, 10 * USDC)
    start = threading.Barrier(10)

    @in_thread
    def post(_):
        client = client_for(alice)
        start.wait()
        response = client.post(
            "/api/v1/wallet/transfer", {"amount": 1, "recipientId": bob.pk}, format="json", HTTP_IDEMPOTENCY_KEY="once"
        )
        return response.status_code, response.json()["transaction"]["transactionId"]

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(post, range(10)))

    assert {status for status, _ in outcomes} == {201}
    assert len({tx_id for _, tx_id in outcomes}) == 1
    assert balance_of(bob) == USDC
    assert balance_of(alice) == 9 * USDC


@money_db
def test_parallel_sandbox_deposits_with_one_idempotency_key_pay_in_once(alice, sandbox):
    """A deposit without a hash makes the sandbox simulate the payment before the key is recorded:
    the requests with one key take turns, so one payment is made, credited once, and custody on
    the (simulated) chain matches the ledger."""
    from conftest import client_for
    from wallets.services import reconcile

    start = threading.Barrier(4)

    @in_thread
    def post(_):
        client = client_for(alice)
        start.wait()
        response = client.post("/api/v1/wallet/deposit", {"amount": 5}, format="json", HTTP_IDEMPOTENCY_KEY="in")
        return response.status_code, response.json()["transaction"]["transactionId"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(post, range(4)))

    assert {status for status, _ in outcomes} == {201}
    assert len({tx_id for _, tx_id in outcomes}) == 1
    assert balance_of(alice) == 5 * USDC
    reports = reconcile()
    assert reports and all(report.difference == 0 for report in reports)


@money_db
def test_a_reference_raced_past_the_check_is_refused_by_the_unique_index(alice, bob):
    """Two postings of one reference, the second checking before the first commits: the unique
    index makes it wait, then refuses it; the money moves once."""
    fund_wallet(alice, 10 * USDC)
    usdc = ledger.asset_get("USDC")
    debit, credit = ledger.account_for_user(alice, usdc), ledger.account_for_user(bob, usdc)
    custody, revenue = (ledger.system_account(code, usdc) for code in ("custody", "platform_revenue"))
    custody_before, revenue_before = custody.balance, revenue.balance
    posted, may_commit = threading.Event(), threading.Event()
    second_pid = []

    @in_thread
    def first():
        with transaction.atomic():
            ledger.transfer(debit=debit, credit=credit, amount=USDC, reference="raced")
            posted.set()
            may_commit.wait(30)
        return "posted"

    @in_thread
    def second():
        posted.wait(30)
        second_pid.append(backend_pid())
        with transaction.atomic():
            try:
                # Other accounts than the first's locks, so that only the unique index makes it wait.
                ledger.transfer(debit=custody, credit=revenue, amount=1, reference="raced")
            except ledger.DuplicateReference as refused:
                outcome = refused.reference
            else:
                outcome = "posted twice"
            # The refusal left this transaction usable: it goes on and commits.
            ledger.transfer(debit=custody, credit=revenue, amount=2)
        return outcome

    with ThreadPoolExecutor(max_workers=2) as pool:
        first_done, second_done = pool.submit(first), pool.submit(second)
        try:
            wait_until_blocked_on_a_lock(second_pid)
        finally:
            may_commit.set()
        assert first_done.result() == "posted"
        assert second_done.result() == "raced"

    assert balance_of(alice) == 9 * USDC
    assert balance_of(bob) == USDC
    custody.refresh_from_db()
    revenue.refresh_from_db()
    assert (custody.balance, revenue.balance) == (custody_before - 2, revenue_before + 2)


@money_db
def test_a_refused_posting_keeps_no_lock(alice, bob):
    """After a refusal, the caller's transaction holds none of the refused batch's row locks: a
    transfer on the same accounts goes through while that transaction is still open."""
    fund_wallet(alice, USDC)
    fund_wallet(bob, USDC)
    usdc = ledger.asset_get("USDC")
    a, b = ledger.account_for_user(alice, usdc), ledger.account_for_user(bob, usdc)
    refused, other_done = threading.Event(), threading.Event()
    order = []

    @in_thread
    def refuses_then_waits():
        with transaction.atomic():
            with pytest.raises(ledger.InsufficientFunds):
                ledger.transfer(debit=a, credit=b, amount=2 * USDC)
            refused.set()
            other_done.wait(30)
            order.append("refused transaction ends")

    @in_thread
    def transfers():
        refused.wait(30)
        ledger.transfer(debit=b, credit=a, amount=USDC // 2)
        order.append("transfer done")
        other_done.set()

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(refuses_then_waits), pool.submit(transfers)]:
            future.result()

    assert order == ["transfer done", "refused transaction ends"]
    assert balance_of(alice) == USDC + USDC // 2


@money_db
def test_an_account_cannot_be_deleted_under_an_entry_being_written(alice, bob):
    """Entries written outside the ledger's posting (as a script might) share-lock their accounts,
    as a foreign key would: a concurrent delete waits, then finds the entries and is refused."""
    usdc = ledger.asset_get("USDC")
    account = ledger.account_for_user(bob, usdc)
    revenue = ledger.system_account("platform_revenue", usdc)
    inserted, may_commit = threading.Event(), threading.Event()
    deleter_pid = []

    @in_thread
    def insert_entries():
        with transaction.atomic():
            tx = LedgerTransaction.objects.create(kind="adjustment")
            Entry.objects.bulk_create(
                [
                    Entry(transaction=tx, created_at=tx.created_at, account=account, asset_id=usdc.pk, amount=5),
                    Entry(transaction=tx, created_at=tx.created_at, account=revenue, asset_id=usdc.pk, amount=-5),
                ]
            )
            Account.objects.filter(pk=account.pk).update(balance=F("balance") + 5)
            Account.objects.filter(pk=revenue.pk).update(balance=F("balance") - 5)
            inserted.set()
            may_commit.wait(30)

    @in_thread
    def delete_account():
        inserted.wait(30)
        deleter_pid.append(backend_pid())
        try:
            Account.objects.filter(pk=account.pk)._raw_delete(using="default")
        except IntegrityError:
            return "refused"
        return "deleted"

    with ThreadPoolExecutor(max_workers=2) as pool:
        inserting, deleting = pool.submit(insert_entries), pool.submit(delete_account)
        try:
            wait_until_blocked_on_a_lock(deleter_pid)
        finally:
            may_commit.set()
        inserting.result()
        assert deleting.result() == "refused"

    assert Account.objects.filter(pk=account.pk).exists()
    assert Entry.objects.filter(account=account).count() == 1


@money_db
def test_parallel_retries_of_a_key_past_its_retention_move_money_once_more(alice, bob):
    """Its row not deleted yet by the daily expiry, each retry deletes it to record its own: one of
    them does, the others wait for it and replay its answer."""
    from datetime import timedelta

    from conftest import client_for
    from wallets.idempotency import KEY_RETENTION
    from wallets.models import IdempotencyKey

    fund_wallet(alice, 10 * USDC)
    body = {"amount": 1, "recipientId": bob.pk}
    first = client_for(alice).post("/api/v1/wallet/transfer", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    IdempotencyKey.objects.update(created_at=F("created_at") - KEY_RETENTION - timedelta(hours=1))
    start = threading.Barrier(10)

    @in_thread
    def retry(_):
        client = client_for(alice)
        start.wait()
        response = client.post("/api/v1/wallet/transfer", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
        return response.status_code, response.json()["transaction"]["transactionId"]

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(retry, range(10)))

    assert {status for status, _ in outcomes} == {201}
    (again,) = {tx_id for _, tx_id in outcomes}
    assert again != first.json()["transaction"]["transactionId"]
    assert (balance_of(bob), balance_of(alice)) == (2 * USDC, 8 * USDC)
    assert IdempotencyKey.objects.count() == 1
