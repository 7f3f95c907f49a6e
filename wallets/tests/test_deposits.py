"""Deposits: verified with Chipi, credited once per transfer, by API or signed webhook (one
transaction paying several: test_multicall_deposits)."""

from __future__ import annotations

import json

import pytest

from wallets.chipi import sign_webhook
from wallets.models import LedgerTransaction, TransactionKind
from wallets.tests.conftest import balance_of

pytestmark = pytest.mark.django_db

USDC = 1_000_000


def deposit(client, **body):
    return client.post("/api/v1/wallet/deposit", body, format="json")


def test_sandbox_deposit_without_hash_is_simulated_and_credited(api, alice, sandbox):
    response = deposit(api(alice), amount="12.5")

    assert response.status_code == 201
    body = response.json()
    assert body["balance"] == "12.500000"
    assert body["txHash"].startswith("0x")
    assert balance_of(alice) == 12_500_000
    assert sandbox.custody_balance("USDC") == 12_500_000


def test_deposit_of_a_real_chain_payment_credits_once_whoever_asks(api, alice, bob, sandbox):
    from wallets.services import wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=3 * USDC)

    first = deposit(api(alice), amount=3, txHash=paid.tx_hash)
    again = deposit(api(alice), amount=3, txHash=paid.tx_hash)
    thief = deposit(api(bob), amount=3, txHash=paid.tx_hash)

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["message"] == "This deposit was already credited."
    assert thief.status_code == 400, thief.json()
    assert thief.json()["errors"] == {"txHash": ["Chipi has no such transaction for your deposit address."]}
    assert balance_of(alice) == 3 * USDC
    assert balance_of(bob) == 0
    assert LedgerTransaction.objects.filter(kind=TransactionKind.DEPOSIT).count() == 1


def test_deposit_with_wrong_amount_or_token_is_refused(api, alice, sandbox):
    from wallets.services import wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=3 * USDC)

    wrong_amount = deposit(api(alice), amount=30, txHash=paid.tx_hash)
    wrong_token = deposit(api(alice), amount=3, token="USDT", txHash=paid.tx_hash)
    unknown = deposit(api(alice), amount=3, txHash="0x0" + "1" * 63)

    assert wrong_amount.status_code == wrong_token.status_code == unknown.status_code == 400
    assert wrong_amount.json()["errors"]["amount"] == ["The transaction paid 3.000000 USDC."]
    assert balance_of(alice) == 0


@pytest.mark.parametrize("amount", ["0", "-5", "NaN", "1.0000001", "abc"])
def test_deposit_bad_amounts(api, alice, sandbox, amount):
    response = deposit(api(alice), amount=amount)

    assert response.status_code == 400
    assert balance_of(alice) == 0
    assert sandbox.custody_balance("USDC") == 0


def test_deposit_replay_with_idempotency_key_pays_once(api, alice, sandbox):
    client = api(alice)

    first = client.post("/api/v1/wallet/deposit", {"amount": 2}, format="json", HTTP_IDEMPOTENCY_KEY="dep-1")
    second = client.post("/api/v1/wallet/deposit", {"amount": 2}, format="json", HTTP_IDEMPOTENCY_KEY="dep-1")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert balance_of(alice) == 2 * USDC
    assert sandbox.custody_balance("USDC") == 2 * USDC


def test_chipi_unreachable_is_a_clean_error_and_moves_nothing(api, alice, sandbox):
    from wallets.services import wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=USDC)
    sandbox.inject("get_transaction", "error")

    response = deposit(api(alice), amount=1, txHash=paid.tx_hash)

    assert response.status_code == 503
    assert response.json()["code"] == "upstream_unavailable"
    assert balance_of(alice) == 0


# --- Webhook --------------------------------------------------------------------------------------


def webhook(anon, payload: dict, signature: str | None = "sign"):
    raw = json.dumps(payload).encode()
    headers = {}
    if signature == "sign":
        headers["HTTP_CHIPI_SIGNATURE"] = sign_webhook(raw)
    elif signature is not None:
        headers["HTTP_CHIPI_SIGNATURE"] = signature
    return anon.post("/api/v1/wallet/webhooks/chipi", data=raw, content_type="application/json", **headers)


def payment_event(to_address: str, tx_hash: str, amount: str = "2.00") -> dict:
    """Chipi's `payment.completed` as its documentation shows it: flat, the amount in whole tokens."""
    return {
        "event": "payment.completed",
        "txHash": tx_hash,
        "amount": amount,
        "token": "USDC",
        "sender": "0x" + "5" * 63,
        "recipient": to_address,
        "timestamp": "2026-12-06T10:30:00Z",
        "status": "COMPLETED",
    }


def test_signed_webhook_credits_once_per_hash(anon, alice, sandbox):
    from wallets.services import wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=2 * USDC)
    event = payment_event(alice.wallet_address, paid.tx_hash)

    first = webhook(anon, event)
    duplicate = webhook(anon, event)

    assert first.status_code == duplicate.status_code == 200
    assert first.json() == {"received": True, "handled": True, "credited": True}
    assert duplicate.json()["credited"] is False
    assert balance_of(alice) == 2 * USDC


@pytest.mark.parametrize("signature", [None, "", "00" * 32, "not-hex", "sign-then-tamper"])
def test_bad_signature_is_401_and_changes_nothing(anon, alice, sandbox, signature):
    from wallets.services import wallet_open

    event = payment_event(wallet_open(user=alice), "0x" + "2" * 64)
    if signature == "sign-then-tamper":
        signature = sign_webhook(json.dumps(payment_event(alice.wallet_address, "0x" + "3" * 64)).encode())

    response = webhook(anon, event, signature=signature)

    assert response.status_code == 401
    assert response.json()["statusCode"] == 401
    assert balance_of(alice) == 0


def test_webhook_for_an_unknown_address_is_acknowledged_and_ignored(anon, sandbox):
    response = webhook(anon, payment_event("0x0" + "6" * 63, "0x0" + "4" * 63))

    assert response.status_code == 200
    assert response.json()["handled"] is False
    assert LedgerTransaction.objects.filter(kind=TransactionKind.DEPOSIT).count() == 0


@pytest.mark.parametrize(
    "event",
    [
        {"event": "wallet.created"},
        {"event": "payment.failed", "txHash": "0x" + "1" * 63, "status": "FAILED"},
        {"event": "payment.completed", "txHash": "0x" + "1" * 63, "status": "PENDING"},
    ],
)
def test_webhook_other_events_are_acknowledged(anon, event):
    response = webhook(anon, event)

    assert response.status_code == 200
    assert response.json()["handled"] is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "1" * 41),  # past any amount
        ("amount", 10**40),
        ("amount", str(10**31)),  # fits the column, but no real payment
        ("amount", str(10**12)),  # a trillion USDC: one past the largest amount the API takes
        ("amount", "0"),
        ("amount", "-5"),
        ("amount", "2.0000001"),  # finer than USDC's unit
        ("amount", "2e6"),
        ("amount", 2e6),
        ("amount", True),
        ("amount", {"value": 2}),
        ("txHash", ""),
        ("txHash", {"hash": "0x1"}),
        ("txHash", "0x" + "a" * 199),
        ("txHash", "0x12\u0000"),
        ("txHash", "not-a-hash"),
        ("recipient", "0x12\u0000"),
        ("recipient", ""),
        ("recipient", "0x" + "f" * 64),  # past the field
        ("token", "USDC\u0000"),
        ("token", ["USDC"]),
    ],
)
def test_signed_webhook_with_bad_fields_is_400_and_credits_nothing(anon, alice, sandbox, field, value):
    from wallets.services import wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=2 * USDC)
    event = payment_event(alice.wallet_address, paid.tx_hash)
    event[field] = value

    response = webhook(anon, event)

    assert response.status_code == 400
    body = response.json()
    # A well-formed amount that is not the payment's is refused by the rule it breaks.
    assert (body["statusCode"], body["code"]) == (400, "wrong_amount" if value == 2e6 else "invalid")
    assert list(body["errors"]) == [field]
    assert LedgerTransaction.objects.filter(kind=TransactionKind.DEPOSIT).count() == 0
    assert balance_of(alice) == 0


@pytest.mark.parametrize("data", [{}, {"txHash": "0x" + "1" * 63}, {"txHash": "0x" + "1" * 63, "amount": "1"}])
def test_signed_webhook_without_its_fields_is_400_and_credits_nothing(anon, alice, data):
    response = webhook(anon, {"event": "payment.completed", **data})

    assert response.status_code == 400
    assert response.json()["statusCode"] == 400
    assert LedgerTransaction.objects.filter(kind=TransactionKind.DEPOSIT).count() == 0


def test_signed_webhook_takes_the_largest_amount_and_a_number(anon, alice, sandbox):
    from wallets.services import wallet_open

    largest = 10**12 * USDC - 1
    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=largest)
    event = payment_event(alice.wallet_address.upper().replace("0X", "0x"), paid.tx_hash.upper().replace("0X", "0x"))
    event["amount"] = "999999999999.999999"

    response = webhook(anon, event)

    assert response.status_code == 200
    assert response.json()["credited"] is True
    assert balance_of(alice) == largest


@pytest.mark.django_db
def test_one_transaction_written_two_ways_is_credited_once(alice):
    from wallets import ledger
    from wallets.services import ChainDeposit, deposit_credit

    usdc = ledger.asset_get("USDC")
    padded = "0x" + "0" * 61 + "abc"

    def credit(tx_hash):
        deposit = ChainDeposit.ledger_only(tx_hash=tx_hash, token="USDC", amount=USDC)
        return deposit_credit(user=alice, asset=usdc, deposit=deposit, source="test")

    first = credit(padded)
    again = credit("0xABC")

    assert (first.created, again.created) == (True, False)
    assert again.transaction.pk == first.transaction.pk
    assert balance_of(alice) == USDC


# --- The transaction hash: a Starknet felt, refused as a 400 naming it, never an outage ----------

STARKNET_PRIME = 2**251 + 17 * 2**192 + 1


@pytest.mark.parametrize(
    "tx_hash",
    [
        "0x0",
        "0x" + "0" * 64,
        f"0x{STARKNET_PRIME:064x}",  # not a field element
        "0x" + "f" * 64,
        "0x" + "1" * 65,
        "0x",
        "0xg1",
        "1234",
        "0X" + "1" * 64,
    ],
)
def test_a_malformed_hash_is_400_naming_it_and_never_reaches_chipi(api, alice, sandbox, tx_hash):
    sandbox.inject("transaction_list", "error")  # were Chipi asked, this would be the 503

    response = deposit(api(alice), amount=1, txHash=tx_hash)

    assert response.status_code == 400, response.json()
    assert list(response.json()["errors"]) == ["txHash"]
    assert sandbox.pending_faults("transaction_list") == ["error"]
    assert balance_of(alice) == 0


def test_a_hash_written_without_its_leading_zeros_is_the_same_transaction(api, alice, sandbox):
    from wallets.services import wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=3 * USDC)
    assert paid.tx_hash.startswith("0x0")  # a felt is below 2**252: 64 hex digits start with a zero
    short = "0x" + paid.tx_hash[2:].lstrip("0").upper()

    first = deposit(api(alice), amount=3, txHash=short)
    again = deposit(api(alice), amount=3, txHash=paid.tx_hash)

    assert first.status_code == 201, first.json()
    assert first.json()["txHash"] == paid.tx_hash
    assert again.status_code == 200
    assert balance_of(alice) == 3 * USDC
    assert LedgerTransaction.objects.get(kind=TransactionKind.DEPOSIT).metadata["txHash"] == paid.tx_hash


def test_a_webhook_hash_without_its_leading_zeros_is_credited_once(anon, api, alice, sandbox):
    from wallets.services import wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=2 * USDC)
    short = "0x" + paid.tx_hash[2:].lstrip("0")

    assert webhook(anon, payment_event(alice.wallet_address, short)).json()["credited"] is True
    assert deposit(api(alice), amount=2, txHash=paid.tx_hash).status_code == 200
    assert balance_of(alice) == 2 * USDC


def test_chipi_refusing_the_lookup_is_503_not_the_clients_fault(api, alice, sandbox):
    # The hash is not sent to Chipi (deposits are found in the wallet's transaction-list), so a 400
    # from Chipi refuses PayGo's request, not the client's input.
    sandbox.inject("transaction_list", "reject")

    response = deposit(api(alice), amount=1, txHash="0x0" + "1" * 63)

    assert response.status_code == 503
    assert response.json()["code"] == "upstream_unavailable"
    assert balance_of(alice) == 0


def test_a_hash_chipi_has_no_record_of_is_400_naming_it(api, alice, sandbox):
    response = deposit(api(alice), amount=1, txHash="0x0" + "1" * 63)

    assert response.status_code == 400
    assert response.json()["errors"]["txHash"] == ["Chipi has no such transaction for your deposit address."]
    assert balance_of(alice) == 0


# --- Verified against Chipi's records; polled so that a lost webhook loses nothing -----------------


def test_a_signed_webhook_for_a_payment_chipi_has_no_record_of_credits_nothing(anon, alice, sandbox):
    from wallets.services import wallet_open

    response = webhook(anon, payment_event(wallet_open(user=alice), "0x0" + "7" * 63))

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["txHash"]
    assert balance_of(alice) == 0


def test_a_signed_webhook_claiming_more_than_was_paid_credits_nothing(anon, alice, sandbox):
    from wallets.services import wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=2 * USDC)

    response = webhook(anon, payment_event(alice.wallet_address, paid.tx_hash, amount="20.00"))

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["amount"]
    assert balance_of(alice) == 0


def test_a_webhook_that_cannot_be_verified_is_503_so_chipi_sends_it_again(anon, alice, sandbox):
    from wallets.services import wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=2 * USDC)
    sandbox.inject("transaction_list", "error")

    response = webhook(anon, payment_event(alice.wallet_address, paid.tx_hash))

    assert response.status_code == 503
    assert balance_of(alice) == 0


def test_bridged_usdc_paid_in_is_not_native_usdc(api, alice, sandbox):
    from wallets.services import wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC.e", amount=3 * USDC)

    response = deposit(api(alice), amount=3, txHash=paid.tx_hash)

    assert response.status_code == 400
    assert response.json()["errors"]["token"] == ["The transaction moved USDC.e, not USDC."]
    assert balance_of(alice) == 0


def test_polling_credits_what_no_webhook_reported_once(alice, bob, sandbox):
    from wallets.services import deposits_poll, wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=3 * USDC)
    sandbox.receive_payment(to_address=wallet_open(user=bob), token="STRK", amount=5 * 10**18)
    sandbox.receive_payment(to_address=alice.wallet_address, token="USDC.e", amount=1)  # not a PayGo asset

    assert deposits_poll() == 2
    assert deposits_poll() == 0  # already credited

    assert balance_of(alice) == 3 * USDC
    assert balance_of(bob, "STRK") == 5 * 10**18
    deposit_tx = LedgerTransaction.objects.get(kind=TransactionKind.DEPOSIT, metadata__txHash=paid.tx_hash)
    assert deposit_tx.metadata["source"] == "poll"


def test_polling_stops_while_chipi_is_down_and_credits_later(alice, sandbox):
    from wallets.services import deposits_poll, wallet_open

    sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=USDC)
    sandbox.inject("transaction_list", "error")

    assert deposits_poll() == 0
    assert deposits_poll() == 1
    assert balance_of(alice) == USDC


# --- A token staff deactivated: no new business in it, but money that arrived is the payer's -------

USDT = 1_000_000
STRK = 10**18


def deactivate(code: str) -> None:
    from wallets.models import Asset

    Asset.objects.filter(code=code).update(is_active=False)


def swept_into_the_treasury(tx_hash: str):
    from wallets.models import Sweep

    return Sweep.objects.select_related("asset").get(deposit_tx_hash=tx_hash)


def test_a_webhook_for_a_payment_in_a_token_staff_deactivated_credits_it_as_any_deposit(anon, alice, sandbox):
    """Staff deactivating a token stops no one paying it on chain: the payment sat in PayGo's custody
    and the webhook ignored it ("unknown token"), so the user never got it. It is credited, notified
    and swept into the treasury as a deposit of an active token is."""
    from notifications.models import Notification
    from wallets.services import treasury_wallet, wallet_open

    deactivate("USDT")
    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDT", amount=2 * USDT)

    response = webhook(anon, {**payment_event(alice.wallet_address, paid.tx_hash), "token": "USDT"})

    assert response.status_code == 200
    assert response.json() == {"received": True, "handled": True, "credited": True}
    assert balance_of(alice, "USDT") == 2 * USDT
    deposit_tx = LedgerTransaction.objects.get(kind=TransactionKind.DEPOSIT)
    assert (deposit_tx.metadata["source"], deposit_tx.metadata["token"]) == ("webhook", "USDT")
    notice = Notification.objects.get(user=alice, title="Deposit credited")
    assert notice.message == "2.000000 USDT arrived in your wallet."
    sweep = swept_into_the_treasury(paid.tx_hash)
    assert (sweep.asset.code, sweep.amount, sweep.status) == ("USDT", 2 * USDT, "sent")
    assert sandbox.balance(treasury_wallet().address, "USDT") == 2 * USDT


def test_a_webhook_for_a_token_paygo_has_no_asset_for_is_acknowledged_logged_and_credits_nothing(
    anon, alice, sandbox, caplog
):
    from wallets.services import wallet_open

    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC.e", amount=2 * USDC)

    response = webhook(anon, {**payment_event(alice.wallet_address, paid.tx_hash), "token": "USDC_E"})

    assert response.status_code == 200
    assert response.json()["handled"] is False
    assert "unknown address or token" in caplog.text
    assert not LedgerTransaction.objects.filter(kind=TransactionKind.DEPOSIT).exists()


def test_polling_credits_a_payment_in_a_token_staff_deactivated(
    alice, sandbox, caplog, django_capture_on_commit_callbacks
):
    """The poller, which is there so that a lost webhook loses nothing, skipped it too (as a token PayGo
    does not hold): found, credited once and swept. A token PayGo has no asset for stays uncredited."""
    from wallets.services import deposits_poll, wallet_open

    deactivate("STRK")
    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="STRK", amount=5 * STRK)
    sandbox.receive_payment(to_address=alice.wallet_address, token="USDC.e", amount=1)  # not a PayGo asset

    with django_capture_on_commit_callbacks(execute=True):
        assert deposits_poll() == 1
    assert deposits_poll() == 0  # already credited

    assert balance_of(alice, "STRK") == 5 * STRK
    deposit_tx = LedgerTransaction.objects.get(kind=TransactionKind.DEPOSIT)
    assert (deposit_tx.metadata["txHash"], deposit_tx.metadata["source"]) == (paid.tx_hash, "poll")
    assert swept_into_the_treasury(paid.tx_hash).status == "sent"
    assert "of 1 USDC.e not credited by polling" in caplog.text


def test_a_reported_payment_in_a_token_staff_deactivated_is_verified_and_credited(api, alice, sandbox):
    """The client's report of the hash was a 400 "Unknown token": the payment is verified against
    Chipi's records as any deposit (a wrong amount is still refused), then credited and swept."""
    from wallets.services import wallet_open

    deactivate("USDT")
    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDT", amount=3 * USDT)

    wrong_amount = deposit(api(alice), amount=30, token="USDT", txHash=paid.tx_hash)
    wrong_token = deposit(api(alice), amount=3, token="USDC", txHash=paid.tx_hash)
    first = deposit(api(alice), amount=3, token="usdt", txHash=paid.tx_hash)
    again = deposit(api(alice), amount=3, token="USDT", txHash=paid.tx_hash)

    assert wrong_amount.status_code == 400
    assert wrong_amount.json()["errors"]["amount"] == ["The transaction paid 3.000000 USDT."]
    assert wrong_token.status_code == 400
    assert wrong_token.json()["errors"]["token"] == ["The transaction moved USDT, not USDC."]
    assert first.status_code == 201, first.json()
    assert (first.json()["token"], first.json()["balance"]) == ("USDT", "3.000000")
    assert again.status_code == 200
    assert balance_of(alice, "USDT") == 3 * USDT
    assert swept_into_the_treasury(paid.tx_hash).status == "sent"
    balances = {row["token"]: row for row in api(alice).get("/api/v1/wallet/balance").json()["balances"]}
    assert (balances["USDT"]["active"], balances["USDT"]["balance"]) == (False, "3.000000")
