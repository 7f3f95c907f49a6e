"""ChipiSandbox: the Chipi gateway without a network, on a chain simulated in the database, with faults on demand.

It behaves like the real API as PayGo relies on it: unique deposit addresses, custody that grows with
inbound payments and shrinks with transfers, transfers that are NOT deduplicated by reference, and
definitive rejections for bad input. Faults are injected per operation and kept in process memory.
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from decimal import Decimal, localcontext

from django.db import transaction

from wallets.chipi.errors import ChipiRateLimited, ChipiRejected, ChipiTimeout, ChipiUnavailable
from wallets.chipi.interface import CONFIRMED, TOKEN_DECIMALS, ChainTransaction, is_chain_hex
from wallets.chipi.models import SandboxCustody, SandboxTransaction, SandboxWallet

OPERATIONS = ("create_wallet", "get_transaction", "find_transfer", "send_transfer", "custody_balance", "get_rate")
FAULTS = ("timeout", "error", "rate_limited", "reject", "lost_response")
FAULT_RETRY_AFTER = 1.0

# The address our custody sends transfers from.
CUSTODY_ADDRESS = "0x" + "0c" * 32
MAX_REFERENCE_LENGTH = 128
MAX_EXTERNAL_USER_ID_LENGTH = 255
MAX_RAW_AMOUNT = 10**38  # what NUMERIC(38,0) holds

# Fixed prices in USDC of one whole unit. Every rate is a ratio of two prices, so a rate and its
# inverse always agree and no cycle of swaps makes or loses value.
SANDBOX_PRICES: dict[str, Decimal] = {
    "USDC": Decimal("1"),
    "USDT": Decimal("0.9998"),
    "ETH": Decimal("3000"),
    "STRK": Decimal("0.5"),
}
RATE_PRECISION = 28


def _random_felt_hex() -> str:
    """A random Starknet-sized value (below 2**251) written as "0x" + 64 hex digits."""
    return "0x" + format(secrets.randbits(251), "064x")


def _to_chain(row: SandboxTransaction) -> ChainTransaction:
    return ChainTransaction(
        tx_hash=row.tx_hash,
        status=row.status,
        token=row.token,
        amount=int(row.amount),
        from_address=row.from_address,
        to_address=row.to_address,
        reference=row.reference,
    )


def _chain_write():
    """A database transaction for a change to the simulated chain.

    Durable, because a chain does not roll back with its caller: a transfer made inside the caller's
    transaction would vanish if that transaction rolled back, which no real chain does. Calling Chipi
    inside a database transaction breaks the conventions anyway (slow I/O runs after commit), so the
    sandbox refuses it loudly (RuntimeError) instead of diverging silently from the real API.
    """
    return transaction.atomic(durable=True)


class ChipiSandbox:
    """The ChipiGateway used when CHIPI_API_KEY is unset (embedded default and tests)."""

    def __init__(self) -> None:
        self._faults: dict[str, deque[str]] = {operation: deque() for operation in OPERATIONS}
        self._lock = threading.Lock()

    # --- Fault injection ---------------------------------------------------------------------------

    def inject(self, operation: str, fault: str, times: int = 1) -> None:
        """Make the next `times` calls of `operation` fail with `fault`; faults are consumed in order.

        timeout: ChipiTimeout before acting. error: ChipiUnavailable, nothing happened.
        rate_limited: ChipiRateLimited. reject: ChipiRejected. lost_response: act, then ChipiTimeout.
        """
        if operation not in OPERATIONS:
            raise ValueError(f"Unknown operation {operation!r}; choose one of {', '.join(OPERATIONS)}.")
        if fault not in FAULTS:
            raise ValueError(f"Unknown fault {fault!r}; choose one of {', '.join(FAULTS)}.")
        if times < 1:
            raise ValueError("times must be at least 1.")
        with self._lock:
            self._faults[operation].extend([fault] * times)

    def pending_faults(self, operation: str) -> list[str]:
        """The faults still waiting for `operation`, next first."""
        with self._lock:
            return list(self._faults[operation])

    def reset(self, *, chain: bool = False) -> None:
        """Forget every pending fault; with chain=True also wipe the simulated chain (wallets, transactions,
        custody). Tests rarely need the latter: their database is rolled back after each test anyway."""
        with self._lock:
            for queue in self._faults.values():
                queue.clear()
        if chain:
            with _chain_write():
                SandboxTransaction.objects.all().delete()
                SandboxWallet.objects.all().delete()
                SandboxCustody.objects.all().delete()

    def _before(self, operation: str) -> bool:
        """Apply the next fault for `operation`: raise it, or return True when the response is to be lost."""
        with self._lock:
            queue = self._faults[operation]
            fault = queue.popleft() if queue else None
        if fault is None:
            return False
        if fault == "timeout":
            raise ChipiTimeout(f"Sandbox: {operation} timed out (injected).")
        if fault == "error":
            raise ChipiUnavailable(f"Sandbox: {operation} failed (injected).", status=503)
        if fault == "rate_limited":
            raise ChipiRateLimited(f"Sandbox: {operation} rate limited (injected).", retry_after=FAULT_RETRY_AFTER)
        if fault == "reject":
            raise ChipiRejected(f"Sandbox: {operation} rejected (injected).", status=400)
        return True  # lost_response

    @staticmethod
    def _lose_response(operation: str) -> ChipiTimeout:
        return ChipiTimeout(f"Sandbox: {operation} acted but its response was lost (injected).")

    # --- The gateway -------------------------------------------------------------------------------

    def create_wallet(self, *, external_user_id: str) -> str:
        lost = self._before("create_wallet")
        if not isinstance(external_user_id, str) or not 0 < len(external_user_id) <= MAX_EXTERNAL_USER_ID_LENGTH:
            raise ChipiRejected(
                "externalUserId must be a non-empty string.", code="invalid_external_user_id", status=400
            )
        # One wallet per user: asking again (say after a timeout) answers the same address.
        with _chain_write():
            wallet, _ = SandboxWallet.objects.get_or_create(
                external_user_id=external_user_id, defaults={"address": _random_felt_hex()}
            )
        if lost:
            raise self._lose_response("create_wallet")
        return wallet.address

    def get_transaction(self, tx_hash: str) -> ChainTransaction | None:
        lost = self._before("get_transaction")
        if not is_chain_hex(tx_hash):
            raise ChipiRejected("A transaction hash is 0x and 64 hex digits.", code="invalid_tx_hash", status=400)
        row = SandboxTransaction.objects.filter(tx_hash=tx_hash.lower()).first()
        if lost:
            raise self._lose_response("get_transaction")
        return _to_chain(row) if row else None

    def find_transfer(self, reference: str) -> ChainTransaction | None:
        lost = self._before("find_transfer")
        _check_reference(reference)
        row = (
            SandboxTransaction.objects.filter(direction=SandboxTransaction.Direction.OUTBOUND, reference=reference)
            .order_by("pk")
            .first()
        )
        if lost:
            raise self._lose_response("find_transfer")
        return _to_chain(row) if row else None

    def send_transfer(self, *, reference: str, token: str, amount: int, to_address: str) -> ChainTransaction:
        lost = self._before("send_transfer")
        _check_reference(reference)
        _check_token(token)
        _check_amount(amount)
        _check_address(to_address)
        to_address = to_address.lower()
        # Like the real API, a second transfer with the same reference is sent again: Chipi has no
        # idempotency, so callers look the reference up with find_transfer before (re)sending.
        with _chain_write():
            custody = _custody_for_update(token)
            if custody.balance < amount:
                raise ChipiRejected(
                    f"Custody holds less {token} than the {amount} raw units to send.",
                    code="insufficient_custody",
                    status=422,
                )
            row = SandboxTransaction.objects.create(
                tx_hash=_random_felt_hex(),
                direction=SandboxTransaction.Direction.OUTBOUND,
                status=CONFIRMED,
                token=token,
                amount=amount,
                from_address=CUSTODY_ADDRESS,
                to_address=to_address,
                reference=reference,
            )
            # Sent to one of our own deposit addresses, the money never leaves custody.
            if not SandboxWallet.objects.filter(address=to_address).exists():
                custody.balance -= amount
                custody.save(update_fields=["balance"])
        if lost:
            raise self._lose_response("send_transfer")
        return _to_chain(row)

    def custody_balance(self, token: str) -> int:
        lost = self._before("custody_balance")
        _check_token(token)
        balance = SandboxCustody.objects.filter(token=token).values_list("balance", flat=True).first()
        if lost:
            raise self._lose_response("custody_balance")
        return int(balance or 0)

    def get_rate(self, from_token: str, to_token: str) -> Decimal:
        lost = self._before("get_rate")
        _check_token(from_token)
        _check_token(to_token)
        with localcontext() as context:
            context.prec = RATE_PRECISION
            rate = SANDBOX_PRICES[from_token] / SANDBOX_PRICES[to_token]
        if lost:
            raise self._lose_response("get_rate")
        return rate

    # --- Sandbox only ------------------------------------------------------------------------------

    def receive_payment(
        self, *, to_address: str, token: str, amount: int, from_address: str | None = None
    ) -> ChainTransaction:
        """Someone pays into one of our deposit addresses: a confirmed inbound transaction, custody grows."""
        _check_token(token)
        _check_amount(amount)
        _check_address(to_address)
        if from_address is None:
            from_address = _random_felt_hex()
        _check_address(from_address)
        with _chain_write():
            if not SandboxWallet.objects.filter(address=to_address.lower()).exists():
                raise ChipiRejected(
                    "Not a deposit address created by this sandbox.", code="unknown_address", status=404
                )
            row = SandboxTransaction.objects.create(
                tx_hash=_random_felt_hex(),
                direction=SandboxTransaction.Direction.INBOUND,
                status=CONFIRMED,
                token=token,
                amount=amount,
                from_address=from_address.lower(),
                to_address=to_address.lower(),
                reference="",
            )
            custody = _custody_for_update(token)
            custody.balance += amount
            custody.save(update_fields=["balance"])
        return _to_chain(row)


def _custody_for_update(token: str) -> SandboxCustody:
    """The token's custody row, locked until the chain write commits: the row lock serialises
    concurrent transfers, so arithmetic on it may happen in Python."""
    SandboxCustody.objects.get_or_create(token=token)
    return SandboxCustody.objects.select_for_update().get(token=token)


def _check_token(token: object) -> None:
    if token not in TOKEN_DECIMALS:
        raise ChipiRejected(
            f"Unknown token {token!r}; Chipi supports {', '.join(TOKEN_DECIMALS)}.", code="unknown_token", status=400
        )


def _check_amount(amount: object) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount < MAX_RAW_AMOUNT:
        raise ChipiRejected("The amount must be a positive integer of raw units.", code="invalid_amount", status=400)


def _check_address(address: object) -> None:
    if not is_chain_hex(address):
        raise ChipiRejected("A Starknet address is 0x and 64 hex digits.", code="invalid_address", status=400)


def _check_reference(reference: object) -> None:
    if not isinstance(reference, str) or not 0 < len(reference) <= MAX_REFERENCE_LENGTH:
        raise ChipiRejected(
            f"The reference must be a non-empty string of at most {MAX_REFERENCE_LENGTH} characters.",
            code="invalid_reference",
            status=400,
        )


_process_sandbox = ChipiSandbox()


def get_sandbox() -> ChipiSandbox:
    """The process's one sandbox (its faults are per process; its chain is the database's)."""
    return _process_sandbox
