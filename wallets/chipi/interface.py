"""The gateway's interface: the values it answers, the ChipiGateway protocol and the tokens it knows.

The shapes follow Chipi's Python SDK (chipi-stack 2.4.1, see README "Chipi Pay"): wallets are made
prepare -> create with a key PayGo generates, funds move only when PayGo signs an outside execution
with a wallet's key, and Chipi's records are per wallet (transaction-list, token-balance).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Protocol, runtime_checkable

from paygo.api.amounts import AmountError, minor_units
from wallets.starknet import felt_canonical

# PayGo's asset codes -> Chipi's chainToken (chipi_sdk.models.core.ChainToken) and the token's decimals.
# Native USDC (Circle's, "USDC") and the bridged USDC.e ("USDC_E") are different contracts, so
# different tokens: money of one is never counted as the other.
CHAIN_TOKENS: dict[str, str] = {"USDC": "USDC", "USDC.e": "USDC_E", "USDT": "USDT", "ETH": "ETH", "STRK": "STRK"}
TOKEN_DECIMALS: dict[str, int] = {"USDC": 6, "USDC.e": 6, "USDT": 6, "ETH": 18, "STRK": 18}
ASSET_BY_CHAIN_TOKEN: dict[str, str] = {chain_token: code for code, chain_token in CHAIN_TOKENS.items()}

PENDING, CONFIRMED, FAILED = "pending", "confirmed", "failed"
TRANSACTION_STATUSES = (PENDING, CONFIRMED, FAILED)
# Chipi's transaction statuses (the table, the SDK's Transaction.status is a plain str).
CHIPI_STATUSES: dict[str, str] = {
    "PENDING": PENDING,
    "PROCESSING": PENDING,
    "SUCCESS": CONFIRMED,
    "FAILED": FAILED,
    "CANCELLED": FAILED,
}


def is_chain_hex(value: object) -> bool:
    """True for a Starknet value written in full, "0x" + 64 hex digits (either case)."""
    return isinstance(value, str) and len(value) == 66 and felt_canonical(value) is not None


def raw_amount(value: object, decimals: int) -> int:
    """An amount as Chipi writes it, in raw integer units of a token with `decimals`.

    Chipi's records carry amounts as strings. The SDK does not say whether they are raw units or
    whole tokens (its token-balance answer carries `decimals` beside `balance`, its transactions
    `amount` beside `amountInUSD`), so this reads the one spelling that cannot be mistaken: digits
    only are raw units; a decimal point means whole tokens, converted by the decimals. ValueError
    for anything else, or a fraction finer than the token's unit.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if not isinstance(value, str) or not value or len(value) > 80:
        raise ValueError(f"Not an amount: {value!r}")
    if value.isdigit():
        return int(value)
    return raw_from_whole(value, decimals)


def raw_from_whole(value: object, decimals: int) -> int:
    """An amount in whole tokens ("10.00", as Chipi's webhooks write it) in raw units of a token with
    `decimals`; ValueError for anything else, or a fraction finer than the token's unit."""
    if not isinstance(value, str) or not value or len(value) > 80 or not value.replace(".", "", 1).isdigit():
        raise ValueError(f"Not an amount: {value!r}")
    try:
        return minor_units(Decimal(value), decimals)
    except InvalidOperation:
        raise ValueError(f"Not an amount: {value!r}") from None
    except AmountError:
        raise ValueError(f"Not an amount of a token with {decimals} decimals: {value!r}") from None


@dataclass(frozen=True)
class ChipiWallet:
    """A wallet at Chipi: its address and its private key as Chipi keeps it, encrypted with the
    wallet's encryptKey (which only PayGo holds)."""

    address: str  # "0x" + 64 lower-case hex
    encrypted_private_key: str
    wallet_type: str  # "SHHH" (the SDK's default), "CHIPI" or "READY"


@dataclass(frozen=True)
class ChainTransaction:
    """One of Chipi's transaction records, read back in PayGo's terms: one token transfer. A
    transaction (a multicall) can make several transfers, each a record of its own with the same
    hash: an exchange's batched withdrawal pays many addresses at once."""

    tx_hash: str  # "0x" + 64 lower-case hex
    status: str  # pending | confirmed | failed
    token: str  # PayGo's asset code ("" when Chipi names a token PayGo does not know)
    amount: int  # raw integer units
    from_address: str
    to_address: str
    created_at: datetime | None = None  # when Chipi recorded it
    record_id: str = ""  # Chipi's id of the record (the SDK's Transaction.id); "" for none


@runtime_checkable
class ChipiGateway(Protocol):
    def create_wallet(self, *, external_user_id: str, encrypt_key: str) -> ChipiWallet:
        """Make a wallet whose key is encrypted with `encrypt_key`. Not idempotent: a second call
        for the same user is refused (ChipiRejected); look it up with get_wallet."""
        ...

    def get_wallet(self, *, external_user_id: str) -> ChipiWallet | None:
        """The user's wallet at Chipi, or None."""
        ...

    def wallet_transactions(
        self, address: str, *, since: datetime | None = None, max_pages: int | None = None
    ) -> list[ChainTransaction]:
        """The wallet's transactions Chipi has recorded (sent and received), newest first: the recent
        ones, or with `since` every one recorded since then (within a far larger bound); with
        `max_pages`, at most that many requests' worth."""
        ...

    def token_balance(self, address: str, token: str) -> int:
        """Raw units of `token` the wallet holds."""
        ...

    def execute_transfer(
        self, *, wallet: ChipiWallet, encrypt_key: str, token: str, amount: int, to_address: str, nonce: int
    ) -> str:
        """Sign (with the wallet's key) and execute a sponsored transfer; the transaction hash.

        `nonce` is the outside execution's nonce: the account refuses a nonce it has used, so the
        same nonce executed twice moves the money once."""
        ...
