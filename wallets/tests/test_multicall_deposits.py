"""One on-chain transaction, several deposits: a Starknet multicall (an exchange's batched
withdrawal) makes several ERC-20 transfers under one hash. Each transfer into a PayGo address is a
deposit of its own, credited once, whichever path (polling, a signed webhook, the API) finds it."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import TestCase

from conftest import CommittingAPIClient, in_thread, money_db
from wallets import services
from wallets.chipi import sign_webhook
from wallets.chipi.sandbox import Payment
from wallets.models import LedgerTransaction, Sweep, SweepStatus, TransactionKind
from wallets.tests.conftest import balance_of

USDC = 1_000_000
EXCHANGE = "0x0" + "7" * 63  # the exchange's hot wallet, paying out in batches


def batch(sandbox, *payments: tuple[object, int]) -> str:
    """One transaction from the exchange paying each (user, raw USDC); its one hash."""
    paid = sandbox.receive_batch(
        [Payment(services.wallet_open(user=user), "USDC", amount) for user, amount in payments],
        from_address=EXCHANGE,
    )
    assert len({record.tx_hash for record in paid}) == 1  # as on chain: one transaction, one hash
    return paid[0].tx_hash


def webhook(client, user, tx_hash: str, amount: str):
    """Chipi's signed payment.completed for the transfer of `amount` USDC into the user's address."""
    raw = json.dumps(
        {
            "event": "payment.completed",
            "txHash": tx_hash,
            "amount": amount,
            "token": "USDC",
            "sender": EXCHANGE,
            "recipient": user.wallet_address,
            "status": "COMPLETED",
        }
    ).encode()
    return client.post(
        "/api/v1/wallet/webhooks/chipi",
        data=raw,
        content_type="application/json",
        HTTP_CHIPI_SIGNATURE=sign_webhook(raw),
    )


def report(client, tx_hash: str, amount: str):
    return client.post("/api/v1/wallet/deposit", {"amount": amount, "txHash": tx_hash}, format="json")


def poll() -> int:
    """Polling as its Celery task runs it: committed, its sweeps queued on commit."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.deposits_poll()


def deposits() -> int:
    return LedgerTransaction.objects.filter(kind=TransactionKind.DEPOSIT).count()


def assert_custody_matches_the_chain() -> None:
    """Every credited deposit swept into the treasury, and custody on chain what the ledger says."""
    assert not Sweep.objects.exclude(status=SweepStatus.SENT).exists()
    (usdc,) = [report for report in services.reconcile() if report.asset.code == "USDC"]
    assert usdc.difference == 0


# --- The three paths, for the second recipient of a batch -------------------------------------------


@pytest.mark.django_db
def test_polling_credits_both_recipients_of_one_batched_transaction(alice, bob, sandbox):
    tx_hash = batch(sandbox, (alice, 10 * USDC), (bob, 7 * USDC))

    credited = poll()  # was 1: bob's record skipped, its hash "known"

    assert credited == 2
    assert (balance_of(alice), balance_of(bob)) == (10 * USDC, 7 * USDC)
    sweeps = Sweep.objects.filter(deposit_tx_hash=tx_hash)
    assert sorted(sweeps.values_list("amount", flat=True)) == [7 * USDC, 10 * USDC]  # one per deposit
    assert poll() == 0


@pytest.mark.django_db
def test_a_signed_webhook_for_the_second_recipient_is_credited(anon, alice, bob, sandbox):
    tx_hash = batch(sandbox, (alice, 10 * USDC), (bob, 7 * USDC))

    first = webhook(anon, alice, tx_hash, "10.00")
    second = webhook(anon, bob, tx_hash, "7.00")  # was 409 already_credited

    assert (first.status_code, second.status_code) == (200, 200), second.json()
    assert first.json()["credited"] and second.json()["credited"]
    assert (balance_of(alice), balance_of(bob)) == (10 * USDC, 7 * USDC)
    assert_custody_matches_the_chain()


@pytest.mark.django_db
def test_bob_reporting_his_deposit_by_its_hash_is_credited(api, alice, bob, sandbox):
    tx_hash = batch(sandbox, (alice, 10 * USDC), (bob, 7 * USDC))
    assert report(api(alice), tx_hash, "10").status_code == 201

    response = report(api(bob), tx_hash, "7")  # was 409 already_credited

    assert response.status_code == 201, response.json()
    assert response.json()["txHash"] == tx_hash
    assert (balance_of(alice), balance_of(bob)) == (10 * USDC, 7 * USDC)
    assert_custody_matches_the_chain()


@pytest.mark.django_db
def test_a_recipient_reporting_anothers_transfer_of_the_batch_is_refused(api, alice, bob, sandbox):
    tx_hash = batch(sandbox, (alice, 10 * USDC), (bob, 7 * USDC))

    response = report(api(bob), tx_hash, "10")  # alice's transfer, not his

    assert response.status_code == 400
    assert response.json()["errors"]["amount"] == ["The transaction paid 7.000000 USDC."]
    assert (balance_of(alice), balance_of(bob), deposits()) == (0, 0, 0)


# --- The same user paid more than once in one transaction ------------------------------------------


@pytest.mark.django_db
def test_polling_credits_each_transfer_to_the_same_user_in_one_transaction(alice, sandbox):
    batch(sandbox, (alice, 10 * USDC), (alice, 10 * USDC), (alice, 7 * USDC))

    assert poll() == 3
    assert poll() == 0  # replayed: nothing more

    assert balance_of(alice) == 27 * USDC
    assert deposits() == 3
    assert Sweep.objects.count() == 3
    assert_custody_matches_the_chain()


@pytest.mark.django_db
def test_reports_of_the_same_user_paid_twice_in_one_transaction_credit_each_transfer_once(api, alice, sandbox):
    tx_hash = batch(sandbox, (alice, 10 * USDC), (alice, 10 * USDC), (alice, 7 * USDC))
    client = api(alice)

    # One report is one transfer: the first 10 not credited yet, then the second; a third is a replay.
    statuses = [report(client, tx_hash, amount).status_code for amount in ("10", "10", "7", "10", "7")]
    both = report(client, tx_hash, "17")

    assert statuses == [201, 201, 201, 200, 200]
    assert both.status_code == 400
    assert both.json()["errors"]["amount"] == [
        "The transaction paid 7.000000, 10.000000 and 10.000000 USDC.",
    ]
    assert balance_of(alice) == 27 * USDC
    assert deposits() == 3
    assert poll() == 0
    assert_custody_matches_the_chain()


@pytest.mark.django_db
def test_webhooks_of_the_same_user_paid_twice_in_one_transaction_credit_each_transfer_once(anon, alice, sandbox):
    tx_hash = batch(sandbox, (alice, 10 * USDC), (alice, 7 * USDC))

    first, second = webhook(anon, alice, tx_hash, "10.00"), webhook(anon, alice, tx_hash, "7.00")
    redelivered = [webhook(anon, alice, tx_hash, amount) for amount in ("10.00", "7.00")]

    assert [r.json()["credited"] for r in (first, second, *redelivered)] == [True, True, False, False]
    assert balance_of(alice) == 17 * USDC
    assert poll() == 0
    assert deposits() == 2
    assert_custody_matches_the_chain()


@pytest.mark.django_db
def test_every_path_replayed_after_a_batch_credits_nothing_more(api, anon, alice, bob, sandbox):
    tx_hash = batch(sandbox, (alice, 10 * USDC), (bob, 7 * USDC), (bob, 7 * USDC))
    assert poll() == 3

    replays = [
        webhook(anon, alice, tx_hash, "10.00").json()["credited"],
        webhook(anon, bob, tx_hash, "7.00").json()["credited"],
        report(api(alice), tx_hash, "10").status_code,
        report(api(bob), tx_hash, "7").status_code,
        poll(),
    ]

    assert replays == [False, False, 200, 200, 0]
    assert (balance_of(alice), balance_of(bob)) == (10 * USDC, 14 * USDC)
    assert deposits() == 3
    assert_custody_matches_the_chain()


# --- Concurrency: webhooks and polling racing for one batch ----------------------------------------


@money_db
def test_webhooks_and_polling_racing_over_one_batch_credit_each_recipient_once(alice, bob, sandbox):
    tx_hash = batch(sandbox, (alice, 10 * USDC), (bob, 7 * USDC))
    workers = [
        ("webhook", alice, "10.00"),
        ("webhook", bob, "7.00"),
        ("poll", None, None),
        ("webhook", alice, "10.00"),
        ("webhook", bob, "7.00"),
        ("poll", None, None),
    ]
    start = threading.Barrier(len(workers))

    @in_thread
    def run(worker):
        path, user, amount = worker
        start.wait()
        if path == "poll":
            return services.deposits_poll()
        response = webhook(CommittingAPIClient(), user, tx_hash, amount)
        assert response.status_code == 200, response.json()
        return int(response.json()["credited"])

    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        credited = sum(pool.map(run, workers))

    assert credited == 2  # each transfer credited by exactly one of them
    assert (balance_of(alice), balance_of(bob)) == (10 * USDC, 7 * USDC)
    assert deposits() == 2
    assert Sweep.objects.filter(deposit_tx_hash=tx_hash).count() == 2
    assert_custody_matches_the_chain()


# --- Chipi's records read a page at a time ----------------------------------------------------------


@pytest.mark.django_db
def test_a_record_read_again_on_the_next_page_is_not_a_second_deposit(alice, sandbox, monkeypatch):
    """Chipi's records are read a page at a time, newest first: one written between two pages pushes
    the others down a place, and the last of the first page comes again at the top of the second.
    Read twice, a transfer equal to another of its transaction would count as a third."""
    batch(sandbox, (alice, 10 * USDC), (alice, 10 * USDC))  # the oldest: page 1 ends in it, page 2 holds the rest
    for _ in range(99):
        sandbox.receive_payment(to_address=alice.wallet_address, token="USDC", amount=1)
    serve = sandbox._api_transaction_list

    def serve_then_get_paid(request):
        answer = serve(request)
        if request.query.get("page") == "1":
            sandbox.receive_payment(to_address=alice.wallet_address, token="USDC", amount=1)
        return answer

    monkeypatch.setattr(sandbox, "_api_transaction_list", serve_then_get_paid)
    monkeypatch.setattr(services, "_queue_sweep", lambda sweep_id: None)  # 100 signatures: not this test's

    assert poll() == 2 + 99  # the payment made between the pages is on the next poll's first page
    assert balance_of(alice) == 20 * USDC + 99
    monkeypatch.setattr(sandbox, "_api_transaction_list", serve)
    assert poll() == 1
    assert balance_of(alice) == 20 * USDC + 100


# --- Deposits credited before wallets 0021, under their transaction's hash alone --------------------


@money_db
def test_a_deposit_credited_under_its_hash_before_the_migration_is_not_credited_again(api, anon, alice, bob, sandbox):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django.utils import timezone

    from wallets import ledger
    from wallets.models import ChipiWallet, SystemAccount

    tx_hash = batch(sandbox, (alice, 5 * USDC), (bob, 3 * USDC))
    usdc = ledger.asset_get("USDC")
    before = [("wallets", "0020_outbox_needs_review")]
    MigrationExecutor(connection).migrate(before)
    try:
        # What the code before did with alice's report: credited under the hash alone, its sweep
        # unique per hash (bob's transfer, of the same hash, could then never be credited).
        credit = ledger.transfer(
            debit=ledger.system_account(SystemAccount.CUSTODY, usdc),
            credit=ledger.account_for_user(alice, usdc),
            amount=5 * USDC,
            kind=TransactionKind.DEPOSIT,
            reference=f"deposit:{tx_hash}",
            memo=f"Deposit {tx_hash}",
            metadata={"txHash": tx_hash, "source": "api", "token": "USDC"},
        )
        OldSweep = MigrationExecutor(connection).loader.project_state(before).apps.get_model("wallets", "Sweep")
        old_sweep = OldSweep.objects.create(
            wallet_id=ChipiWallet.objects.values_list("pk", flat=True).get(owner=alice),  # columns of then
            asset_id=usdc.pk,
            amount=5 * USDC,
            deposit_tx_hash=tx_hash,
            nonce=services.new_nonce(),
            next_attempt_at=timezone.now(),
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert Sweep.objects.get(pk=old_sweep.pk).deposit_id == credit.pk  # linked to the deposit it sweeps
    assert services.sweep_send(sweep_id=old_sweep.pk) == SweepStatus.SENT

    assert poll() == 1  # bob's transfer; alice's was credited under the hash alone
    assert webhook(anon, alice, tx_hash, "5.00").json()["credited"] is False
    assert report(api(alice), tx_hash, "5").status_code == 200
    assert poll() == 0

    assert (balance_of(alice), balance_of(bob)) == (5 * USDC, 3 * USDC)
    assert deposits() == 2
    assert_custody_matches_the_chain()
