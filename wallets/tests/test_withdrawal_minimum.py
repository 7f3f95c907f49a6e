"""The smallest withdrawal a token takes: below it nothing is queued, signed or sent on chain (where
the platform's paymaster pays the gas), and the client is told the minimum."""

from __future__ import annotations

import pytest
from rest_framework.exceptions import ValidationError

from conftest import admin_form
from wallets import services
from wallets.chipi.models import SandboxTransaction
from wallets.models import Asset, IdempotencyKey, LedgerTransaction, Withdrawal, WithdrawalStatus
from wallets.tests.conftest import balance_of, chain_deposit

pytestmark = pytest.mark.django_db

USDC = 1_000_000
ADDRESS = "0x00" + "ab" * 31


def withdraw(api, user, amount, **extra):
    body = {"amount": amount, "toAddress": ADDRESS, **{k: v for k, v in extra.items() if not k.startswith("HTTP_")}}
    headers = {k: v for k, v in extra.items() if k.startswith("HTTP_")}
    return api(user).post("/api/v1/wallet/withdraw", body, format="json", **headers)


def test_a_withdrawal_of_one_minor_unit_is_refused_and_nothing_is_written(api, alice, fund, sandbox):
    """0.000001 USDC was queued, signed and sent on chain, its gas paid by the platform."""
    fund(alice, 5 * USDC)
    transactions = LedgerTransaction.objects.count()

    response = withdraw(api, alice, "0.000001", HTTP_IDEMPOTENCY_KEY="tiny")

    assert response.status_code == 400, response.json()
    assert response.json() == {
        "message": "amount: Below the minimum withdrawal of 1.000000 USDC.",
        "statusCode": 400,
        "code": "below_minimum",
        "errors": {"amount": ["Below the minimum withdrawal of 1.000000 USDC."]},
        "minimum": "1.000000",
        "token": "USDC",
    }
    assert Withdrawal.objects.count() == 0
    assert LedgerTransaction.objects.count() == transactions
    assert balance_of(alice) == 5 * USDC
    assert SandboxTransaction.objects.filter(destination_address=ADDRESS).count() == 0
    # The refusal is not what the key replays: the key is free for the request the client meant.
    assert not IdempotencyKey.objects.filter(user=alice, key="tiny").exists()
    assert withdraw(api, alice, "1", HTTP_IDEMPOTENCY_KEY="tiny").status_code == 202


def test_a_withdrawal_of_the_minimum_is_sent(api, alice, sandbox):
    chain_deposit(alice, 5 * USDC)

    response = withdraw(api, alice, "1")

    assert response.status_code == 202, response.json()
    withdrawal = Withdrawal.objects.get(pk=response.json()["withdrawal"]["id"])
    assert (withdrawal.amount, withdrawal.status) == (USDC, WithdrawalStatus.SENT)
    assert balance_of(alice) == 4 * USDC


def test_each_token_has_its_own_minimum_and_the_tokens_list_tells_it(anon, api, alice, fund):
    """Decided per token when the minimum came (wallets 0024): about 1 USD's worth of each."""
    tokens = anon.get("/api/v1/wallet/supported-tokens").json()["tokens"]

    assert {token["token"]: token["minimumWithdrawal"] for token in tokens} == {
        "USDC": "1.000000",
        "USDT": "1.000000",
        "ETH": "0.000500000000000000",
        "STRK": "10.000000000000000000",
    }
    fund(alice, 10**18, "ETH")
    refused = withdraw(api, alice, "0.0004999", token="ETH")
    assert (refused.status_code, refused.json()["code"], refused.json()["minimum"]) == (
        400,
        "below_minimum",
        "0.000500000000000000",
    )
    assert balance_of(alice, "ETH") == 10**18
    assert withdraw(api, alice, "0.0005", token="ETH").status_code == 202


def test_staff_set_a_tokens_minimum_in_its_units_in_the_admin(client, olga, api, alice, fund):
    fund(alice, 10 * USDC, "USDT")
    client.force_login(olga)
    usdt = Asset.objects.get(code="USDT")
    url = f"/admin/wallets/asset/{usdt.pk}/change/"
    seen = admin_form(client, url)
    assert seen["minimum_withdrawal"] == ["1.000000"]  # shown in USDT, not in minor units

    response = client.post(url, {**seen, "minimum_withdrawal": "2.5"})

    assert response.status_code == 302, response.content[:3000]
    usdt.refresh_from_db()
    assert usdt.minimum_withdrawal == 2_500_000
    refused = withdraw(api, alice, "2.4", token="USDT")
    assert (refused.status_code, refused.json()["errors"]) == (
        400,
        {"amount": ["Below the minimum withdrawal of 2.500000 USDT."]},
    )
    assert balance_of(alice, "USDT") == 10 * USDC
    assert withdraw(api, alice, "2.5", token="USDT").status_code == 202


@pytest.mark.parametrize("typed", ["-1", "0.0000001", "abc", ""])
def test_a_minimum_that_is_no_amount_of_the_token_is_refused_in_the_admin(client, olga, typed):
    client.force_login(olga)
    usdc = Asset.objects.get(code="USDC")
    url = f"/admin/wallets/asset/{usdc.pk}/change/"

    response = client.post(url, {**admin_form(client, url), "minimum_withdrawal": typed})

    assert response.status_code == 200  # the form again, and why
    assert response.context["adminform"].form.errors["minimum_withdrawal"]
    assert Asset.objects.get(code="USDC").minimum_withdrawal == USDC


def test_a_minimum_of_zero_is_none(api, alice, fund):
    fund(alice, 5 * USDC)
    services.asset_update(asset=Asset.objects.get(code="USDC"), minimum_withdrawal=0)

    assert withdraw(api, alice, "0.000001").status_code == 202
    with pytest.raises(ValidationError):
        services.asset_update(asset=Asset.objects.get(code="USDC"), minimum_withdrawal=-1)
    assert Asset.objects.get(code="USDC").minimum_withdrawal == 0


def test_a_service_caller_cannot_queue_a_withdrawal_below_the_minimum(alice, fund):
    """A payout, an operator's script: the rule is the service's, not the API's."""
    fund(alice, 5 * USDC)

    with pytest.raises(services.BelowMinimum):
        services.withdrawal_request(
            user=alice, asset=Asset.objects.get(code="USDC"), amount=USDC - 1, to_address=ADDRESS
        )

    assert Withdrawal.objects.count() == 0
    assert balance_of(alice) == 5 * USDC
