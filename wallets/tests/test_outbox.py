"""Withdrawals through the outbox: every Chipi fault, never a double send nor a lost unit."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from wallets import keys, services
from wallets.chipi import get_gateway
from wallets.chipi.models import SandboxTransaction
from wallets.models import LedgerTransaction, SystemAccount, TransactionKind, Withdrawal, WithdrawalStatus
from wallets.tests.conftest import balance_of, chain_deposit, system_balance

pytestmark = pytest.mark.django_db

USDC = 1_000_000
ADDRESS = "0x00" + "ab" * 31


def withdraw(api, user, amount="4", **extra):
    return api(user).post("/api/v1/wallet/withdraw", {"amount": amount, "toAddress": ADDRESS, **extra}, format="json")


def sent_on_chain(withdrawal_id) -> int:
    """Transfers on chain from the treasury to the withdrawal's address (Chipi's records carry no
    reference; each test sends one withdrawal there)."""
    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    treasury = services.treasury_wallet()
    return SandboxTransaction.objects.filter(
        sender_address=treasury.address, destination_address=withdrawal.to_address, amount=withdrawal.amount
    ).count()


def retry_due(withdrawal_id):
    """Run the outbox for this row once its retry time has come."""
    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    with time_machine.travel(withdrawal.next_attempt_at + timedelta(seconds=1)):
        return services.withdrawal_send(withdrawal_id=withdrawal_id)


def due_then(withdrawal_id) -> list[str]:
    """What the dispatcher would send once this row's retry time has come."""
    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    with time_machine.travel(withdrawal.next_attempt_at + timedelta(seconds=1)):
        return services.withdrawals_due()


def test_withdrawal_is_sent_once_and_settled(api, alice, sandbox):
    chain_deposit(alice, 10 * USDC)

    response = withdraw(api, alice)

    assert response.status_code == 202
    body = response.json()
    assert body["withdrawal"]["amount"] == "4.000000"
    assert body["remainingBalance"] == "6.000000"
    withdrawal = Withdrawal.objects.get(pk=body["withdrawal"]["id"])
    assert withdrawal.status == WithdrawalStatus.SENT  # the eager task ran on commit
    assert withdrawal.tx_hash
    assert sent_on_chain(withdrawal.pk) == 1
    assert balance_of(alice) == 6 * USDC
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert system_balance(SystemAccount.CUSTODY) == -6 * USDC
    assert sandbox.custody_balance("USDC") == 6 * USDC


def test_withdrawal_beyond_available_is_400_and_moves_nothing(api, alice, fund):
    fund(alice, 3 * USDC)  # nothing is sent: the ledger's balance is enough (no signature spent)

    response = withdraw(api, alice, amount="3.5")

    assert response.status_code == 400
    assert response.json()["errors"]["amount"] == ["Insufficient funds: 3.000000 USDC available."]
    assert Withdrawal.objects.count() == 0
    assert balance_of(alice) == 3 * USDC


@pytest.mark.parametrize(
    "address",
    ["0xZZ", "ab" * 32, "", "0x" + "a" * 65, "0x0", "0x" + "f" * 64],  # the last two: zero, past the field
)
def test_withdrawal_to_a_bad_address_is_400(api, alice, fund, address):
    fund(alice, 3 * USDC)

    response = api(alice).post("/api/v1/wallet/withdraw", {"amount": 1, "toAddress": address}, format="json")

    assert response.status_code == 400
    assert "toAddress" in response.json()["errors"]
    assert balance_of(alice) == 3 * USDC


def test_a_short_or_upper_case_address_is_stored_and_sent_in_full(api, alice, sandbox):
    chain_deposit(alice, 3 * USDC)

    response = api(alice).post("/api/v1/wallet/withdraw", {"amount": 1, "toAddress": "0xBEEF"}, format="json")

    assert response.status_code == 202
    withdrawal = Withdrawal.objects.get()
    assert withdrawal.to_address == "0x" + "0" * 60 + "beef"
    assert withdrawal.status == WithdrawalStatus.SENT
    assert SandboxTransaction.objects.filter(destination_address=withdrawal.to_address).count() == 1


def test_a_service_caller_cannot_queue_an_address_that_is_none(alice, fund):
    fund(alice, 3 * USDC)

    with pytest.raises(ValidationError):
        services.withdrawal_request(
            user=alice, asset=services.ledger.asset_get("USDC"), amount=USDC, to_address="0x" + "f" * 64
        )

    assert Withdrawal.objects.count() == 0
    assert balance_of(alice) == 3 * USDC


def test_timeout_before_acting_is_retried_and_sent_once(api, alice, sandbox):
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "timeout")

    withdrawal_id = withdraw(api, alice).json()["withdrawal"]["id"]

    assert Withdrawal.objects.get(pk=withdrawal_id).status == WithdrawalStatus.SENDING
    assert sent_on_chain(withdrawal_id) == 0
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 4 * USDC
    assert retry_due(withdrawal_id) == WithdrawalStatus.SENT
    assert sent_on_chain(withdrawal_id) == 1
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0


def test_lost_response_is_found_not_resent(api, alice, sandbox):
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "lost_response")

    withdrawal_id = withdraw(api, alice).json()["withdrawal"]["id"]

    assert sent_on_chain(withdrawal_id) == 1  # Chipi acted; we did not hear back
    assert Withdrawal.objects.get(pk=withdrawal_id).status == WithdrawalStatus.SENDING
    assert retry_due(withdrawal_id) == WithdrawalStatus.SENT
    assert sent_on_chain(withdrawal_id) == 1
    assert sandbox.custody_balance("USDC") == 6 * USDC
    assert system_balance(SystemAccount.CUSTODY) == -6 * USDC


def test_a_send_chipis_records_do_not_show_yet_is_signed_again_with_its_nonce_and_moves_once(api, alice, sandbox):
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "lost_response")
    withdrawal_id = withdraw(api, alice).json()["withdrawal"]["id"]
    nonce = Withdrawal.objects.get(pk=withdrawal_id).nonce
    sandbox.inject("transaction_list", "stale")  # the look-up misses the transfer that went out

    # Signed again with the same nonce: the treasury account refuses it, and nothing is refunded.
    # The refused one executed nothing: one execution still (a refusal, counted as such).
    assert retry_due(withdrawal_id) == WithdrawalStatus.SENDING
    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    assert (withdrawal.nonce, withdrawal.attempts, withdrawal.refusals) == (nonce, 1, 1)
    assert "nonce" in withdrawal.last_error
    assert sent_on_chain(withdrawal_id) == 1
    assert balance_of(alice) == 6 * USDC
    # The next look-up finds it.
    assert retry_due(withdrawal_id) == WithdrawalStatus.SENT
    assert sent_on_chain(withdrawal_id) == 1
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0


def test_lookup_that_times_out_sends_nothing(api, alice, sandbox):
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "lost_response")
    withdrawal_id = withdraw(api, alice).json()["withdrawal"]["id"]
    sandbox.inject("find_transfer", "timeout")

    assert retry_due(withdrawal_id) == WithdrawalStatus.SENDING
    assert sent_on_chain(withdrawal_id) == 1
    assert retry_due(withdrawal_id) == WithdrawalStatus.SENT
    assert sent_on_chain(withdrawal_id) == 1


@pytest.mark.parametrize("fault", ["error", "rate_limited"])
def test_refusals_before_acting_are_retried(api, alice, sandbox, fault):
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", fault, times=2)

    withdrawal_id = withdraw(api, alice).json()["withdrawal"]["id"]

    assert retry_due(withdrawal_id) != WithdrawalStatus.SENT
    assert retry_due(withdrawal_id) == WithdrawalStatus.SENT
    assert sent_on_chain(withdrawal_id) == 1
    assert balance_of(alice) == 6 * USDC


@pytest.mark.parametrize("fault", ["rate_limited", "unreachable"])
def test_a_send_that_never_left_is_no_unknown_outcome(api, alice, sandbox, fault):
    """Refused before acting (a 429) or never sent (no connection), the first attempt leaves the row
    as it was: Chipi's refusal of the next one is a refusal of a first attempt, and gives the money
    back. Marked attempted, the refusal counted as one after an unknown outcome: the money stayed
    in flight for ever, retried without end."""
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", fault)

    withdrawal_id = withdraw(api, alice).json()["withdrawal"]["id"]

    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    assert (withdrawal.status, withdrawal.send_attempted_at) == (WithdrawalStatus.PENDING, None)
    assert withdrawal.nonce  # kept: the next attempt signs with it
    sandbox.inject("send_transfer", "reject")
    assert retry_due(withdrawal_id) == WithdrawalStatus.FAILED
    assert balance_of(alice) == 10 * USDC
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert sent_on_chain(withdrawal_id) == 0


@pytest.mark.parametrize("fault", ["rate_limited", "unreachable"])
def test_after_an_unknown_outcome_a_send_that_never_left_keeps_it_unknown(api, alice, sandbox, fault):
    """The row's earlier attempt may have acted: a 429 or a failed connection since changes nothing
    about that, and a refusal after them is still not taken as the end of it."""
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "timeout")
    withdrawal_id = withdraw(api, alice).json()["withdrawal"]["id"]
    first = Withdrawal.objects.get(pk=withdrawal_id).send_attempted_at
    assert first is not None

    sandbox.inject("send_transfer", fault)
    assert retry_due(withdrawal_id) == WithdrawalStatus.SENDING
    assert Withdrawal.objects.get(pk=withdrawal_id).send_attempted_at == first

    assert retry_due(withdrawal_id) == WithdrawalStatus.SENT
    assert sent_on_chain(withdrawal_id) == 1
    assert balance_of(alice) == 6 * USDC


def test_a_send_in_doubt_is_found_behind_more_records_than_a_recent_read_holds(api, alice, sandbox, monkeypatch):
    """Its answer lost, the transfer is looked up at the retry: by then more newer transfers touched the
    treasury (every swept deposit lands there) than a recent read holds (5 pages of 100; 1 here, to
    be quick). The look-up reads back to the row's making; stopping at the recent pages, it never
    found it, signed again, was refused the used nonce and kept the money in flight for ever."""
    from wallets.chipi import gateway as chipi_gateway

    monkeypatch.setattr(chipi_gateway, "MAX_TRANSACTION_PAGES", 1)
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "lost_response")
    withdrawal_id = withdraw(api, alice).json()["withdrawal"]["id"]
    treasury = services.treasury_wallet().address
    for _ in range(chipi_gateway.MAX_TRANSACTION_PAGES * 100):
        sandbox.receive_payment(to_address=treasury, token="USDC", amount=1)

    assert retry_due(withdrawal_id) == WithdrawalStatus.SENT
    assert sent_on_chain(withdrawal_id) == 1
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert balance_of(alice) == 6 * USDC


def test_two_equal_withdrawals_are_never_in_doubt_at_once(api, alice, sandbox):
    """Equal withdrawals (same address, token, amount) are told apart on chain by nothing Chipi
    records. The first times out (in doubt); the second waits rather than send, so that the first,
    looking itself up, cannot take the second's transfer for its own (which left the second
    re-signing a used nonce for ever: one transfer on chain for two debits)."""
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "timeout")
    first = withdraw(api, alice).json()["withdrawal"]["id"]
    second = withdraw(api, alice).json()["withdrawal"]["id"]

    waiting = Withdrawal.objects.get(pk=second)
    assert (waiting.status, waiting.send_attempted_at) == (WithdrawalStatus.PENDING, None)
    assert "outcome is not known yet" in waiting.last_error
    assert sent_on_chain(first) == 0
    sandbox.inject("send_transfer", "lost_response")  # the first's retry acts, its answer is lost
    assert retry_due(first) == WithdrawalStatus.SENDING
    assert retry_due(second) == WithdrawalStatus.PENDING  # still waiting
    assert retry_due(first) == WithdrawalStatus.SENT  # found its own transfer
    assert retry_due(second) == WithdrawalStatus.SENT

    rows = Withdrawal.objects.filter(pk__in=[first, second])
    assert len({row.tx_hash for row in rows}) == 2
    assert sent_on_chain(first) == 2  # both, to the one address
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert balance_of(alice) == 2 * USDC


def test_definitive_refusal_gives_the_money_back(api, alice, sandbox):
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "reject")

    withdrawal_id = withdraw(api, alice).json()["withdrawal"]["id"]

    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    assert withdrawal.status == WithdrawalStatus.FAILED
    assert "refused" in withdrawal.last_error
    assert balance_of(alice) == 10 * USDC
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert sent_on_chain(withdrawal_id) == 0
    assert services.withdrawal_send(withdrawal_id=withdrawal_id) == WithdrawalStatus.FAILED  # and stays so
    assert balance_of(alice) == 10 * USDC


def test_a_refunds_owner_sees_which_withdrawal_it_gives_back_not_chipis_error(api, alice, sandbox):
    """The refund's metadata showed its owner Chipi's raw error text; staff read it in the
    withdrawal's last_error and the transaction's metadata in the admin."""
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "reject")
    withdrawal_id = withdraw(api, alice).json()["withdrawal"]["id"]

    refund = api(alice).get("/api/v1/wallet/transactions?type=refund").json()["transactions"][0]

    assert (refund["amount"], refund["memo"], refund["metadata"]) == ("4.000000", "", {"withdrawalId": withdrawal_id})
    assert "refused" in LedgerTransaction.objects.get(kind=TransactionKind.REFUND).metadata["reason"]


def test_a_sender_that_died_mid_send_is_taken_over_without_a_double_send(alice, sandbox):
    chain_deposit(alice, 10 * USDC)
    withdrawal = services.withdrawal_request(
        user=alice, asset=services.ledger.asset_get("USDC"), amount=USDC, to_address=ADDRESS
    )
    # A worker claimed the row, marked the send attempted, reached Chipi, then died before it
    # could record anything.
    now, nonce = timezone.now(), services.new_nonce()
    Withdrawal.objects.filter(pk=withdrawal.pk).update(
        status=WithdrawalStatus.SENDING,
        claimed_until=now + timedelta(seconds=60),
        send_attempted_at=now,
        attempts=1,
        nonce=nonce,
    )
    treasury = services.treasury_wallet()
    get_gateway().execute_transfer(
        wallet=services._as_chipi(treasury),
        encrypt_key=keys.unseal(treasury.encrypt_key_sealed),
        token="USDC",
        amount=USDC,
        to_address=ADDRESS,
        nonce=int(nonce, 16),
    )

    assert services.withdrawals_due() == []  # nobody else may take it while the claim holds
    assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.SENDING
    with time_machine.travel(now + timedelta(seconds=61)):
        assert services.withdrawals_due() == [str(withdrawal.pk)]
        assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.SENT
    assert sent_on_chain(withdrawal.pk) == 1
    assert sandbox.custody_balance("USDC") == 9 * USDC


def test_a_withdrawal_signs_the_nonce_chosen_at_its_making_and_a_stale_worker_sends_nothing(alice, sandbox):
    """The nonce is the row's from the start; a worker holding what it read before another sent the
    row finds it attempted since, and sends nothing (the row is the other's)."""
    from wallets.chipi.models import SandboxUsedNonce

    chain_deposit(alice, 10 * USDC)
    withdrawal = services.withdrawal_request(  # its send, queued on commit, not run in this test
        user=alice, asset=services.ledger.asset_get("USDC"), amount=USDC, to_address=ADDRESS
    )
    nonce = Withdrawal.objects.get(pk=withdrawal.pk).nonce
    assert nonce
    stale = Withdrawal.objects.select_related("asset").get(pk=withdrawal.pk)  # as a first worker read it

    assert retry_due(withdrawal.pk) == WithdrawalStatus.SENT  # another worker
    outcome = services._outbox_execute(  # the first wakes up with what it read
        stale,
        source=services.treasury_wallet,
        to_address=ADDRESS,
        token="USDC",
        amount=USDC,
        taken=lambda tx_hash: False,
        twins=Withdrawal.objects.none(),
    )

    assert outcome == services.OutboxOutcome(superseded=True)
    assert sent_on_chain(withdrawal.pk) == 1
    treasury = services.treasury_wallet().address
    assert list(SandboxUsedNonce.objects.filter(address=treasury).values_list("nonce", flat=True)) == [
        hex(int(nonce, 16))
    ]


def test_a_worker_that_stalled_past_its_claim_leaves_the_row_to_the_one_that_took_it_over(alice, sandbox, monkeypatch):
    """The first worker stalls before its first send, past its claim; a second takes the row over and
    sends it (its answer lost: it acted). The first, waking, finds the row attempted since it read
    it and leaves it: signing the row's nonce it was refused as used, and refunded money that had
    left on chain."""
    chain_deposit(alice, 10 * USDC)
    withdrawal = services.withdrawal_request(
        user=alice, asset=services.ledger.asset_get("USDC"), amount=USDC, to_address=ADDRESS
    )
    treasury, stalled = services.treasury_wallet, []

    def stalling():
        if not stalled:
            stalled.append(True)
            sandbox.inject("send_transfer", "lost_response")
            with time_machine.travel(timezone.now() + timedelta(seconds=services.CLAIM_SECONDS + 1)):
                assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.SENDING
        return treasury()

    monkeypatch.setattr(services, "treasury_wallet", stalling)

    assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.SENDING
    assert sent_on_chain(withdrawal.pk) == 1
    assert balance_of(alice) == 9 * USDC
    assert retry_due(withdrawal.pk) == WithdrawalStatus.SENT  # found on chain
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0


def test_a_failed_connection_undoes_only_its_own_attempt(alice, sandbox, monkeypatch):
    """The first worker marks its attempt and stalls in the send, past its claim; a second takes the
    row over and sends it (its answer lost: it acted). The first's send then fails to connect: it
    undoes its own mark only, not the second's, and a later refusal of the used nonce is no
    refusal of a first attempt (which refunded money that had left)."""
    from wallets.chipi import gateway as chipi_gateway
    from wallets.chipi.errors import ChipiUnavailable

    chain_deposit(alice, 10 * USDC)
    withdrawal = services.withdrawal_request(
        user=alice, asset=services.ledger.asset_get("USDC"), amount=USDC, to_address=ADDRESS
    )
    execute, calls = chipi_gateway.ChipiSdkGateway.execute_transfer, []

    def stalling(self, **kwargs):
        calls.append(True)
        if len(calls) == 1:
            sandbox.inject("send_transfer", "lost_response")
            with time_machine.travel(timezone.now() + timedelta(seconds=services.CLAIM_SECONDS + 1)):
                assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.SENDING
            raise ChipiUnavailable("Could not connect to Chipi (in this test)")
        return execute(self, **kwargs)

    monkeypatch.setattr(chipi_gateway.ChipiSdkGateway, "execute_transfer", stalling)
    services.withdrawal_send(withdrawal_id=withdrawal.pk)

    row = Withdrawal.objects.get(pk=withdrawal.pk)
    assert (row.status, row.send_attempted_at is not None) == (WithdrawalStatus.SENDING, True)
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert services.withdrawal_send(withdrawal_id=withdrawal.pk) == WithdrawalStatus.SENT
    assert sent_on_chain(withdrawal.pk) == 1
    assert balance_of(alice) == 9 * USDC


def test_dispatcher_task_sends_what_is_due(alice, sandbox, django_capture_on_commit_callbacks):
    from wallets.tasks import withdrawals_dispatch_task

    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "error")
    with django_capture_on_commit_callbacks(execute=True):
        withdrawal = services.withdrawal_request(
            user=alice, asset=services.ledger.asset_get("USDC"), amount=USDC, to_address=ADDRESS
        )
    assert Withdrawal.objects.get(pk=withdrawal.pk).status != WithdrawalStatus.SENT
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == USDC

    with time_machine.travel(timezone.now() + timedelta(hours=1)):
        assert withdrawals_dispatch_task() == 1

    assert Withdrawal.objects.get(pk=withdrawal.pk).status == WithdrawalStatus.SENT


def test_a_row_whose_send_raises_does_not_hold_the_others_back(
    alice, bob, sandbox, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    """A row that raises (a key that does not unseal, a bug) stopped the dispatcher's loop: due
    first every time, it held every withdrawal behind it. It is logged, and the others go."""
    from wallets.tasks import withdrawals_dispatch_task

    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "error", times=2)
    with django_capture_on_commit_callbacks(execute=True):
        first, second = (
            services.withdrawal_request(
                user=alice, asset=services.ledger.asset_get("USDC"), amount=amount, to_address=ADDRESS
            )
            for amount in (USDC, 2 * USDC)
        )
    send = services.withdrawal_send

    def poisoned(*, withdrawal_id):
        if str(withdrawal_id) == str(first.pk):
            raise RuntimeError("a key that does not unseal (in this test)")
        return send(withdrawal_id=withdrawal_id)

    monkeypatch.setattr(services, "withdrawal_send", poisoned)
    with time_machine.travel(timezone.now() + timedelta(hours=1)):
        assert withdrawals_dispatch_task() == 2

    assert Withdrawal.objects.get(pk=second.pk).status == WithdrawalStatus.SENT
    assert Withdrawal.objects.get(pk=first.pk).status != WithdrawalStatus.SENT
    assert f"The withdrawal {first.pk} could not be sent" in caplog.text


def test_a_sweep_whose_treasury_cannot_be_opened_waits_for_its_retry(alice, sandbox):
    """The treasury wallet is made at Chipi on first use: with Chipi down then, the sweep raised
    out of the dispatcher (and stopped its loop) instead of being tried again later."""
    from wallets.chipi.sandbox import get_sandbox
    from wallets.models import Sweep, SweepStatus
    from wallets.services import ChainDeposit, deposit_credit, sweep_send, wallet_open

    paid = get_sandbox().receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=USDC)
    deposit_credit(user=alice, asset=services.ledger.asset_get("USDC"), deposit=ChainDeposit(paid), source="api")
    sweep = Sweep.objects.get(deposit_tx_hash=paid.tx_hash)
    sandbox.inject("prepare_wallet", "unreachable")

    assert sweep_send(sweep_id=sweep.pk) == SweepStatus.PENDING

    row = Sweep.objects.get(pk=sweep.pk)
    assert "treasury wallet could not be opened" in row.last_error
    assert row.next_attempt_at > timezone.now() and row.claimed_until is None
    with time_machine.travel(timezone.now() + timedelta(hours=1)):
        assert sweep_send(sweep_id=sweep.pk) == SweepStatus.SENT


def test_a_token_staff_deactivated_is_still_shown_and_withdrawn_by_those_who_hold_it(api, alice, bob, sandbox):
    """PayGo does no new business in a deactivated token, but what a user holds in it is theirs: it
    was left out of the balance and refused by the withdrawal (unseen and frozen)."""
    from wallets.models import Asset

    chain_deposit(alice, 10 * USDC, "USDT")
    chain_deposit(alice, 1 * USDC)  # another token's history, which the filter leaves out
    Asset.objects.filter(code="USDT").update(is_active=False)

    alices = {row["token"]: row for row in api(alice).get("/api/v1/wallet/balance").json()["balances"]}
    bobs = [row["token"] for row in api(bob).get("/api/v1/wallet/balance").json()["balances"]]
    refused = api(alice).post(
        "/api/v1/wallet/transfer", {"amount": "1", "token": "USDT", "recipientId": bob.pk}, format="json"
    )
    history = api(alice).get("/api/v1/wallet/transactions?token=USDT")
    withdrawn = withdraw(api, alice, "10", token="usdt")

    assert (alices["USDT"]["active"], alices["USDT"]["balance"], alices["USDC"]["active"]) == (False, "10.000000", True)
    assert "USDT" not in bobs  # he holds none: not listed
    assert refused.status_code == 400  # nothing but leaving
    assert history.status_code == 200 and history.json()["count"] == 1  # its history, filtered
    assert [(row["type"], row["token"], row["amount"]) for row in history.json()["transactions"]] == [
        ("deposit", "USDT", "10.000000")
    ]
    assert withdrawn.status_code == 202, withdrawn.json()
    assert Withdrawal.objects.get().status == WithdrawalStatus.SENT
    assert balance_of(alice, "USDT") == 0


@pytest.mark.parametrize("whose", ["the treasury", "her own deposit address", "another user's deposit address"])
def test_a_withdrawal_to_a_paygo_wallet_is_refused_and_moves_nothing(api, alice, bob, sandbox, whose):
    """To the treasury the transfer went from the treasury to itself: the ledger said the money had
    left, the user lost it and custody no longer matched the chain. To a deposit address it went
    round the chain and came back as a deposit. Paying a PayGo user is a transfer."""
    from wallets.services import treasury_wallet, wallet_open

    chain_deposit(alice, 10 * USDC)
    address = {
        "the treasury": lambda: treasury_wallet().address,
        "her own deposit address": lambda: wallet_open(user=alice),
        "another user's deposit address": lambda: wallet_open(user=bob),
    }[whose]()

    response = withdraw(api, alice, "4", toAddress=address.upper().replace("0X", "0x"))

    assert response.status_code == 400
    assert response.json()["errors"]["toAddress"][0].startswith("This address is a PayGo wallet's")
    assert not Withdrawal.objects.exists()
    assert balance_of(alice) == 10 * USDC


def test_reconciliation_matches_then_reports_a_difference(alice, sandbox):
    chain_deposit(alice, 10 * USDC)
    services.withdrawal_request(user=alice, asset=services.ledger.asset_get("USDC"), amount=USDC, to_address=ADDRESS)

    (usdc, *_rest) = services.reconcile()  # the withdrawal is still in the outbox, not on chain
    assert (usdc.on_chain, usdc.ledger, usdc.difference, usdc.in_flight) == (10 * USDC, 10 * USDC, 0, USDC)

    services.withdrawal_send(withdrawal_id=Withdrawal.objects.get().pk)
    (usdc, *_rest) = services.reconcile()
    assert (usdc.on_chain, usdc.ledger, usdc.difference, usdc.in_flight) == (9 * USDC, 9 * USDC, 0, 0)

    # Someone pays the treasury directly: money on chain the ledger does not know of.
    sandbox.receive_payment(to_address=services.treasury_wallet().address, token="USDC", amount=5)
    (usdc, *_rest) = services.reconcile()
    assert usdc.difference == 5


def test_reconciliation_covers_the_custody_of_a_token_staff_deactivated(alice, sandbox):
    """Only active tokens were reconciled: custody of a deactivated one (what users kept of it, what
    was paid in since) was never compared with the chain, and a difference in it went unseen. It is
    counted as any token's: the treasury's balance, a deposit wallet's not swept yet, money in flight."""
    from wallets.models import Asset

    chain_deposit(alice, 10 * USDC, "USDT")  # swept into the treasury
    Asset.objects.filter(code="USDT").update(is_active=False)
    usdt = Asset.objects.get(code="USDT")
    paid = sandbox.receive_payment(to_address=services.wallet_open(user=alice), token="USDT", amount=2 * USDC)
    services.deposit_credit(user=alice, asset=usdt, deposit=services.ChainDeposit(paid), source="api")  # unswept
    services.withdrawal_request(user=alice, asset=usdt, amount=USDC, to_address=ADDRESS)  # not sent yet

    reports = {report.asset.code: report for report in services.reconcile()}

    assert "USDT" in reports
    report = reports["USDT"]
    assert (report.on_chain, report.ledger, report.difference, report.in_flight) == (12 * USDC, 12 * USDC, 0, USDC)

    # Someone pays the treasury directly: money on chain the ledger does not know of.
    sandbox.receive_payment(to_address=services.treasury_wallet().address, token="USDT", amount=5)
    assert {report.asset.code: report for report in services.reconcile()}["USDT"].difference == 5


def test_reconciliation_counts_the_money_a_sweep_refused_for_good_left_in_its_deposit_wallet(alice, sandbox):
    """A sweep Chipi refused for good leaves its money in the deposit wallet (still custody: staff
    look at it). Reconciliation counted only the wallets of sweeps still to be sent, so that money
    showed as missing from custody, a difference where there was none."""
    from wallets.models import Sweep, SweepStatus
    from wallets.services import ChainDeposit, deposit_credit, sweep_send, wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=3 * USDC)
    deposit_credit(user=alice, asset=services.ledger.asset_get("USDC"), deposit=ChainDeposit(paid), source="api")
    sweep = Sweep.objects.get(deposit_tx_hash=paid.tx_hash)
    sandbox.inject("execute", "reject")
    assert sweep_send(sweep_id=sweep.pk) == SweepStatus.FAILED

    (usdc, *_rest) = services.reconcile()

    assert (usdc.on_chain, usdc.ledger, usdc.difference) == (3 * USDC, 3 * USDC, 0)


def test_withdrawals_are_listed_for_their_owner_only(api, alice, bob, sandbox):
    chain_deposit(alice, 10 * USDC)
    withdrawal_id = withdraw(api, alice).json()["withdrawal"]["id"]

    mine = api(alice).get("/api/v1/wallet/withdrawals").json()
    theirs = api(bob).get("/api/v1/wallet/withdrawals").json()
    outsider = api(bob).get(f"/api/v1/wallet/withdrawals/{withdrawal_id}")

    assert mine["count"] == 1 and mine["withdrawals"][0]["id"] == withdrawal_id
    assert theirs["count"] == 0
    assert outsider.status_code == 404
    assert api(alice).get(f"/api/v1/wallet/withdrawals/{withdrawal_id}").json()["withdrawal"]["status"] == "sent"


def test_withdrawals_made_at_the_same_instant_page_in_one_order(api, alice, sandbox):
    """The list was ordered by created_at alone: rows of one instant (a batch, a clock's resolution)
    came in whatever order PostgreSQL read them, which may differ between the queries of two pages,
    so that one showed twice and another never. Ties are broken by id."""
    chain_deposit(alice, 12 * USDC)
    usdc = services.ledger.asset_get("USDC")
    with time_machine.travel(timezone.now(), tick=False):
        made = [
            services.withdrawal_request(user=alice, asset=usdc, amount=USDC, to_address=ADDRESS).pk for _ in range(12)
        ]
    assert Withdrawal.objects.filter(pk__in=made).values("created_at").distinct().count() == 1

    pages = [api(alice).get("/api/v1/wallet/withdrawals", {"pageSize": 5, "page": page}).json() for page in (1, 2, 3)]

    listed = [item["id"] for page in pages for item in page["withdrawals"]]
    assert listed == [str(pk) for pk in sorted(made, reverse=True)]  # each once, in the order of their ids


@pytest.mark.parametrize(
    ("fault", "on_chain", "waiting"),
    [("unreachable", 0, WithdrawalStatus.PENDING), ("lost_response", 1, WithdrawalStatus.SENDING)],
)
def test_a_deactivated_accounts_withdrawals_wait_until_it_is_active_again(
    api, alice, sandbox, fault, on_chain, waiting
):
    """An account frozen (taken over, say) sends nothing more out, whether its withdrawal was never
    sent (unreachable) or is in doubt (lost_response: sent, the answer lost): it waits, its money in
    flight, and is settled once the account is active again, sent once."""
    from accounts.services import user_deactivate

    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", fault)
    withdrawal_id = withdraw(api, alice).json()["withdrawal"]["id"]
    assert Withdrawal.objects.get(pk=withdrawal_id).status == waiting

    user_deactivate(user=alice)

    assert withdrawal_id not in due_then(withdrawal_id)
    assert retry_due(withdrawal_id) == waiting
    assert sent_on_chain(withdrawal_id) == on_chain
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 4 * USDC

    alice.is_active = True
    alice.save(update_fields=["is_active"])

    assert withdrawal_id in due_then(withdrawal_id)
    assert retry_due(withdrawal_id) == WithdrawalStatus.SENT
    assert sent_on_chain(withdrawal_id) == 1
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0
    assert balance_of(alice) == 6 * USDC


def test_the_minutely_sweep_queries_read_their_partial_indexes_not_every_sweep_kept(alice, sandbox):
    """A sweep per deposit, kept for ever: sweeps_due and sends_confirm (every minute each) read the
    whole table (376 ms and 305 ms at 500k sweeps) for the few pending or unconfirmed ones."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from conftest import plans_of

    with CaptureQueriesContext(connection) as due:
        services.sweeps_due()
    with CaptureQueriesContext(connection) as confirming:
        services.sends_confirm()

    ((_, due_plan),) = plans_of(due, "wallets_sweep")
    ((_, confirm_plan),) = plans_of(confirming, "wallets_sweep")
    assert "wallets_sweep_due" in due_plan, due_plan
    assert "wallets_sweep_unconfirmed" in confirm_plan, confirm_plan
