"""Amounts sent as JSON numbers move exactly what the client wrote, not a float's rounding of it."""

from __future__ import annotations

import pytest

from wallets.models import LedgerTransaction
from wallets.tests.conftest import balance_of

USDC = 1_000_000
ETH = 10**18


def _transfer(api, sender, body: str):
    return api(sender).post("/api/v1/wallet/transfer", data=body, content_type="application/json")


@pytest.mark.django_db
def test_a_json_number_beyond_a_floats_digits_moves_exactly_that_amount(api, alice, bob, fund):
    fund(alice, 20_000_000_000 * USDC)

    # 17 significant digits: as a float this is 12345678901.234568.
    response = _transfer(api, alice, f'{{"recipientId": {bob.pk}, "amount": 12345678901.234567}}')

    assert response.status_code == 201
    assert balance_of(bob) == 12_345_678_901_234_567


@pytest.mark.django_db
def test_an_eighteen_decimal_json_number_moves_exactly_that_many_wei(api, alice, bob, fund):
    fund(alice, 2 * ETH, "ETH")

    response = _transfer(api, alice, f'{{"recipientId": {bob.pk}, "token": "ETH", "amount": 0.123456789012345678}}')

    assert response.status_code == 201
    assert balance_of(bob, "ETH") == 123_456_789_012_345_678


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ['"1_000"', '"\\uff11\\uff12"', '"\\u0661"', '"1 000"', '"0x10"'])
def test_amounts_in_other_forms_than_ascii_decimals_are_refused(api, alice, bob, fund, amount):
    fund(alice, 2_000 * USDC)
    before = LedgerTransaction.objects.count()

    response = _transfer(api, alice, f'{{"recipientId": {bob.pk}, "amount": {amount}}}')

    assert response.status_code == 400
    assert response.json()["errors"]["amount"] == ["Must be a number or a decimal string."]
    assert LedgerTransaction.objects.count() == before
    assert balance_of(alice) == 2_000 * USDC


@pytest.mark.django_db
def test_one_key_for_two_amounts_that_round_to_one_float_is_409(api, alice, bob, fund):
    fund(alice, 20_000_000_000 * USDC)
    client = api(alice)

    def send(amount: str):
        body = f'{{"recipientId": {bob.pk}, "amount": {amount}}}'
        return client.post(
            "/api/v1/wallet/transfer", data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
        )

    first, retry, other = send("12345678901.234567"), send("12345678901.234567"), send("12345678901.234568")

    assert (first.status_code, retry.status_code, other.status_code) == (201, 201, 409)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert balance_of(bob) == 12_345_678_901_234_567


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/wallet/transfer", '{"recipientId": RECIPIENT, "amount": AMOUNT}'),
        (
            "/api/v1/wallet/withdraw",
            '{"toAddress": "ADDRESS", "amount": AMOUNT}',
        ),
        ("/api/v1/wallet/deposit", '{"amount": AMOUNT}'),
    ],
)
@pytest.mark.parametrize("amount", ['"1e-1000079"', "1e-1000079"])
def test_an_amount_below_the_smallest_exponent_is_400_not_zero_units(
    api, alice, bob, fund, sandbox, path, body, amount
):
    """It underflowed to 0 minor units, which the ledger, the outbox's constraint and the sandbox
    refused as errors: 500s."""
    fund(alice, 10 * USDC)

    response = api(alice).post(
        path,
        data=body.replace("RECIPIENT", str(bob.pk)).replace("ADDRESS", "0x00" + "ab" * 31).replace("AMOUNT", amount),
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    assert response.json()["errors"]["amount"] == ["Must have at most 6 decimal places."]
    assert (balance_of(alice), balance_of(bob)) == (10 * USDC, 0)
