"""Fixtures for the Chipi gateway."""

from __future__ import annotations

import pytest

from wallets.chipi.sandbox import ChipiSandbox


@pytest.fixture
def sandbox(db) -> ChipiSandbox:
    return ChipiSandbox()


def fund(sandbox: ChipiSandbox, token: str, amount: int, *, user: str = "funder") -> str:
    """Pay `amount` into a deposit address of `user`, so custody holds it; returns the address."""
    address = sandbox.create_wallet(external_user_id=user)
    sandbox.receive_payment(to_address=address, token=token, amount=amount)
    return address
