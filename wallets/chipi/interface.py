"""The gateway's interface: the ChainTransaction value, the ChipiGateway protocol and the tokens it knows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

# Raw on-chain amounts are integers of these minor units.
TOKEN_DECIMALS: dict[str, int] = {"USDC": 6, "USDT": 6, "ETH": 18, "STRK": 18}

PENDING, CONFIRMED, FAILED = "pending", "confirmed", "failed"
TRANSACTION_STATUSES = (PENDING, CONFIRMED, FAILED)

# Starknet addresses and transaction hashes, written in full: "0x" + 64 hex digits.
_HEX_64 = re.compile(r"0x[0-9a-fA-F]{64}")


def is_chain_hex(value: object) -> bool:
    """True for "0x" + 64 hex digits (an address or a transaction hash), in either case."""
    return isinstance(value, str) and _HEX_64.fullmatch(value) is not None


@dataclass(frozen=True)
class ChainTransaction:
    tx_hash: str  # "0x" + 64 hex
    status: str  # "pending" | "confirmed" | "failed"
    token: str  # "USDC", "USDT", "ETH", "STRK"
    amount: int  # raw integer minor units
    from_address: str
    to_address: str
    reference: str  # the client reference we attached to a transfer we sent; "" for inbound payments


@runtime_checkable
class ChipiGateway(Protocol):
    def create_wallet(self, *, external_user_id: str) -> str:
        """A deposit address for this user, "0x" + 64 hex; the same user always gets the same one."""
        ...

    def get_transaction(self, tx_hash: str) -> ChainTransaction | None:
        """The transaction with this hash, or None when the chain does not know it."""
        ...

    def find_transfer(self, reference: str) -> ChainTransaction | None:
        """The (first) outbound transfer we sent with this reference, or None."""
        ...

    def send_transfer(self, *, reference: str, token: str, amount: int, to_address: str) -> ChainTransaction:
        """Send `amount` raw units of `token` from custody. Not idempotent: look it up first."""
        ...

    def custody_balance(self, token: str) -> int:
        """Raw units of `token` PayGo holds on chain."""
        ...

    def get_rate(self, from_token: str, to_token: str) -> Decimal:
        """Whole units of to_token per whole unit of from_token."""
        ...
