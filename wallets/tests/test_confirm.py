"""What the outbox sent, confirmed or undone from Chipi's records: a transfer Chipi accepted can still
fail on chain (its record goes PENDING -> FAILED), and then the money never left PayGo's wallet."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from conftest import in_thread, money_db
from notifications.models import Notification
from wallets import services
from wallets.chipi import get_gateway
from wallets.chipi.sandbox_http import SandboxTransport
from wallets.models import (
    ChipiWallet,
    LedgerTransaction,
    Sweep,
    SweepStatus,
    SystemAccount,
    TransactionKind,
    Withdrawal,
    WithdrawalKind,
    WithdrawalStatus,
)
from wallets.tests.conftest import balance_of, chain_deposit, system_balance

USDC = 1_000_000
ADDRESS = "0x00" + "ab" * 31


def withdraw(api, user, amount="4"):
    response = api(user).post("/api/v1/wallet/withdraw", {"amount": amount, "toAddress": ADDRESS}, format="json")
    assert response.status_code == 202, response.json()
    return Withdrawal.objects.get(pk=response.json()["withdrawal"]["id"])


def chipi_reads() -> int:
    """transaction-list requests this thread's gateway has made to the sandbox."""
    transport = get_gateway().transport
    assert isinstance(transport, SandboxTransport)
    return sum(1 for request in transport.received if request.url.path.endswith("/transactions/transaction-list"))


def reverted_refunds(withdrawal) -> int:
    """Refunds of a reverted send (once its signed transfer can no longer execute: test_refund_due)."""
    return LedgerTransaction.objects.filter(
        kind=TransactionKind.REFUND, reference=f"withdrawal-refund:{withdrawal.pk}"
    ).count()


def reverts(withdrawal) -> int:
    """A reverted send's money back from the custody mirror into 'in flight' (it never left)."""
    return LedgerTransaction.objects.filter(reference=f"withdrawal-reverted:{withdrawal.pk}").count()


def refund_when_due(withdrawal) -> str:
    """Settle a reverted withdrawal once its signed transfer can no longer execute (none was executed)."""
    row = Withdrawal.objects.get(pk=withdrawal.pk)
    assert row.status == WithdrawalStatus.REVERTED
    with time_machine.travel(row.refund_due_at + timedelta(seconds=1)):
        return services.withdrawal_refund_settle(withdrawal_id=row.pk)


@pytest.mark.django_db
def test_a_sent_withdrawal_is_confirmed_from_chipis_records_and_its_owner_sees_when(api, alice, sandbox):
    chain_deposit(alice, 10 * USDC)
    withdrawal = withdraw(api, alice)
    assert withdrawal.status == WithdrawalStatus.SENT
    body = api(alice).get(f"/api/v1/wallet/withdrawals/{withdrawal.pk}").json()["withdrawal"]
    assert (body["status"], body["confirmedAt"]) == ("sent", None)

    report = services.sends_confirm()

    assert (report.confirmed, report.reverted, report.pending) == (2, 0, 0)  # the withdrawal and the sweep
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.SENT
    assert withdrawal.confirmed_at is not None
    assert Sweep.objects.get().confirmed_at is not None
    body = api(alice).get(f"/api/v1/wallet/withdrawals/{withdrawal.pk}").json()["withdrawal"]
    assert body["status"] == "sent"
    assert body["confirmedAt"] == withdrawal.confirmed_at.isoformat().replace("+00:00", "Z")
    listed = api(alice).get("/api/v1/wallet/withdrawals").json()["withdrawals"][0]
    assert listed["confirmedAt"] == body["confirmedAt"]
    assert balance_of(alice) == 6 * USDC
    assert system_balance(SystemAccount.CUSTODY) == -6 * USDC


@pytest.mark.django_db
def test_the_checker_reads_the_treasury_once_and_not_at_all_when_nothing_waits(api, alice, sandbox):
    chain_deposit(alice, 20 * USDC)
    for _ in range(3):
        withdraw(api, alice, amount="1")
    before = chipi_reads()

    assert services.sends_confirm().confirmed == 4  # three withdrawals and the sweep, from one read
    assert chipi_reads() == before + 1
    assert services.sends_confirm().confirmed == 0
    assert chipi_reads() == before + 1  # everything confirmed: no read


@pytest.mark.django_db
def test_a_withdrawal_pending_on_chain_stays_sent_until_it_settles(api, alice, sandbox):
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("execute", "pending")
    withdrawal = withdraw(api, alice)

    report = services.sends_confirm()

    assert (report.confirmed, report.reverted, report.pending) == (1, 0, 1)  # the sweep; the withdrawal waits
    withdrawal.refresh_from_db()
    assert (withdrawal.status, withdrawal.confirmed_at, withdrawal.last_error) == (WithdrawalStatus.SENT, None, "")
    assert balance_of(alice) == 6 * USDC

    sandbox.settle(withdrawal.tx_hash)
    assert services.sends_confirm().confirmed == 1
    withdrawal.refresh_from_db()
    assert withdrawal.confirmed_at is not None


@pytest.mark.django_db
def test_a_withdrawal_reverted_on_chain_is_refunded_once_and_its_owner_told(
    api, alice, sandbox, django_capture_on_commit_callbacks
):
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("execute", "pending")
    withdrawal = withdraw(api, alice)
    assert withdrawal.status == WithdrawalStatus.SENT
    assert system_balance(SystemAccount.CUSTODY) == -6 * USDC
    sandbox.revert(withdrawal.tx_hash)  # the money is back in the treasury on chain

    with django_capture_on_commit_callbacks(execute=True):
        report = services.sends_confirm()

    assert report.reverted == 1
    withdrawal.refresh_from_db()
    # Not refunded yet: its signed transfer can still be executed (test_refund_due). Its money is in
    # flight again, and custody on chain matches the ledger.
    assert withdrawal.status == WithdrawalStatus.REVERTED
    assert (balance_of(alice), reverts(withdrawal), reverted_refunds(withdrawal)) == (6 * USDC, 1, 0)
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 4 * USDC
    assert services.reconcile()[0].difference == 0
    assert not Notification.objects.filter(user=alice, title="Withdrawal failed").exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert refund_when_due(withdrawal) == WithdrawalStatus.FAILED
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.FAILED
    assert withdrawal.confirmed_at is None
    assert "Reverted on chain" in withdrawal.last_error
    assert balance_of(alice) == 10 * USDC
    assert system_balance(SystemAccount.CUSTODY) == -10 * USDC
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert reverted_refunds(withdrawal) == 1
    # Custody on chain matches the ledger again.
    (usdc, *_rest) = services.reconcile()
    assert (usdc.on_chain, usdc.ledger, usdc.difference) == (10 * USDC, 10 * USDC, 0)
    notification = Notification.objects.filter(user=alice, title="Withdrawal failed").get()
    assert notification.data == {"withdrawalId": str(withdrawal.pk), "status": "failed"}
    body = api(alice).get(f"/api/v1/wallet/withdrawals/{withdrawal.pk}").json()["withdrawal"]
    assert (body["status"], body["confirmedAt"]) == ("failed", None)

    # A checker that runs again (or re-runs after a crash) moves nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        assert services.sends_confirm().reverted == 0
        assert services.withdrawal_revert(row_id=withdrawal.pk, tx_hash=withdrawal.tx_hash) is False
        assert services.withdrawal_refund_settle(withdrawal_id=withdrawal.pk) == WithdrawalStatus.FAILED
    assert (reverts(withdrawal), reverted_refunds(withdrawal)) == (1, 1)
    assert balance_of(alice) == 10 * USDC
    assert Notification.objects.filter(user=alice, title="Withdrawal failed").count() == 1


@pytest.mark.django_db
def test_a_payout_reverted_on_chain_goes_back_to_the_vendor(victor, sandbox, django_capture_on_commit_callbacks):
    chain_deposit(victor, 10 * USDC)
    sandbox.inject("execute", "pending")
    with django_capture_on_commit_callbacks(execute=True):  # its send is queued on commit
        payout = services.withdrawal_request(
            user=victor,
            asset=services.ledger.asset_get("USDC"),
            amount=3 * USDC,
            to_address=ADDRESS,
            kind=WithdrawalKind.PAYOUT,
        )
    payout.refresh_from_db()
    assert payout.status == WithdrawalStatus.SENT
    assert balance_of(victor) == 7 * USDC
    sandbox.revert(payout.tx_hash)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.sends_confirm().reverted == 1
        assert refund_when_due(payout) == WithdrawalStatus.FAILED

    payout.refresh_from_db()
    assert payout.status == WithdrawalStatus.FAILED
    assert balance_of(victor) == 10 * USDC
    assert system_balance(SystemAccount.CUSTODY) == -10 * USDC
    assert reverted_refunds(payout) == 1
    assert Notification.objects.filter(user=victor, title="Payout failed").count() == 1


@pytest.mark.django_db
def test_a_sweep_reverted_on_chain_is_sent_again_and_custody_stays_whole(
    alice, sandbox, django_capture_on_commit_callbacks
):
    sandbox.inject("execute", "pending")
    chain_deposit(alice, 5 * USDC)  # its sweep's record stays pending
    sweep = Sweep.objects.get()
    first_hash, first_nonce = sweep.tx_hash, sweep.nonce
    deposit_wallet = ChipiWallet.objects.get(owner=alice).address
    treasury = services.treasury_wallet().address
    sandbox.revert(first_hash)
    assert (sandbox.balance(deposit_wallet, "USDC"), sandbox.balance(treasury, "USDC")) == (5 * USDC, 0)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.sends_confirm().reverted == 1

    sweep.refresh_from_db()  # remade and, its task queued on commit, sent again with a new nonce
    assert sweep.status == SweepStatus.SENT
    assert sweep.tx_hash not in ("", first_hash)
    assert sweep.nonce != first_nonce
    assert (sandbox.balance(deposit_wallet, "USDC"), sandbox.balance(treasury, "USDC")) == (0, 5 * USDC)
    assert balance_of(alice) == 5 * USDC  # the ledger never moved: both wallets are custody
    assert services.sends_confirm().confirmed == 1
    assert services.sends_confirm().reverted == 0
    (usdc, *_rest) = services.reconcile()
    assert (usdc.on_chain, usdc.ledger, usdc.difference) == (5 * USDC, 5 * USDC, 0)


@pytest.mark.django_db
def test_a_send_chipi_never_shows_is_reported_once_and_not_refunded(api, alice, sandbox, caplog):
    chain_deposit(alice, 10 * USDC)
    services.sends_confirm()  # the sweep confirmed
    withdrawal = withdraw(api, alice)

    with time_machine.travel(timezone.now() + services.CONFIRM_ALARM - timedelta(minutes=1)):
        sandbox.inject("transaction_list", "stale")  # Chipi's records do not show it
        assert services.sends_confirm().pending == 1
    withdrawal.refresh_from_db()
    assert withdrawal.last_error == ""  # not overdue yet

    with time_machine.travel(timezone.now() + services.CONFIRM_ALARM + timedelta(minutes=1)):
        sandbox.inject("transaction_list", "stale", times=2)
        with caplog.at_level(logging.ERROR, logger="paygo.wallets"):
            assert services.sends_confirm().pending == 1
            assert services.sends_confirm().pending == 1
    overdue = [record for record in caplog.records if "Not confirmed on chain" in record.getMessage()]
    assert len(overdue) == 1
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.SENT
    assert "not in Chipi's records" in withdrawal.last_error
    assert balance_of(alice) == 6 * USDC
    assert reverted_refunds(withdrawal) == 0

    # Shown at last, it is confirmed all the same.
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert services.sends_confirm().confirmed == 1
    withdrawal.refresh_from_db()
    assert withdrawal.confirmed_at is not None


@money_db
def test_two_checkers_at_once_revert_a_withdrawal_once_and_two_settlers_refund_it_once(api, alice, sandbox):
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("execute", "pending")
    withdrawal = withdraw(api, alice)
    sandbox.revert(withdrawal.tx_hash)
    start = threading.Barrier(2)

    @in_thread
    def check(_):
        start.wait()
        return services.sends_confirm().reverted

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(pool.map(check, range(2)))

    assert outcomes == [0, 1]
    assert (reverts(withdrawal), balance_of(alice)) == (1, 6 * USDC)
    assert Withdrawal.objects.get(pk=withdrawal.pk).status == WithdrawalStatus.REVERTED

    @in_thread
    def settle(_):
        start.wait()
        return services.withdrawal_refund_settle(withdrawal_id=withdrawal.pk)

    due = Withdrawal.objects.get(pk=withdrawal.pk).refund_due_at
    with time_machine.travel(due + timedelta(seconds=1)), ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(settle, range(2)))

    assert outcomes == [WithdrawalStatus.FAILED, WithdrawalStatus.FAILED]
    assert reverted_refunds(withdrawal) == 1
    assert balance_of(alice) == 10 * USDC
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert Withdrawal.objects.get(pk=withdrawal.pk).status == WithdrawalStatus.FAILED
    assert Notification.objects.filter(user=alice, title="Withdrawal failed").count() == 1


@money_db
def test_two_reverts_of_one_withdrawal_at_once_put_it_back_in_flight_once(api, alice, sandbox):
    """The write path itself, raced: the row lock and its status check let one through."""
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("execute", "pending")
    withdrawal = withdraw(api, alice)
    start = threading.Barrier(8)

    @in_thread
    def revert(_):
        start.wait()
        return services.withdrawal_revert(row_id=withdrawal.pk, tx_hash=withdrawal.tx_hash)

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(revert, range(8)))

    sandbox.revert(withdrawal.tx_hash)  # what the chain said (keeps custody matching for the ledger check)
    assert outcomes.count(True) == 1
    assert reverts(withdrawal) == 1
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 4 * USDC
    assert balance_of(alice) == 6 * USDC


@pytest.mark.django_db
def test_a_reverted_resend_of_a_withdrawal_that_went_out_is_not_refunded(api, alice, sandbox, caplog):
    """An attempt whose answer was lost is signed again with the same nonce. While the first was not
    in a block yet, the second passed Chipi's checks; then the first went out and the second, its
    nonce used, reverted. The row holds the second's hash: refunded for it, the user had the money
    back and the recipient had it too (created money). Executed more than once, a reverted send is
    for staff, never refunded here."""
    from wallets.chipi.models import SandboxUsedNonce

    chain_deposit(alice, 10 * USDC)
    services.sends_confirm()  # the deposit's sweep confirmed
    sandbox.inject("execute", "lost_response")  # the first attempt goes out; its answer is lost
    response = api(alice).post("/api/v1/wallet/withdraw", {"amount": "4", "toAddress": ADDRESS}, format="json")
    withdrawal = Withdrawal.objects.get(pk=response.json()["withdrawal"]["id"])
    assert withdrawal.status == WithdrawalStatus.SENDING and sandbox.balance(ADDRESS, "USDC") == 4 * USDC
    SandboxUsedNonce.objects.all().delete()  # the first not in a block yet: its nonce passes Chipi's checks
    sandbox.inject("transaction_list", "stale")  # the look-up does not see the first yet
    sandbox.inject("execute", "pending")
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.SENT
    withdrawal_in_doubt = Withdrawal.objects.get(pk=withdrawal.pk)
    sandbox.revert(withdrawal_in_doubt.tx_hash)  # the second reverts: the nonce was the first's

    later = timezone.now() + timedelta(minutes=3)
    with caplog.at_level(logging.ERROR, logger="paygo.wallets"), time_machine.travel(later):
        report = services.sends_confirm()
        again = services.sends_confirm()

    assert (report.reverted, again.reverted) == (0, 0)
    assert reverted_refunds(withdrawal) == 0
    assert balance_of(alice) == 6 * USDC and sandbox.balance(ADDRESS, "USDC") == 4 * USDC
    row = Withdrawal.objects.get(pk=withdrawal.pk)
    assert row.status == WithdrawalStatus.SENT and "after 2 attempts" in row.last_error
    assert sum("after 2 attempts" in record.getMessage() for record in caplog.records) == 1


@pytest.mark.django_db
def test_a_reverted_resend_of_a_sweep_that_went_out_is_not_made_again(alice, sandbox):
    """The same for a sweep: made again with a new nonce, it would have taken from the deposit
    wallet money the first execution had already swept (another deposit's, or none: refused)."""
    from wallets.chipi.models import SandboxUsedNonce
    from wallets.services import ChainDeposit, deposit_credit, sweep_send, wallet_open

    deposit_wallet = wallet_open(user=alice)
    paid = sandbox.receive_payment(to_address=deposit_wallet, token="USDC", amount=5 * USDC)
    deposit_credit(user=alice, asset=services.ledger.asset_get("USDC"), deposit=ChainDeposit(paid), source="api")
    sweep = Sweep.objects.get(deposit_tx_hash=paid.tx_hash)
    sandbox.inject("execute", "lost_response")
    assert sweep_send(sweep_id=sweep.pk) == SweepStatus.PENDING  # it went out; its answer was lost
    SandboxUsedNonce.objects.all().delete()
    # Another payment arrives (its own sweep to come): the wallet holds enough for the second execution.
    sandbox.receive_payment(to_address=deposit_wallet, token="USDC", amount=5 * USDC)
    sandbox.inject("transaction_list", "stale")
    sandbox.inject("execute", "pending")
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert sweep_send(sweep_id=sweep.pk) == SweepStatus.SENT
    sweep.refresh_from_db()
    sandbox.revert(sweep.tx_hash)
    treasury = services.treasury_wallet().address

    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        assert services.sends_confirm().reverted == 0

    row = Sweep.objects.get(pk=sweep.pk)
    assert (row.status, row.tx_hash, row.nonce) == (SweepStatus.SENT, sweep.tx_hash, sweep.nonce)
    assert "after 2 attempts" in row.last_error
    # The first execution swept this deposit; the other payment stays for its own sweep.
    assert (sandbox.balance(deposit_wallet, "USDC"), sandbox.balance(treasury, "USDC")) == (5 * USDC, 5 * USDC)


@pytest.mark.django_db
def test_custody_counts_a_deposit_wallet_whose_sweep_is_sent_and_not_confirmed(alice, sandbox):
    """A sweep sent and not confirmed has its money in one of PayGo's two wallets: still in the deposit
    wallet (pending on chain, or reverted after its second attempt and left to staff) or in the
    treasury. The reconciliation counted only the treasury: a shortfall that is not one, for ever in
    the second case (nothing settles such a sweep)."""
    from wallets.services import ChainDeposit, deposit_credit, sweep_send, wallet_open

    deposit_wallet = wallet_open(user=alice)
    paid = sandbox.receive_payment(to_address=deposit_wallet, token="USDC", amount=5 * USDC)
    deposit_credit(user=alice, asset=services.ledger.asset_get("USDC"), deposit=ChainDeposit(paid), source="api")
    sweep = Sweep.objects.get(deposit_tx_hash=paid.tx_hash)
    sandbox.inject("execute", "timeout")  # never reached Chipi: outcome unknown to PayGo
    assert sweep_send(sweep_id=sweep.pk) == SweepStatus.PENDING
    sandbox.inject("execute", "pending")
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert sweep_send(sweep_id=sweep.pk) == SweepStatus.SENT  # signed again with its nonce: attempt 2
    sweep.refresh_from_db()
    treasury = services.treasury_wallet().address

    (usdc, *_rest) = services.reconcile()  # pending on chain: the money has not moved yet
    assert (usdc.on_chain, usdc.ledger, usdc.difference) == (5 * USDC, 5 * USDC, 0)

    sandbox.revert(sweep.tx_hash)
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        assert services.sends_confirm().reverted == 0  # its second attempt: left to staff, still sent
    row = Sweep.objects.get(pk=sweep.pk)
    assert (row.status, row.confirmed_at, row.attempts) == (SweepStatus.SENT, None, 2)
    assert (sandbox.balance(deposit_wallet, "USDC"), sandbox.balance(treasury, "USDC")) == (5 * USDC, 0)
    (usdc, *_rest) = services.reconcile()
    assert (usdc.on_chain, usdc.ledger, usdc.difference) == (5 * USDC, 5 * USDC, 0)


@pytest.mark.django_db
def test_a_stalled_answer_does_not_overwrite_a_sweep_made_again_and_sent_since(alice, sandbox, monkeypatch):
    """Worker A's execution stalls past its claim; B finds A's transfer and marks the sweep sent; it
    reverts, the sweep is made again and C sends it. A's answer then arrived and wrote the reverted
    hash over C's: the next check undid the sweep again, and its new send found the wallet empty."""
    from wallets.services import ChainDeposit, deposit_credit, sweep_send, wallet_open

    deposit_wallet = wallet_open(user=alice)
    paid = sandbox.receive_payment(to_address=deposit_wallet, token="USDC", amount=5 * USDC)
    deposit_credit(user=alice, asset=services.ledger.asset_get("USDC"), deposit=ChainDeposit(paid), source="api")
    sweep = Sweep.objects.get(deposit_tx_hash=paid.tx_hash)
    gateway_type = type(get_gateway())
    execute = gateway_type.execute_transfer
    later = {}

    def stalled_then_answered(self, **kwargs):
        monkeypatch.setattr(gateway_type, "execute_transfer", execute)  # only A's call stalls
        first = execute(self, **kwargs)
        with time_machine.travel(timezone.now() + timedelta(hours=1)):
            assert sweep_send(sweep_id=sweep.pk) == SweepStatus.SENT  # B: finds A's transfer
            sandbox.revert(first)
            assert services.sends_confirm().reverted == 1  # made again
            assert sweep_send(sweep_id=sweep.pk) == SweepStatus.SENT  # C: a new transfer
            later["hash"] = Sweep.objects.get(pk=sweep.pk).tx_hash
        return first  # A's answer, at last

    monkeypatch.setattr(gateway_type, "execute_transfer", stalled_then_answered)
    sandbox.inject("execute", "pending")

    sweep_send(sweep_id=sweep.pk)  # A

    row = Sweep.objects.get(pk=sweep.pk)
    assert (row.status, row.tx_hash) == (SweepStatus.SENT, later["hash"])
    assert sandbox.balance(services.treasury_wallet().address, "USDC") == 5 * USDC


@pytest.mark.django_db
def test_a_withdrawal_refused_before_acting_then_sent_once_and_reverted_is_refunded(api, alice, sandbox):
    """A 429 (or PayGo's own budget, or no connection) sends nothing: it is no execution. Counted as
    one, the only execution that reverted was left to staff and the user's money stayed gone."""
    chain_deposit(alice, 10 * USDC)
    services.sends_confirm()
    sandbox.inject("execute", "rate_limited")
    response = api(alice).post("/api/v1/wallet/withdraw", {"amount": "4", "toAddress": ADDRESS}, format="json")
    withdrawal = Withdrawal.objects.get(pk=response.json()["withdrawal"]["id"])
    assert withdrawal.status == WithdrawalStatus.PENDING and withdrawal.attempts == 0
    sandbox.inject("execute", "pending")
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.SENT
    sandbox.revert(Withdrawal.objects.get(pk=withdrawal.pk).tx_hash)

    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        assert services.sends_confirm().reverted == 1

    assert refund_when_due(withdrawal) == WithdrawalStatus.FAILED
    assert balance_of(alice) == 10 * USDC
    assert Withdrawal.objects.get(pk=withdrawal.pk).status == WithdrawalStatus.FAILED


@pytest.mark.django_db
def test_a_send_in_doubt_whose_one_execution_failed_on_chain_is_refunded(api, alice, sandbox):
    """Its answer lost, a withdrawal is looked up before any retry. Its one execution had failed on
    chain (nonce spent, nothing moved): the look-up found nothing sent, signed it again with the same
    nonce, was refused, and the row stayed in doubt for ever, its owner's money in flight."""
    from wallets.chipi.models import SandboxTransaction

    chain_deposit(alice, 10 * USDC)
    sandbox.inject("execute", "lost_response")
    withdrawal = Withdrawal.objects.get(pk=withdraw_in_doubt(api, alice))
    executed = SandboxTransaction.objects.get(destination_address=ADDRESS)
    SandboxTransaction.objects.filter(pk=executed.pk).update(status=SandboxTransaction.Status.PENDING)
    sandbox.revert(executed.tx_hash)  # it failed on chain: the money is back in the treasury

    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.REVERTED

    assert refund_when_due(withdrawal) == WithdrawalStatus.FAILED
    assert balance_of(alice) == 10 * USDC
    assert sandbox.balance(ADDRESS, "USDC") == 0
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0


@pytest.mark.django_db
def test_an_equal_send_in_doubt_does_not_take_a_failed_transfer_for_its_own(api, alice, sandbox):
    """Chipi's records carry no reference: a transfer is matched to a withdrawal by wallet, recipient,
    token and amount. A's one execution failed on chain and A was refunded; B, equal, went out, its
    answer lost, and Chipi's records do not list it yet. B's look-up must not take A's failed
    transfer for its own and settle B as reverted: B's money left, and refunded it is paid twice.
    B stays in doubt, its money in flight, until its own transfer shows."""
    from wallets.chipi.models import SandboxTransaction

    with time_machine.travel(timezone.now(), tick=False) as clock:
        first, failed = _in_doubt_pending_on_chain(api, alice, sandbox)
        sandbox.revert(failed.tx_hash)  # A failed on chain: the money is back in the treasury
        second = withdraw(api, alice)  # B: the same amount to the same address
        assert (second.status, second.attempts) == (WithdrawalStatus.PENDING, 0)  # waits for A, in doubt

        clock.shift(timedelta(minutes=2))
        assert services.withdrawal_send(withdrawal_id=first.pk) == WithdrawalStatus.REVERTED
        clock.move_to(Withdrawal.objects.get(pk=first.pk).refund_due_at + timedelta(seconds=1))
        assert services.withdrawal_refund_settle(withdrawal_id=first.pk) == WithdrawalStatus.FAILED
        assert balance_of(alice) == 6 * USDC  # A's 4 back, B's 4 in flight

        sandbox.inject("execute", "lost_response")
        assert services.withdrawal_send(withdrawal_id=second.pk) == WithdrawalStatus.SENDING  # it went out
        sent = SandboxTransaction.objects.exclude(pk=failed.pk).get(destination_address=ADDRESS)
        assert sent.status == SandboxTransaction.Status.SUCCESS
        # Chipi's records lag the chain: B's transfer is not listed yet, A's failed one is.
        SandboxTransaction.objects.filter(pk=sent.pk).update(sender_address="0x0")
        clock.shift(timedelta(minutes=2))
        assert services.withdrawal_send(withdrawal_id=second.pk) == WithdrawalStatus.SENDING  # still in doubt

        assert Withdrawal.objects.get(pk=second.pk).refusals == 1  # signed again: its nonce was used
        assert reverted_refunds(second) == 0
        assert balance_of(alice) == 6 * USDC
        assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 4 * USDC

        SandboxTransaction.objects.filter(pk=sent.pk).update(sender_address=failed.sender_address)  # listed now
        clock.shift(timedelta(minutes=2))
        assert services.withdrawal_send(withdrawal_id=second.pk) == WithdrawalStatus.SENT

    assert Withdrawal.objects.get(pk=second.pk).tx_hash == sent.tx_hash
    assert balance_of(alice) == 6 * USDC
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert sandbox.balance(ADDRESS, "USDC") == 4 * USDC


@pytest.mark.django_db
def test_an_equal_sweep_in_doubt_does_not_take_a_failed_sweeps_transfer_for_its_own(alice, sandbox):
    """The same for sweeps, whose failure writes no hash of its own (sweep_send): the outbox's rule
    writes the failed transfer onto the row whose one execution it was, so that an equal sweep's
    look-up counts it taken. Unwritten, B (the same amount from the same wallet, sent once A had
    failed, its answer lost and its transfer not listed yet) took A's failed transfer for its own and
    failed: a sweep that went out, for staff, and never confirmed."""
    from wallets.chipi.models import SandboxTransaction
    from wallets.services import ChainDeposit, deposit_credit, sweep_send, wallet_open

    deposit_wallet = wallet_open(user=alice)
    usdc = services.ledger.asset_get("USDC")
    first, second = (
        Sweep.objects.get(
            deposit=deposit_credit(
                user=alice,
                asset=usdc,
                deposit=ChainDeposit(sandbox.receive_payment(to_address=deposit_wallet, token="USDC", amount=4 * USDC)),
                source="api",
            ).transaction
        )
        for _ in range(2)
    )
    with time_machine.travel(timezone.now(), tick=False) as clock:
        sandbox.inject("execute", "lost_response")
        assert sweep_send(sweep_id=first.pk) == SweepStatus.PENDING  # A went out; its answer was lost
        failed = SandboxTransaction.objects.get(sender_address=deposit_wallet)
        SandboxTransaction.objects.filter(pk=failed.pk).update(status=SandboxTransaction.Status.PENDING)
        sandbox.revert(failed.tx_hash)  # and failed on chain
        clock.shift(timedelta(minutes=2))
        assert sweep_send(sweep_id=first.pk) == SweepStatus.FAILED  # its one execution failed: for staff
        assert Sweep.objects.get(pk=first.pk).tx_hash == failed.tx_hash  # the failed transfer is A's

        sandbox.inject("execute", "lost_response")
        assert sweep_send(sweep_id=second.pk) == SweepStatus.PENDING  # B went out; its answer was lost
        sent = SandboxTransaction.objects.exclude(pk=failed.pk).get(sender_address=deposit_wallet)
        SandboxTransaction.objects.filter(pk=sent.pk).update(sender_address="0x0")  # not listed yet
        clock.shift(timedelta(minutes=2))
        assert sweep_send(sweep_id=second.pk) == SweepStatus.PENDING  # still in doubt, not failed

        SandboxTransaction.objects.filter(pk=sent.pk).update(sender_address=deposit_wallet)  # listed now
        clock.shift(timedelta(minutes=2))
        assert sweep_send(sweep_id=second.pk) == SweepStatus.SENT

    assert Sweep.objects.get(pk=second.pk).tx_hash == sent.tx_hash


def withdraw_in_doubt(api, user) -> str:
    response = api(user).post("/api/v1/wallet/withdraw", {"amount": "4", "toAddress": ADDRESS}, format="json")
    withdrawal_id = response.json()["withdrawal"]["id"]
    assert Withdrawal.objects.get(pk=withdrawal_id).status == WithdrawalStatus.SENDING  # sent on commit
    return withdrawal_id


def _in_doubt_pending_on_chain(api, user, sandbox):
    """A withdrawal that went out, its answer lost (in doubt), its transfer not settled on chain yet
    (its record PENDING). The withdrawal and that record."""
    from wallets.chipi.models import SandboxTransaction

    chain_deposit(user, 10 * USDC)
    services.sends_confirm()  # the deposit's sweep confirmed
    sandbox.inject("execute", "lost_response")
    withdrawal = Withdrawal.objects.get(pk=withdraw_in_doubt(api, user))
    executed = SandboxTransaction.objects.get(destination_address=ADDRESS)
    SandboxTransaction.objects.filter(pk=executed.pk).update(status=SandboxTransaction.Status.PENDING)
    return withdrawal, executed


def _in_doubt_then_refused(api, user, sandbox):
    """A withdrawal that went out (its answer lost), not settled on chain yet, whose retry did not
    see it in Chipi's records (stale) and signed it again: refused, its nonce used. The withdrawal
    and its transfer's record."""
    withdrawal, executed = _in_doubt_pending_on_chain(api, user, sandbox)
    sandbox.inject("transaction_list", "stale")
    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.SENDING
    row = Withdrawal.objects.get(pk=withdrawal.pk)
    assert (row.attempts, row.refusals) == (1, 1)  # the refused signing executed nothing
    return row, executed


@pytest.mark.django_db
def test_a_send_in_doubt_refused_again_then_found_and_reverted_is_refunded(api, alice, sandbox):
    """Chipi's refusal of the signing again executed nothing: the send went out once. Counted as an
    execution, its revert was left to staff ("after 2 attempts") and its owner's money stayed gone."""
    withdrawal, executed = _in_doubt_then_refused(api, alice, sandbox)
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.SENT  # found, pending
    sandbox.revert(executed.tx_hash)

    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        assert services.sends_confirm().reverted == 1

    assert refund_when_due(withdrawal) == WithdrawalStatus.FAILED
    assert reverted_refunds(withdrawal) == 1
    assert balance_of(alice) == 10 * USDC
    assert Withdrawal.objects.get(pk=withdrawal.pk).status == WithdrawalStatus.FAILED


@pytest.mark.django_db
def test_a_send_in_doubt_refused_again_whose_one_execution_failed_on_chain_is_refunded(api, alice, sandbox):
    """The same, its one execution failing on chain before the look-up sees it: the look-up finds it
    failed and the row is refunded. Counted, the refusal made it "more than one execution", and the
    row was signed again and refused for ever."""
    withdrawal, executed = _in_doubt_then_refused(api, alice, sandbox)
    sandbox.revert(executed.tx_hash)

    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.REVERTED

    assert refund_when_due(withdrawal) == WithdrawalStatus.FAILED
    assert balance_of(alice) == 10 * USDC
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert Withdrawal.objects.get(pk=withdrawal.pk).tx_hash == executed.tx_hash
