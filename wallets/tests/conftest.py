"""Wallet fixtures: funding a wallet through the ledger as a deposit would."""

from __future__ import annotations

import itertools

import pytest

from wallets import ledger
from wallets.models import Account, AccountKind, SystemAccount
from wallets.services import deposit_credit

_hashes = itertools.count(1)


def fund_wallet(user, amount: int, token: str = "USDC") -> Account:
    asset = ledger.asset_get(token)
    deposit_credit(user=user, asset=asset, amount=amount, tx_hash=f"0x{next(_hashes):064x}", source="test")
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
    """A real sandbox payment into the user's address, credited as the API would."""
    from wallets.chipi.sandbox import get_sandbox
    from wallets.services import wallet_open

    asset = ledger.asset_get(token)
    paid = get_sandbox().receive_payment(to_address=wallet_open(user=user), token=token, amount=amount)
    return deposit_credit(user=user, asset=asset, amount=amount, tx_hash=paid.tx_hash, source="test")
