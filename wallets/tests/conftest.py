"""Wallet fixtures: funding a wallet through the ledger as a deposit would."""

from __future__ import annotations

import itertools
import json

import pytest
import requests

from wallets import ledger
from wallets.models import Account, AccountKind, SystemAccount
from wallets.services import ChainDeposit, deposit_credit

_hashes = itertools.count(1)


def fund_wallet(user, amount: int, token: str = "USDC") -> Account:
    asset = ledger.asset_get(token)
    funding = ChainDeposit.ledger_only(tx_hash=f"0x{next(_hashes):064x}", token=token, amount=amount)
    deposit_credit(user=user, asset=asset, deposit=funding, source="test")
    return ledger.account_for_user(user, asset)


@pytest.fixture
def fund():
    """fund(user, amount_minor, token="USDC") -> the user's account after a deposit."""
    return fund_wallet


def balance_of(user, token: str = "USDC") -> int:
    account = Account.objects.filter(kind=AccountKind.USER, owner=user, asset__code=token).first()
    return account.balance if account else 0


def system_balance(code: SystemAccount, token: str = "USDC") -> int:
    return Account.objects.get(kind=AccountKind.SYSTEM, system_code=code, asset__code=token).balance


@pytest.fixture
def sandbox():
    """The process's Chipi sandbox, its faults cleared before and after the test."""
    from wallets.chipi.sandbox import get_sandbox

    chain = get_sandbox()
    chain.reset()
    yield chain
    chain.reset()


def chain_deposit(user, amount: int, token: str = "USDC"):
    """A real sandbox payment into the user's address, credited as the API would, then swept into
    the treasury (one signature), so that custody holds it where withdrawals leave from."""
    from wallets.chipi.sandbox import get_sandbox
    from wallets.models import Sweep
    from wallets.services import sweep_send, wallet_open

    asset = ledger.asset_get(token)
    paid = get_sandbox().receive_payment(to_address=wallet_open(user=user), token=token, amount=amount)
    credited = deposit_credit(user=user, asset=asset, deposit=ChainDeposit(paid), source="api")
    sweep = Sweep.objects.get(deposit=credited.transaction)
    assert sweep_send(sweep_id=sweep.pk) == "sent"
    return credited


def provide_liquidity(token: str, amount: int) -> None:
    """What staff do before PayGo can sell a token in swaps: put liquidity in (an adjustment of the
    swap liquidity account against platform revenue)."""
    from wallets.models import TransactionKind

    asset = ledger.asset_get(token)
    ledger.transfer(
        debit=ledger.system_account(SystemAccount.PLATFORM_REVENUE, asset),
        credit=ledger.system_account(SystemAccount.SWAP_LIQUIDITY, asset),
        amount=amount,
        kind=TransactionKind.ADJUSTMENT,
        memo="Liquidity for swaps (test)",
    )


@pytest.fixture
def liquidity(db):
    """A million whole tokens of every active token for swaps to sell."""
    from wallets.models import Asset

    for asset in Asset.objects.filter(is_active=True):
        provide_liquidity(asset.code, 10**6 * 10**asset.decimals)


# --- AVNU's price API, faked at its HTTP boundary ---------------------------------------------------

# USD prices of one whole unit (the ratio of two is a rate, so a rate and its inverse agree).
AVNU_PRICES = {"USDC": "1", "USDC.e": "1", "USDT": "0.9998", "ETH": "3000", "STRK": "0.5"}


class FakeAvnu(requests.adapters.BaseAdapter):
    """AVNU's POST /v3/tokens/prices, answering AVNU_PRICES; `fail` queues HTTP statuses to answer."""

    def __init__(self):
        super().__init__()
        self.fail: list[int] = []
        self.received: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        from wallets.rates import PRICES_PATH, token_contract

        self.received.append(request)
        response = requests.Response()
        response.request, response.url = request, request.url
        response.headers["Content-Type"] = "application/json"
        if self.fail:
            response.status_code, response._content = self.fail.pop(0), b"{}"
            return response
        assert request.method == "POST" and request.path_url == PRICES_PATH
        asked = json.loads(request.body)["tokens"]
        by_contract = {token_contract(code): price for code, price in AVNU_PRICES.items()}
        items = [
            {"address": address, "decimals": 6, "starknetMarket": {"usd": float(by_contract[address])}}
            for address in asked
            if address in by_contract
        ]
        response.status_code, response._content = 200, json.dumps(items).encode()
        return response

    def close(self):
        pass


@pytest.fixture(autouse=True)
def avnu():
    """Every test's price API: the fake, mounted on this thread's rate provider."""
    from wallets.rates import get_rate_provider

    fake = FakeAvnu()
    provider = get_rate_provider()
    provider.session.mount(provider.base_url, fake)
    yield fake
    provider.session.adapters.pop(provider.base_url, None)
