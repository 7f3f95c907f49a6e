"""A withdrawal whose execution reverted on chain is refunded only once the transfer PayGo signed for it
can no longer execute. On Starknet a reverted transaction leaves no state, the account's record of the
outside execution's nonce included: the nonce is unused again, and the signed calldata (caller
ANY_CALLER, valid 2 hours) is public in the reverted transaction, so anyone can submit it again until
its window closes. Refunded at once, the owner kept the refund and received the transfer: custody
came up short."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import time_machine
from django.utils import timezone

from notifications.models import Notification
from wallets import services
from wallets.chipi import get_gateway
from wallets.chipi.models import SandboxTransaction, SandboxUsedNonce
from wallets.models import LedgerTransaction, Sweep, SystemAccount, TransactionKind, Withdrawal, WithdrawalStatus
from wallets.tasks import withdrawals_dispatch_task
from wallets.tests.conftest import balance_of, chain_deposit, system_balance

pytestmark = pytest.mark.django_db

USDC = 1_000_000
ADDRESS = "0x00" + "ab" * 31


def reverted_withdrawal(api, user, sandbox, capture):
    """A 4 USDC withdrawal of 10 deposited, executed (Chipi answered its hash), reverted on chain and
    seen reverted by the confirmation checker; and the signed request PayGo sent for it."""
    chain_deposit(user, 10 * USDC)
    sandbox.inject("execute", "pending")
    response = api(user).post("/api/v1/wallet/withdraw", {"amount": "4", "toAddress": ADDRESS}, format="json")
    withdrawal = Withdrawal.objects.get(pk=response.json()["withdrawal"]["id"])
    signed = last_signed()
    sandbox.revert(withdrawal.tx_hash)  # the treasury ran short at inclusion, say
    with capture(execute=True):
        assert services.sends_confirm().reverted == 1
    withdrawal.refresh_from_db()
    return withdrawal, signed


def last_signed() -> httpx.Request:
    """The latest execution request PayGo sent (its signed outside execution in the body)."""
    received = get_gateway().transport.received
    return next(r for r in reversed(received) if r.url.path.endswith("/execute-sponsored-raw"))


def replay(signed) -> httpx.Response:
    """Anyone submits the signed outside execution again, from the reverted transaction's calldata."""
    request = httpx.Request(signed.method, signed.url, headers=signed.headers, content=signed.content)
    return get_gateway().transport.handle_request(request)


def paid_out() -> int:
    return SandboxTransaction.objects.filter(destination_address=ADDRESS, status="SUCCESS").count()


def refunds(withdrawal) -> int:
    refunded = LedgerTransaction.objects.filter(kind=TransactionKind.REFUND, entries__account__owner=withdrawal.user)
    return refunded.count()


def custody_difference() -> int:
    usdc = services.reconcile()[0]
    return usdc.difference


def test_the_sandbox_frees_a_reverted_executions_nonce_as_the_chain_does(api, alice, sandbox):
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("execute", "pending")
    response = api(alice).post("/api/v1/wallet/withdraw", {"amount": "4", "toAddress": ADDRESS}, format="json")
    withdrawal = Withdrawal.objects.get(pk=response.json()["withdrawal"]["id"])
    treasury = services.treasury_wallet().address
    assert SandboxUsedNonce.objects.filter(address=treasury, nonce=hex(int(withdrawal.nonce, 16))).exists()

    sandbox.revert(withdrawal.tx_hash)

    assert not SandboxUsedNonce.objects.filter(address=treasury, nonce=hex(int(withdrawal.nonce, 16))).exists()


def test_a_reverted_withdrawal_is_not_refunded_while_its_signed_transfer_can_still_execute(
    api, alice, sandbox, django_capture_on_commit_callbacks
):
    withdrawal, signed = reverted_withdrawal(api, alice, sandbox, django_capture_on_commit_callbacks)

    # Waiting: not refunded, its money back in flight (the ledger's custody holds it again, as the chain does).
    assert withdrawal.status == WithdrawalStatus.REVERTED
    due = withdrawal.send_attempted_at + services.SIGNED_TRANSFER_LIFETIME + services.CLOCK_SKEW
    assert withdrawal.refund_due_at == due
    assert (balance_of(alice), refunds(withdrawal)) == (6 * USDC, 0)
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 4 * USDC
    assert system_balance(SystemAccount.CUSTODY) == -10 * USDC
    assert custody_difference() == 0
    body = api(alice).get(f"/api/v1/wallet/withdrawals/{withdrawal.pk}").json()["withdrawal"]
    assert (body["status"], body["refundDueAt"]) == ("reverted", due.isoformat().replace("+00:00", "Z"))
    with time_machine.travel(due - timedelta(minutes=1)):
        withdrawals_dispatch_task()
    assert Withdrawal.objects.get(pk=withdrawal.pk).status == WithdrawalStatus.REVERTED
    assert balance_of(alice) == 6 * USDC

    # Within its window, the signed transfer is executed again: the nonce is free, the money leaves.
    with time_machine.travel(timezone.now() + timedelta(hours=1)):
        assert replay(signed).status_code == 200
    assert paid_out() == 1

    with time_machine.travel(due + timedelta(seconds=1)), django_capture_on_commit_callbacks(execute=True):
        withdrawals_dispatch_task()
        withdrawals_dispatch_task()  # a second run moves nothing more

    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.SENT
    assert withdrawal.confirmed_at is not None
    replayed = SandboxTransaction.objects.get(destination_address=ADDRESS, status="SUCCESS")
    assert withdrawal.tx_hash == replayed.tx_hash
    assert (balance_of(alice), refunds(withdrawal)) == (6 * USDC, 0)
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert system_balance(SystemAccount.CUSTODY) == -6 * USDC
    assert custody_difference() == 0
    assert Notification.objects.filter(user=alice, title="Withdrawal sent").count() == 1
    assert not Notification.objects.filter(user=alice, title="Withdrawal failed").exists()
    # Confirmed: the checker leaves it alone.
    assert services.sends_confirm().reverted == 0


def test_a_reverted_withdrawal_is_refunded_once_its_signed_transfer_can_no_longer_execute(
    api, alice, sandbox, django_capture_on_commit_callbacks
):
    withdrawal, signed = reverted_withdrawal(api, alice, sandbox, django_capture_on_commit_callbacks)
    due = withdrawal.refund_due_at

    with time_machine.travel(due + timedelta(seconds=1)), django_capture_on_commit_callbacks(execute=True):
        withdrawals_dispatch_task()
        withdrawals_dispatch_task()
        assert services.sends_confirm().reverted == 0

    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.FAILED
    assert withdrawal.refund_due_at == due
    assert (balance_of(alice), refunds(withdrawal)) == (10 * USDC, 1)
    assert LedgerTransaction.objects.filter(reference=f"withdrawal-refund:{withdrawal.pk}").count() == 1
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert system_balance(SystemAccount.CUSTODY) == -10 * USDC
    assert custody_difference() == 0
    assert Notification.objects.filter(user=alice, title="Withdrawal failed").count() == 1

    # Its window closed, the signed transfer is refused on chain: nothing leaves.
    with time_machine.travel(due + timedelta(minutes=1)):
        assert replay(signed).status_code == 400
    assert paid_out() == 0
    assert (balance_of(alice), custody_difference()) == (10 * USDC, 0)


def test_a_send_in_doubt_whose_one_execution_reverted_waits_for_its_window_too(api, alice, sandbox):
    """Its answer lost, the look-up finds the row's one execution failed on chain: the same rule."""
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("execute", "lost_response")
    response = api(alice).post("/api/v1/wallet/withdraw", {"amount": "4", "toAddress": ADDRESS}, format="json")
    withdrawal = Withdrawal.objects.get(pk=response.json()["withdrawal"]["id"])
    executed = SandboxTransaction.objects.get(destination_address=ADDRESS)
    SandboxTransaction.objects.filter(pk=executed.pk).update(status=SandboxTransaction.Status.PENDING)
    sandbox.revert(executed.tx_hash)

    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.REVERTED

    withdrawal.refresh_from_db()
    assert withdrawal.tx_hash == executed.tx_hash  # the failed transfer is the row's
    lifetime = services.SIGNED_TRANSFER_LIFETIME + services.CLOCK_SKEW
    assert withdrawal.refund_due_at == withdrawal.send_attempted_at + lifetime
    assert (balance_of(alice), system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT)) == (6 * USDC, 4 * USDC)
    assert custody_difference() == 0

    with time_machine.travel(withdrawal.refund_due_at + timedelta(seconds=1)):
        withdrawals_dispatch_task()

    assert Withdrawal.objects.get(pk=withdrawal.pk).status == WithdrawalStatus.FAILED
    assert (balance_of(alice), refunds(withdrawal)) == (10 * USDC, 1)
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert custody_difference() == 0


def test_an_equal_withdrawal_waits_while_a_reverted_ones_transfer_can_still_execute(
    api, alice, sandbox, django_capture_on_commit_callbacks
):
    """Its replay could otherwise be taken for the equal one's transfer (Chipi's records carry no
    reference), and the equal one's for the replay."""
    withdrawal, _signed = reverted_withdrawal(api, alice, sandbox, django_capture_on_commit_callbacks)
    response = api(alice).post("/api/v1/wallet/withdraw", {"amount": "4", "toAddress": ADDRESS}, format="json")
    twin = Withdrawal.objects.get(pk=response.json()["withdrawal"]["id"])
    assert (twin.status, twin.attempts) == (WithdrawalStatus.PENDING, 0)
    assert balance_of(alice) == 2 * USDC

    with time_machine.travel(withdrawal.refund_due_at + timedelta(seconds=1)):
        withdrawals_dispatch_task()  # the reverted one refunded, then the equal one sent

    assert Withdrawal.objects.get(pk=withdrawal.pk).status == WithdrawalStatus.FAILED
    assert Withdrawal.objects.get(pk=twin.pk).status == WithdrawalStatus.SENT
    assert balance_of(alice) == 6 * USDC
    assert paid_out() == 1
    assert custody_difference() == 0


def test_a_reverted_sweeps_signed_transfer_replayed_keeps_the_money_in_custody(
    alice, sandbox, django_capture_on_commit_callbacks
):
    """A sweep's signed transfer pays the treasury: replayed after the sweep was made again and sent,
    it moves what the deposit wallet holds (nothing, here: refused) into custody; never out of it."""
    sandbox.inject("execute", "pending")
    chain_deposit(alice, 5 * USDC)
    sweep = Sweep.objects.get()
    signed = last_signed()
    sandbox.revert(sweep.tx_hash)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.sends_confirm().reverted == 1
    assert Sweep.objects.get().status == "sent"  # made again with a new nonce, and sent

    assert replay(signed).status_code == 400  # the deposit wallet holds nothing more to move

    assert balance_of(alice) == 5 * USDC
    assert custody_difference() == 0
