"""POST /wallet/transfer naming the recipient by a PayGo user's wallet address (issue 19)."""

from __future__ import annotations

import pytest

from accounts.models import User
from wallets.models import LedgerTransaction, Withdrawal
from wallets.tests.conftest import balance_of

pytestmark = pytest.mark.django_db

USDC = 1_000_000
TRANSFER = "/api/v1/wallet/transfer"
# Bob's wallet address as PayGo keeps it ("0x" + 64 lower-case hex digits), with leading zeros so
# that it has shorter spellings.
BOBS = "0x" + "0" * 58 + "00beef"


@pytest.fixture
def bobs_wallet(bob) -> str:
    User.objects.filter(pk=bob.pk).update(wallet_address=BOBS)
    return BOBS


@pytest.mark.parametrize(
    "spelling",
    [BOBS, BOBS.upper().replace("0X", "0x"), "0xbeef", "0xBEEF", f"  {BOBS}  ", "0X" + BOBS[2:]],
    ids=["as-kept", "upper-case", "short", "short-upper", "spaces", "capital-x"],
)
def test_transfer_to_a_wallet_address_any_spelling(api, alice, bob, bobs_wallet, fund, spelling):
    fund(alice, 10 * USDC)

    response = api(alice).post(TRANSFER, {"amount": "2.5", "recipientAddress": spelling}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["message"] == "Sent 2.500000 USDC to Bob."
    assert response.json()["transaction"]["amount"] == "-2.500000"
    assert (balance_of(alice), balance_of(bob)) == (7_500_000, 2_500_000)


def test_an_address_no_paygo_user_has_is_a_400_and_sends_nothing(api, alice, bob, bobs_wallet, fund):
    """Not a silent on-chain send: paying outside PayGo is a withdrawal, asked for as one."""
    fund(alice, 10 * USDC)
    transactions = LedgerTransaction.objects.count()

    response = api(alice).post(TRANSFER, {"amount": 1, "recipientAddress": "0x0" + "1" * 63}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["message"].startswith("recipientAddress: No PayGo user has this wallet address.")
    assert body["errors"] == {
        "recipientAddress": [
            "No PayGo user has this wallet address. To send to an address outside PayGo, "
            "withdraw to it (POST /api/v1/wallet/withdraw)."
        ]
    }
    assert (balance_of(alice), balance_of(bob)) == (10 * USDC, 0)
    assert LedgerTransaction.objects.count() == transactions
    assert not Withdrawal.objects.exists()


def test_the_address_of_a_deactivated_user_is_refused(api, alice, bob, bobs_wallet, fund):
    fund(alice, 10 * USDC)
    User.objects.filter(pk=bob.pk).update(is_active=False)

    response = api(alice).post(TRANSFER, {"amount": 1, "recipientAddress": BOBS}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["recipientAddress"][0].startswith("No PayGo user has this wallet address.")
    assert (balance_of(alice), balance_of(bob)) == (10 * USDC, 0)


@pytest.mark.parametrize(
    "address",
    ["", "beef", "0x", "0xbeefy", "0x" + "1" * 65, "0x0", "0x" + "f" * 64, 48879, None, ["0xbeef"]],
    ids=["empty", "no-0x", "no-digits", "not-hex", "too-long", "zero", "past-the-field", "number", "null", "list"],
)
def test_what_is_not_a_starknet_address_is_a_400(api, alice, bob, bobs_wallet, fund, address):
    """Nor does an empty address ever name the users who have no wallet yet."""
    fund(alice, 10 * USDC)

    response = api(alice).post(TRANSFER, {"amount": 1, "recipientAddress": address}, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["recipientAddress"]
    assert balance_of(alice) == 10 * USDC


def test_paying_your_own_address_is_refused(api, alice, fund):
    fund(alice, 10 * USDC)
    User.objects.filter(pk=alice.pk).update(wallet_address=BOBS)

    response = api(alice).post(TRANSFER, {"amount": 1, "recipientAddress": "0xBEEF"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"recipientAddress": ["You cannot transfer to yourself."]}
    assert balance_of(alice) == 10 * USDC


def test_an_address_and_another_way_of_naming_the_recipient_is_refused(api, alice, bob, bobs_wallet, fund):
    fund(alice, 10 * USDC)

    response = api(alice).post(TRANSFER, {"amount": 1, "recipientAddress": BOBS, "recipientId": bob.pk}, format="json")

    assert response.status_code == 400
    message = "Name the recipient one way only: recipientId, recipientEmail or recipientAddress."
    assert response.json()["errors"] == {"recipientId": [message], "recipientAddress": [message]}
    assert (balance_of(alice), balance_of(bob)) == (10 * USDC, 0)


def test_the_outsider_pays_from_his_own_wallet_only(api, alice, bob, wanda, fund):
    """Naming someone's address moves the caller's money, never the address owner's: bob, who holds
    nothing, cannot pay wanda out of alice's wallet by naming alice's address either way round."""
    fund(alice, 10 * USDC)
    User.objects.filter(pk=wanda.pk).update(wallet_address="0x" + "0" * 63 + "7")
    User.objects.filter(pk=alice.pk).update(wallet_address=BOBS)

    to_wanda = api(bob).post(TRANSFER, {"amount": 1, "recipientAddress": "0x7"}, format="json")
    to_alice = api(bob).post(TRANSFER, {"amount": 1, "recipientAddress": BOBS}, format="json")

    assert to_wanda.status_code == to_alice.status_code == 400
    assert to_wanda.json()["errors"]["amount"] == ["Insufficient funds: 0.000000 USDC available."]
    assert (balance_of(alice), balance_of(bob), balance_of(wanda)) == (10 * USDC, 0, 0)


def test_same_key_same_body_replays_and_moves_once(api, alice, bob, bobs_wallet, fund):
    fund(alice, 10 * USDC)
    client = api(alice)
    body = {"amount": "1.5", "recipientAddress": "0xBEEF"}

    first = client.post(TRANSFER, body, format="json", HTTP_IDEMPOTENCY_KEY="a-1")
    second = client.post(TRANSFER, body, format="json", HTTP_IDEMPOTENCY_KEY="a-1")
    other = client.post(TRANSFER, {**body, "recipientAddress": BOBS}, format="json", HTTP_IDEMPOTENCY_KEY="a-1")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert other.status_code == 409  # another body under the same key, even if it names the same wallet
    assert (balance_of(alice), balance_of(bob)) == (8_500_000, 1_500_000)


def test_a_refused_address_does_not_burn_its_key(api, alice, bob, fund):
    fund(alice, 10 * USDC)
    client = api(alice)
    body = {"amount": 1, "recipientAddress": BOBS}

    refused = client.post(TRANSFER, body, format="json", HTTP_IDEMPOTENCY_KEY="a-2")
    User.objects.filter(pk=bob.pk).update(wallet_address=BOBS)  # bob's wallet opens
    retried = client.post(TRANSFER, body, format="json", HTTP_IDEMPOTENCY_KEY="a-2")

    assert (refused.status_code, retried.status_code) == (400, 201)
    assert balance_of(bob) == USDC


def test_the_schema_offers_the_third_way(anon):
    schema = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    request = schema["components"]["schemas"]["TransferRequest"]["properties"]
    assert {"recipientId", "recipientEmail", "recipientAddress"} <= set(request)
    assert "wallet address" in request["recipientAddress"]["description"]


def test_a_chipi_payment_to_any_spelling_of_an_address_is_credited_to_its_owner(bob, sandbox):
    from wallets.services import wallet_open, webhook_deposit

    address = wallet_open(user=bob)
    paid = sandbox.receive_payment(to_address=address, token="USDC", amount=5)
    short_upper = "0x" + address[2:].lstrip("0").upper()

    result = webhook_deposit(to_address=short_upper, token="USDC", amount="0.000005", tx_hash=paid.tx_hash)

    assert result is not None and result.created
    assert balance_of(bob) == 5


@pytest.mark.parametrize("address", ["0xBEEF", "0xbeef", "0X" + BOBS[2:].upper(), "not an address"])
def test_the_database_keeps_wallet_addresses_normalised(alice, address):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.filter(pk=alice.pk).update(wallet_address=address)


def test_the_database_keeps_wallet_addresses_unique(alice, bob, victor, bobs_wallet):
    """One address, one owner: paying it can name nobody else."""
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.filter(pk=alice.pk).update(wallet_address=BOBS)
    # Users without a wallet share the empty one.
    User.objects.filter(pk__in=[alice.pk, victor.pk]).update(wallet_address="")
    assert set(User.objects.filter(wallet_address="").values_list("pk", flat=True)) == {alice.pk, victor.pk}
