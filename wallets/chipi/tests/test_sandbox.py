"""ChipiSandbox: wallets, payments, transfers, custody, rates, and every injected fault."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from wallets.chipi import (
    ChainTransaction,
    ChipiGateway,
    ChipiRateLimited,
    ChipiRejected,
    ChipiTimeout,
    ChipiUnavailable,
)
from wallets.chipi.interface import is_chain_hex
from wallets.chipi.models import SandboxCustody, SandboxTransaction, SandboxWallet
from wallets.chipi.sandbox import CUSTODY_ADDRESS, FAULT_RETRY_AFTER, FAULTS, OPERATIONS, ChipiSandbox, get_sandbox

from .conftest import fund

pytestmark = pytest.mark.django_db

ELSEWHERE = "0x" + "ab" * 32  # an address outside PayGo


def test_is_a_gateway(sandbox):
    assert isinstance(sandbox, ChipiGateway)


# --- Wallets ---------------------------------------------------------------------------------------


def test_create_wallet_gives_each_user_a_unique_address(sandbox):
    addresses = {sandbox.create_wallet(external_user_id=f"user-{n}") for n in range(20)}

    assert len(addresses) == 20
    assert all(is_chain_hex(address) and address == address.lower() for address in addresses)
    assert SandboxWallet.objects.count() == 20


def test_create_wallet_again_answers_the_same_address(sandbox):
    first = sandbox.create_wallet(external_user_id="alice")

    assert sandbox.create_wallet(external_user_id="alice") == first
    assert SandboxWallet.objects.count() == 1


@pytest.mark.parametrize("external_user_id", ["", "x" * 256, None, 42])
def test_create_wallet_refuses_a_bad_user_id(sandbox, external_user_id):
    with pytest.raises(ChipiRejected) as caught:
        sandbox.create_wallet(external_user_id=external_user_id)

    assert caught.value.code == "invalid_external_user_id"
    assert not SandboxWallet.objects.exists()


# --- Inbound payments and custody ------------------------------------------------------------------


def test_receive_payment_is_a_confirmed_inbound_transaction_and_grows_custody(sandbox):
    address = sandbox.create_wallet(external_user_id="alice")

    tx = sandbox.receive_payment(to_address=address, token="USDC", amount=12_500_000, from_address=ELSEWHERE)

    assert tx == ChainTransaction(
        tx_hash=tx.tx_hash,
        status="confirmed",
        token="USDC",
        amount=12_500_000,
        from_address=ELSEWHERE,
        to_address=address,
        reference="",
    )
    assert is_chain_hex(tx.tx_hash)
    assert sandbox.custody_balance("USDC") == 12_500_000
    assert sandbox.get_transaction(tx.tx_hash) == tx


def test_receive_payment_without_a_payer_invents_one(sandbox):
    address = sandbox.create_wallet(external_user_id="alice")

    tx = sandbox.receive_payment(to_address=address, token="STRK", amount=1)

    assert is_chain_hex(tx.from_address)
    assert tx.from_address != address


def test_receive_payment_only_into_our_deposit_addresses(sandbox):
    with pytest.raises(ChipiRejected) as caught:
        sandbox.receive_payment(to_address=ELSEWHERE, token="USDC", amount=1)

    assert caught.value.code == "unknown_address"
    assert sandbox.custody_balance("USDC") == 0


def test_custody_is_kept_per_token_and_holds_18_decimal_amounts(sandbox):
    address = sandbox.create_wallet(external_user_id="alice")
    fifty_eth = 50 * 10**18  # beyond a BIGINT

    sandbox.receive_payment(to_address=address, token="ETH", amount=fifty_eth)
    sandbox.receive_payment(to_address=address, token="ETH", amount=1)
    sandbox.receive_payment(to_address=address, token="USDT", amount=7)

    assert sandbox.custody_balance("ETH") == fifty_eth + 1
    assert sandbox.custody_balance("USDT") == 7
    assert sandbox.custody_balance("USDC") == 0
    assert sandbox.custody_balance("STRK") == 0


@pytest.mark.parametrize("token", ["usdc", "BTC", "", None])
def test_custody_balance_of_an_unknown_token_is_rejected(sandbox, token):
    with pytest.raises(ChipiRejected) as caught:
        sandbox.custody_balance(token)

    assert caught.value.code == "unknown_token"


# --- Outbound transfers ----------------------------------------------------------------------------


def test_send_transfer_moves_custody_and_is_found_by_reference(sandbox):
    fund(sandbox, "USDC", 10_000_000)

    tx = sandbox.send_transfer(reference="wd-1", token="USDC", amount=4_000_000, to_address=ELSEWHERE)

    assert tx.status == "confirmed"
    assert (tx.token, tx.amount, tx.to_address, tx.reference) == ("USDC", 4_000_000, ELSEWHERE, "wd-1")
    assert tx.from_address == CUSTODY_ADDRESS
    assert sandbox.custody_balance("USDC") == 6_000_000
    assert sandbox.find_transfer("wd-1") == tx
    assert sandbox.get_transaction(tx.tx_hash) == tx


def test_send_transfer_may_spend_custody_to_the_last_unit(sandbox):
    fund(sandbox, "ETH", 10**18)

    sandbox.send_transfer(reference="wd-1", token="ETH", amount=10**18, to_address=ELSEWHERE)

    assert sandbox.custody_balance("ETH") == 0


def test_send_transfer_normalises_the_address_case(sandbox):
    fund(sandbox, "USDC", 5)

    tx = sandbox.send_transfer(
        reference="wd-1", token="USDC", amount=5, to_address=ELSEWHERE.upper().replace("0X", "0x")
    )

    assert tx.to_address == ELSEWHERE


def test_the_same_reference_sent_twice_really_sends_twice(sandbox):
    """Chipi has no idempotency: deduplication is the caller's job, with find_transfer."""
    fund(sandbox, "USDC", 10)

    first = sandbox.send_transfer(reference="wd-1", token="USDC", amount=3, to_address=ELSEWHERE)
    second = sandbox.send_transfer(reference="wd-1", token="USDC", amount=3, to_address=ELSEWHERE)

    assert first.tx_hash != second.tx_hash
    assert sandbox.custody_balance("USDC") == 4
    assert SandboxTransaction.objects.filter(reference="wd-1").count() == 2
    assert sandbox.find_transfer("wd-1") == first


def test_send_transfer_refuses_more_than_custody_holds(sandbox):
    fund(sandbox, "USDC", 10)
    fund(sandbox, "USDT", 1_000, user="other")

    with pytest.raises(ChipiRejected) as caught:
        sandbox.send_transfer(reference="wd-1", token="USDC", amount=11, to_address=ELSEWHERE)

    assert caught.value.code == "insufficient_custody"
    assert caught.value.status == 422
    assert sandbox.custody_balance("USDC") == 10
    assert sandbox.find_transfer("wd-1") is None


def test_send_transfer_refuses_a_token_custody_never_held(sandbox):
    with pytest.raises(ChipiRejected) as caught:
        sandbox.send_transfer(reference="wd-1", token="STRK", amount=1, to_address=ELSEWHERE)

    assert caught.value.code == "insufficient_custody"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"to_address": "0x1234"}, "invalid_address"),
        ({"to_address": "0x" + "g" * 64}, "invalid_address"),
        ({"to_address": "ab" * 32}, "invalid_address"),
        ({"to_address": ""}, "invalid_address"),
        ({"token": "BTC"}, "unknown_token"),
        ({"token": "usdc"}, "unknown_token"),
        ({"amount": 0}, "invalid_amount"),
        ({"amount": -5}, "invalid_amount"),
        ({"amount": True}, "invalid_amount"),
        ({"amount": 1.5}, "invalid_amount"),
        ({"amount": Decimal("1")}, "invalid_amount"),
        ({"amount": "5"}, "invalid_amount"),
        ({"amount": 10**38}, "invalid_amount"),
        ({"reference": ""}, "invalid_reference"),
        ({"reference": "r" * 129}, "invalid_reference"),
    ],
)
def test_send_transfer_rejects_bad_input_and_moves_nothing(sandbox, changes, code):
    fund(sandbox, "USDC", 100)
    arguments = {"reference": "wd-1", "token": "USDC", "amount": 5, "to_address": ELSEWHERE, **changes}

    with pytest.raises(ChipiRejected) as caught:
        sandbox.send_transfer(**arguments)

    assert caught.value.code == code
    assert caught.value.status == 400
    assert sandbox.custody_balance("USDC") == 100
    assert not SandboxTransaction.objects.filter(direction="outbound").exists()


def test_a_transfer_to_our_own_deposit_address_keeps_custody(sandbox):
    fund(sandbox, "USDC", 100)
    bobs_address = sandbox.create_wallet(external_user_id="bob")

    tx = sandbox.send_transfer(reference="wd-1", token="USDC", amount=30, to_address=bobs_address)

    assert tx.to_address == bobs_address
    assert sandbox.custody_balance("USDC") == 100


def test_custody_is_inbound_minus_outbound(sandbox):
    address = fund(sandbox, "USDT", 500)
    sandbox.receive_payment(to_address=address, token="USDT", amount=250)
    for n in range(3):
        sandbox.send_transfer(reference=f"wd-{n}", token="USDT", amount=100, to_address=ELSEWHERE)

    assert sandbox.custody_balance("USDT") == 500 + 250 - 3 * 100


# --- Lookups ---------------------------------------------------------------------------------------


def test_get_transaction_of_an_unknown_hash_is_none(sandbox):
    assert sandbox.get_transaction("0x" + "0" * 64) is None


def test_get_transaction_accepts_either_case(sandbox):
    address = sandbox.create_wallet(external_user_id="alice")
    tx = sandbox.receive_payment(to_address=address, token="USDC", amount=1)

    assert sandbox.get_transaction(tx.tx_hash.upper().replace("0X", "0x")) == tx


@pytest.mark.parametrize("tx_hash", ["", "0x12", "not-a-hash", "0x" + "z" * 64, None])
def test_get_transaction_of_a_malformed_hash_is_rejected(sandbox, tx_hash):
    with pytest.raises(ChipiRejected) as caught:
        sandbox.get_transaction(tx_hash)

    assert caught.value.code == "invalid_tx_hash"


def test_find_transfer_of_an_unknown_reference_is_none(sandbox):
    assert sandbox.find_transfer("never-sent") is None


def test_find_transfer_never_answers_an_inbound_payment(sandbox):
    fund(sandbox, "USDC", 10)

    with pytest.raises(ChipiRejected):
        sandbox.find_transfer("")
    assert sandbox.find_transfer(" ") is None


# --- Rates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_token", "to_token", "rate"),
    [
        ("USDC", "USDC", Decimal("1")),
        ("USDT", "USDC", Decimal("0.9998")),
        ("ETH", "USDC", Decimal("3000")),
        ("STRK", "USDC", Decimal("0.5")),
        ("ETH", "STRK", Decimal("6000")),
    ],
)
def test_sandbox_rates(sandbox, from_token, to_token, rate):
    assert sandbox.get_rate(from_token, to_token) == rate


@pytest.mark.parametrize("from_token", ["USDC", "USDT", "ETH", "STRK"])
@pytest.mark.parametrize("to_token", ["USDC", "USDT", "ETH", "STRK"])
def test_a_rate_and_its_inverse_agree(sandbox, from_token, to_token):
    rate = sandbox.get_rate(from_token, to_token)
    inverse = sandbox.get_rate(to_token, from_token)

    assert isinstance(rate, Decimal)
    assert rate > 0
    assert abs(rate * inverse - 1) < Decimal("1e-24")


def test_usdc_and_usdt_are_about_one_to_one(sandbox):
    assert Decimal("0.999") < sandbox.get_rate("USDC", "USDT") < Decimal("1.001")


def test_a_rate_of_an_unknown_token_is_rejected(sandbox):
    with pytest.raises(ChipiRejected) as caught:
        sandbox.get_rate("USDC", "DOGE")

    assert caught.value.code == "unknown_token"


# --- Faults ----------------------------------------------------------------------------------------


@pytest.fixture
def calls(sandbox):
    """A valid call of each operation, after funding custody and making a transaction to look up."""
    address = fund(sandbox, "USDC", 1_000)
    inbound = sandbox.get_transaction(SandboxTransaction.objects.get(to_address=address).tx_hash)
    return {
        "create_wallet": lambda: sandbox.create_wallet(external_user_id="carol"),
        "get_transaction": lambda: sandbox.get_transaction(inbound.tx_hash),
        "find_transfer": lambda: sandbox.find_transfer("wd-1"),
        "send_transfer": lambda: sandbox.send_transfer(reference="wd-1", token="USDC", amount=10, to_address=ELSEWHERE),
        "custody_balance": lambda: sandbox.custody_balance("USDC"),
        "get_rate": lambda: sandbox.get_rate("ETH", "USDC"),
    }


def chain_state() -> tuple:
    return (
        list(SandboxWallet.objects.order_by("pk").values_list("address", flat=True)),
        list(SandboxTransaction.objects.order_by("pk").values_list("tx_hash", flat=True)),
        list(SandboxCustody.objects.order_by("pk").values_list("token", "balance")),
    )


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("timeout", ChipiTimeout),
        ("error", ChipiUnavailable),
        ("rate_limited", ChipiRateLimited),
        ("reject", ChipiRejected),
    ],
)
def test_a_fault_before_acting_raises_and_changes_nothing(sandbox, calls, operation, fault, error):
    before = chain_state()
    sandbox.inject(operation, fault)

    with pytest.raises(error):
        calls[operation]()

    assert chain_state() == before
    assert sandbox.pending_faults(operation) == []


def test_rate_limited_fault_says_when_to_retry(sandbox, calls):
    sandbox.inject("get_rate", "rate_limited")

    with pytest.raises(ChipiRateLimited) as caught:
        calls["get_rate"]()

    assert caught.value.retry_after == FAULT_RETRY_AFTER
    assert caught.value.status == 429


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_lost_response_acts_then_times_out(sandbox, calls, operation):
    sandbox.inject(operation, "lost_response")

    with pytest.raises(ChipiTimeout):
        calls[operation]()

    calls[operation]()  # the fault is spent: the next call goes through
    assert sandbox.pending_faults(operation) == []


def test_lost_response_on_send_transfer_sent_it_and_find_transfer_knows(sandbox, calls):
    sandbox.inject("send_transfer", "lost_response")

    with pytest.raises(ChipiTimeout):
        calls["send_transfer"]()

    assert sandbox.custody_balance("USDC") == 990
    found = sandbox.find_transfer("wd-1")
    assert (found.amount, found.to_address, found.status) == (10, ELSEWHERE, "confirmed")


def test_lost_response_on_create_wallet_made_the_wallet_and_asking_again_finds_it(sandbox):
    sandbox.inject("create_wallet", "lost_response")

    with pytest.raises(ChipiTimeout):
        sandbox.create_wallet(external_user_id="carol")

    address = SandboxWallet.objects.get(external_user_id="carol").address
    assert sandbox.create_wallet(external_user_id="carol") == address


def test_faults_are_consumed_in_order_then_calls_succeed(sandbox, calls):
    sandbox.inject("custody_balance", "timeout", times=2)
    sandbox.inject("custody_balance", "rate_limited")
    sandbox.inject("custody_balance", "reject")

    with pytest.raises(ChipiTimeout):
        calls["custody_balance"]()
    with pytest.raises(ChipiTimeout):
        calls["custody_balance"]()
    with pytest.raises(ChipiRateLimited):
        calls["custody_balance"]()
    with pytest.raises(ChipiRejected):
        calls["custody_balance"]()
    assert calls["custody_balance"]() == 1_000


def test_a_fault_only_hits_its_own_operation(sandbox, calls):
    sandbox.inject("send_transfer", "error")

    assert calls["custody_balance"]() == 1_000
    assert sandbox.pending_faults("send_transfer") == ["error"]


def test_reset_clears_faults_but_keeps_the_chain(sandbox, calls):
    sandbox.inject("get_rate", "timeout", times=3)
    sandbox.inject("send_transfer", "lost_response")

    sandbox.reset()

    assert all(sandbox.pending_faults(operation) == [] for operation in OPERATIONS)
    assert calls["get_rate"]() == Decimal("3000")
    assert sandbox.custody_balance("USDC") == 1_000


def test_reset_chain_wipes_the_chain(sandbox, calls):
    calls["send_transfer"]()

    sandbox.reset(chain=True)

    assert chain_state() == ([], [], [])
    assert sandbox.custody_balance("USDC") == 0


@pytest.mark.parametrize(
    ("operation", "fault", "times"),
    [("withdraw", "timeout", 1), ("send_transfer", "explode", 1), ("send_transfer", "timeout", 0)],
)
def test_inject_refuses_what_it_cannot_do(sandbox, operation, fault, times):
    with pytest.raises(ValueError):
        sandbox.inject(operation, fault, times)


def test_fault_names_are_the_documented_ones():
    assert FAULTS == ("timeout", "error", "rate_limited", "reject", "lost_response")


# --- One chain for the whole process and across restarts -------------------------------------------


def test_the_chain_is_in_the_database_and_faults_are_per_instance(sandbox):
    address = fund(sandbox, "USDC", 42)
    sandbox.inject("custody_balance", "error")

    restarted = ChipiSandbox()

    assert restarted.custody_balance("USDC") == 42
    assert restarted.create_wallet(external_user_id="funder") == address
    assert sandbox.pending_faults("custody_balance") == ["error"]


def test_get_sandbox_is_one_per_process():
    assert get_sandbox() is get_sandbox()


def test_the_chain_refuses_to_change_inside_a_callers_transaction(sandbox):
    """A real chain does not roll back with our database; calling Chipi in a transaction is a bug."""
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        sandbox.create_wallet(external_user_id="alice")

    assert not SandboxWallet.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_transfers_never_overdraw_custody():
    sandbox = ChipiSandbox()
    fund(sandbox, "USDC", 100)
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def withdraw(n: int) -> None:
        try:
            start.wait()
            sandbox.send_transfer(reference=f"wd-{n}", token="USDC", amount=30, to_address=ELSEWHERE)
            outcomes.append("sent")
        except ChipiRejected as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=withdraw, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["insufficient_custody"] * 5 + ["sent"] * 3
    assert sandbox.custody_balance("USDC") == 10
    assert SandboxTransaction.objects.filter(direction="outbound").count() == 3
