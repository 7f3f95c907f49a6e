"""ChipiSandbox: Chipi's REST API on a chain simulated in the database, with faults on demand.

It serves the paths, request and response shapes of Chipi's API as the official Python SDK
(chipi-stack 2.4.1) sends and reads them, and the SDK itself talks to it over HTTP
(wallets.chipi.sandbox_http mounts it at the SDK's base URL). Like the real service:

- wallets are made prepare-creation -> create with the key the app generated (the address checked
  against the owner key, as the account's deployment would); a second create for the same
  externalUserId is refused ("Wallet already exists"); by-user finds a wallet;
- nothing moves without a signed outside execution (execute-sponsored-raw): the sandbox checks the
  STARK signature against the wallet's owner key, the validity window, and the nonce, which an
  account accepts once (so the same signed transfer executed twice moves the money once);
- balances are per address and token (token-balance), transactions per wallet (transaction-list);
- one execution is one transaction: its transfers (a multicall's) share its hash, a record each;
- there is no idempotency key, no reference, no custody total and no rate endpoint.

Where the SDK's code and Chipi's documentation disagree the SDK's code is followed: transaction-list
answers the SDK's PaginatedResponse[Transaction] field names (transaction_hash, sender_address,
total_pages, amountInUSD), which its pydantic models require, not the camelCase of the docs.

Faults are injected per operation and kept in process memory; the HTTP layer turns each into what
the wire would show (sandbox_http).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q, Sum
from django.utils import timezone

from wallets.chipi.interface import (
    ASSET_BY_CHAIN_TOKEN,
    CHAIN_TOKENS,
    CHIPI_STATUSES,
    TOKEN_DECIMALS,
    ChainTransaction,
)
from wallets.chipi.models import (
    SandboxBalance,
    SandboxTransaction,
    SandboxUsedNonce,
    SandboxWallet,
)
from wallets.starknet import address_normalize, felt_canonical

# Chipi's API as the SDK reaches it (below its base URL, which ends in /v1).
PATHS: dict[str, tuple[str, str]] = {
    "prepare_wallet": ("POST", "/chipi-wallets/prepare-creation"),
    "create_wallet": ("POST", "/chipi-wallets"),
    "get_wallet": ("GET", "/chipi-wallets/by-user"),
    "token_balance": ("GET", "/chipi-wallets/token-balance"),
    "transaction_list": ("GET", "/transactions/transaction-list"),
    "execute": ("POST", "/transactions/execute-sponsored-raw"),
}
# What PayGo calls these operations (and earlier tests named them).
ALIASES = {
    "get_transaction": "transaction_list",
    "find_transfer": "transaction_list",
    "send_transfer": "execute",
    "custody_balance": "token_balance",
}
OPERATIONS = tuple(PATHS) + tuple(ALIASES)
FAULTS = (
    "timeout",
    "error",
    "rate_limited",
    "reject",
    "lost_response",
    "stale",
    "unreachable",
    "pending",
    "oldest_first",
)
FAULT_RETRY_AFTER = 1.0

SANDBOX_API_KEY = "pk_sandbox_paygo"
MAX_EXTERNAL_USER_ID_LENGTH = 255
MAX_RAW_AMOUNT = 10**38  # what NUMERIC(38,0) holds
MAX_PAGE_SIZE = 100
U128 = 1 << 128


class SandboxApiError(Exception):
    """An error answer of the API: status, Chipi's {message, code} body."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass(frozen=True)
class Payment:
    """One transfer of a payment from outside (receive_batch): raw units of PayGo's asset `token`."""

    to_address: str
    token: str
    amount: int


@dataclass
class SandboxRequest:
    method: str
    path: str  # below the base URL's /v1
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None  # the parsed JSON body of a POST
    fault: str | None = None  # an injected fault the API itself acts out ("pending")


@dataclass
class SandboxAnswer:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


def _random_felt_hex() -> str:
    """A random Starknet-sized value (below 2**251) written "0x" + 64 hex digits."""
    return "0x" + format(secrets.randbits(251), "064x")


def _chain_write():
    """A database transaction for a change to the simulated chain. Durable, because a chain does not
    roll back with its caller: PayGo must not call Chipi inside a database transaction, and the
    sandbox refuses it loudly (RuntimeError) instead of diverging silently from the real API."""
    return transaction.atomic(durable=True)


def _sdk():
    """The SDK's own constants and hashing (imported on first use: chipi_sdk takes seconds to load)."""
    import chipi_sdk.constants as constants
    import chipi_sdk.models.core as core
    import chipi_sdk.shhh.compute_wallet_address as address
    import chipi_sdk.shhh.oe as oe
    import chipi_sdk.shhh.snip12_hash as snip12

    return constants, core, address, oe, snip12


def token_contracts() -> dict[str, str]:
    """Chipi's chainToken -> its ERC-20 contract address (normalised), from the SDK."""
    _, core, _, _, _ = _sdk()
    return {
        token.value: address_normalize(contract.contract_address)
        for token, contract in core.STARKNET_CONTRACTS.items()
        if contract.contract_address
    }


def _shhh_address(public_key: Any, owner: str) -> tuple[str, str]:
    """(the address, the class hash) of the SHHH account of this STARK owner key, refusing a
    publicKey that is not that address (the SDK computes it the same way, with the same class)."""
    constants, _, address_module, _, _ = _sdk()
    class_hash = constants.WALLET_CLASS_HASHES[constants.WalletType.SHHH]
    verifier = constants.SHHH_VERIFIER_CLASS_HASHES[constants.ShhhSignerKind.STARK]
    expected = address_module.compute_shhh_address(
        address_module.ComputeAddressInput(
            class_hash=int(class_hash, 16),
            primary_kind="STARK",
            pubkey=[int(owner, 16)],
            verifier_class_hash=int(verifier, 16),
        )
    )
    address = address_normalize(public_key)
    if address is None or int(address, 16) != expected:
        raise SandboxApiError(400, "publicKey is not the address of this owner key", "INVALID_PUBLIC_KEY")
    return address, class_hash


def _chain_token(asset_code: str) -> str:
    chain_token = CHAIN_TOKENS.get(asset_code)
    if chain_token is None:
        raise ValueError(f"Unknown token {asset_code!r}; the sandbox knows {', '.join(CHAIN_TOKENS)}.")
    return chain_token


def _to_chain(row: SandboxTransaction) -> ChainTransaction:
    return ChainTransaction(
        tx_hash=row.tx_hash,
        status=CHIPI_STATUSES[row.status],
        token=ASSET_BY_CHAIN_TOKEN.get(row.token, ""),
        amount=int(row.amount),
        from_address=row.sender_address,
        to_address=row.destination_address,
        created_at=row.created_at,
        record_id=str(row.pk),
    )


def _wallet_json(wallet: SandboxWallet) -> dict[str, Any]:
    """GetWalletResponse as the SDK reads it (camelCase, flat)."""
    stamp = wallet.created_at.isoformat()
    return {
        "id": str(wallet.pk),
        "externalUserId": wallet.external_user_id,
        "organizationId": None,
        "apiPublicKey": wallet.api_public_key,
        "publicKey": wallet.address,
        "normalizedPublicKey": wallet.address,
        "encryptedPrivateKey": wallet.encrypted_private_key,
        "isDeployed": True,
        "createdAt": stamp,
        "updatedAt": stamp,
        "walletType": wallet.wallet_type,
        "chain": "STARKNET",
        "classHash": wallet.class_hash,
    }


def _transaction_json(row: SandboxTransaction, api_public_key: str, decimals: int) -> dict[str, Any]:
    """A Transaction as the SDK's model requires it (snake_case names, amountInUSD aliased)."""
    stamp = row.created_at.isoformat()
    return {
        "id": str(row.pk),
        "chain": "STARKNET",
        "api_public_key": api_public_key,
        "transaction_hash": row.tx_hash,
        "block_number": row.block_number,
        "sender_address": row.sender_address,
        "destination_address": row.destination_address,
        "amount": str(row.amount),
        "token": row.token,
        "called_function": row.called_function,
        "amountInUSD": 0.0,
        "status": row.status,
        "is_chipi_wallet": True,
        "created_at": stamp,
        "updated_at": stamp,
    }


class ChipiSandbox:
    """Chipi's API on a simulated chain; one per process (get_sandbox), its chain in the database."""

    def __init__(self) -> None:
        self._faults: dict[str, deque[str]] = {operation: deque() for operation in PATHS}
        self._lock = threading.Lock()

    # --- Fault injection ---------------------------------------------------------------------------

    def inject(self, operation: str, fault: str, times: int = 1) -> None:
        """Make the next `times` requests of `operation` fail with `fault`, consumed in order.

        timeout: the request times out before it acts. error: a 503, nothing happened.
        rate_limited: a 429 with Retry-After. reject: a 400. lost_response: it acts, then times out.
        stale: a read answers as if nothing had happened yet (Chipi's records lagging the chain).
        unreachable: the connection fails (httpx's ConnectError): the request never left.
        pending (execute only): it acts and answers the hash, but its record stays PENDING (not yet
        accepted on chain) until settle() or revert() says how it ended.
        oldest_first (transaction_list only): the page is of the records listed oldest first (Chipi's
        documentation does not say in which order it lists them; the sandbox lists newest first).
        """
        operation = ALIASES.get(operation, operation)
        if operation not in PATHS:
            raise ValueError(f"Unknown operation {operation!r}; choose one of {', '.join(OPERATIONS)}.")
        if fault not in FAULTS:
            raise ValueError(f"Unknown fault {fault!r}; choose one of {', '.join(FAULTS)}.")
        if times < 1:
            raise ValueError("times must be at least 1.")
        if fault == "pending" and operation != "execute":
            raise ValueError("Only an execution's record can be left pending.")
        if fault == "oldest_first" and operation != "transaction_list":
            raise ValueError("Only the transaction list has an order.")
        with self._lock:
            self._faults[operation].extend([fault] * times)

    def pending_faults(self, operation: str) -> list[str]:
        with self._lock:
            return list(self._faults[ALIASES.get(operation, operation)])

    def take_fault(self, operation: str) -> str | None:
        with self._lock:
            queue = self._faults[operation]
            return queue.popleft() if queue else None

    def reset(self, *, chain: bool = False) -> None:
        """Forget every pending fault; with chain=True also wipe the simulated chain."""
        with self._lock:
            for queue in self._faults.values():
                queue.clear()
        if chain:
            with _chain_write():
                for model in (SandboxTransaction, SandboxUsedNonce, SandboxBalance, SandboxWallet):
                    model.objects.all().delete()

    # --- The API -----------------------------------------------------------------------------------

    @staticmethod
    def operation_of(method: str, path: str) -> str | None:
        return next((name for name, route in PATHS.items() if route == (method, path)), None)

    def handle(self, request: SandboxRequest) -> SandboxAnswer:
        """Answer one API request (faults are the HTTP layer's): Chipi's JSON, or its error body."""
        try:
            self._authenticate(request)
            operation = self.operation_of(request.method, request.path)
            if operation is None:
                raise SandboxApiError(404, f"Cannot {request.method} {request.path}", "NOT_FOUND")
            status, payload = getattr(self, f"_api_{operation}")(request)
        except SandboxApiError as exc:
            return SandboxAnswer(exc.status, {"message": exc.message, "code": exc.code})
        return SandboxAnswer(status, payload)

    @staticmethod
    def _authenticate(request: SandboxRequest) -> None:
        if request.headers.get("x-api-key") != SANDBOX_API_KEY:
            raise SandboxApiError(401, "Invalid API key", "INVALID_API_KEY")
        if request.headers.get("authorization") != f"Bearer {settings.CHIPI_SECRET_KEY}":
            raise SandboxApiError(401, "Invalid or missing bearer token", "UNAUTHORIZED")
        if not request.query.get("__chipi_api_version"):
            raise SandboxApiError(400, "__chipi_api_version is required", "VALIDATION_ERROR")

    def _api_prepare_wallet(self, request: SandboxRequest) -> tuple[int, Any]:
        body = _object(request.body)
        felts = body.get("ownerPubkeyFelts")
        owner = felt_canonical(felts[0]) if isinstance(felts, list) and len(felts) == 1 else None
        if body.get("walletType") != "SHHH" or body.get("signerKind") != "STARK" or owner is None:
            raise SandboxApiError(400, "The sandbox makes SHHH wallets with one STARK owner key", "VALIDATION_ERROR")
        address, class_hash = _shhh_address(body.get("publicKey"), owner)
        typed_data = {
            "types": {"StarknetDomain": [], "Deploy": []},
            "primaryType": "Deploy",
            "domain": {"name": "Chipi", "version": "1", "chainId": "SN_MAIN", "revision": "1"},
            "message": {"publicKey": address, "classHash": class_hash},
        }
        return 200, {"typedData": typed_data, "accountClassHash": class_hash}

    def _api_create_wallet(self, request: SandboxRequest) -> tuple[int, Any]:
        body = _object(request.body)
        external_user_id = body.get("externalUserId")
        if not isinstance(external_user_id, str) or not 0 < len(external_user_id) <= MAX_EXTERNAL_USER_ID_LENGTH:
            raise SandboxApiError(400, "externalUserId is required", "VALIDATION_ERROR")
        encrypted = body.get("encryptedPrivateKey")
        deployment = body.get("deploymentData")
        calldata = deployment.get("calldata") if isinstance(deployment, dict) else None
        if not isinstance(encrypted, str) or not encrypted or not isinstance(calldata, list) or len(calldata) != 5:
            raise SandboxApiError(400, "encryptedPrivateKey and deploymentData are required", "VALIDATION_ERROR")
        # The SHHH constructor's calldata: [kind, verifier class, 1, owner key, label].
        owner = felt_canonical(calldata[3]) if isinstance(calldata[3], str) else None
        if owner is None:
            raise SandboxApiError(400, "deploymentData names no owner key", "VALIDATION_ERROR")
        address, class_hash = _shhh_address(body.get("publicKey"), owner)
        with _chain_write():
            if SandboxWallet.objects.filter(external_user_id=external_user_id).exists():
                raise SandboxApiError(409, "Wallet already exists", "WALLET_ALREADY_EXISTS")
            wallet = SandboxWallet.objects.create(
                address=address,
                external_user_id=external_user_id,
                api_public_key=SANDBOX_API_KEY,
                wallet_type=body.get("walletType") or "SHHH",
                owner_public_key=owner,
                encrypted_private_key=encrypted,
                class_hash=class_hash,
            )
        return 201, _wallet_json(wallet)

    def _api_get_wallet(self, request: SandboxRequest) -> tuple[int, Any]:
        wallet = SandboxWallet.objects.filter(external_user_id=request.query.get("externalUserId", "")).first()
        if wallet is None:
            raise SandboxApiError(404, "Wallet not found", "WALLET_NOT_FOUND")
        return 200, _wallet_json(wallet)

    def _api_token_balance(self, request: SandboxRequest) -> tuple[int, Any]:
        address = address_normalize(request.query.get("walletPublicKey"))
        chain_token = request.query.get("chainToken")
        contracts = token_contracts()
        if address is None or chain_token not in contracts or request.query.get("chain") != "STARKNET":
            raise SandboxApiError(400, "walletPublicKey, chainToken and chain are required", "VALIDATION_ERROR")
        if not SandboxWallet.objects.filter(address=address).exists():
            raise SandboxApiError(404, "Wallet not found", "WALLET_NOT_FOUND")
        return 200, {
            "chain": "STARKNET",
            "chainToken": chain_token,
            "chainTokenAddress": contracts[chain_token],
            "decimals": TOKEN_DECIMALS[ASSET_BY_CHAIN_TOKEN[chain_token]],
            "balance": str(self._balance(address, chain_token)),
        }

    def _api_transaction_list(self, request: SandboxRequest) -> tuple[int, Any]:
        address = address_normalize(request.query.get("walletAddress"))
        if address is None:
            raise SandboxApiError(400, "walletAddress is required", "VALIDATION_ERROR")
        page, limit = _positive(request.query, "page", 1), _positive(request.query, "limit", 10)
        if limit > MAX_PAGE_SIZE:
            raise SandboxApiError(400, f"limit is at most {MAX_PAGE_SIZE}", "VALIDATION_ERROR")
        rows = SandboxTransaction.objects.filter(Q(sender_address=address) | Q(destination_address=address))
        total = rows.count()
        order = ("block_number", "pk") if request.fault == "oldest_first" else ("-block_number", "-pk")
        chunk = rows.order_by(*order)[(page - 1) * limit : page * limit]
        data = [
            _transaction_json(row, SANDBOX_API_KEY, TOKEN_DECIMALS.get(ASSET_BY_CHAIN_TOKEN.get(row.token, ""), 18))
            for row in chunk
        ]
        return 200, {"data": data, "total": total, "page": page, "limit": limit, "total_pages": -(-total // limit)}

    def _api_execute(self, request: SandboxRequest) -> tuple[int, Any]:
        body = _object(request.body)
        address = address_normalize(body.get("accountAddress"))
        calldata = body.get("calldata")
        if address is None or not isinstance(calldata, list) or body.get("signerKind") != "STARK":
            raise SandboxApiError(400, "accountAddress, calldata and signerKind are required", "VALIDATION_ERROR")
        wallet = SandboxWallet.objects.filter(address=address).first()
        if wallet is None:
            raise SandboxApiError(404, "Wallet not found", "WALLET_NOT_FOUND")
        execution = _parse_outside_execution(calldata)
        _verify(execution, wallet)
        contracts = {contract: token for token, contract in token_contracts().items()}
        transfers = [_transfer_of(call, contracts) for call in execution.calls]
        pending = request.fault == "pending"
        status = SandboxTransaction.Status.PENDING if pending else SandboxTransaction.Status.SUCCESS
        with _chain_write():
            _, created = SandboxUsedNonce.objects.get_or_create(address=address, nonce=hex(execution.nonce))
            if not created:
                raise SandboxApiError(400, "SHHH: nonce already used", "TRANSACTION_EXECUTION_ERROR")
            # One transaction, one hash: a record per transfer, each with the transaction's hash.
            tx_hash, block = _random_felt_hex(), _next_block()
            for token, recipient, amount in transfers:
                source = _balance_for_update(address, token)
                if source.balance < amount:
                    raise SandboxApiError(
                        400, "u256_sub Overflow: the account holds less than it sends", "TRANSACTION_EXECUTION_ERROR"
                    )
                source.balance -= amount
                source.save(update_fields=["balance"])
                _record(
                    tx_hash,
                    token,
                    amount,
                    sender=address,
                    recipient=recipient,
                    status=status,
                    block=block,
                    nonce=hex(execution.nonce),
                )
        return 200, {"transactionHash": tx_hash}

    # --- Sandbox only ------------------------------------------------------------------------------

    def receive_payment(
        self, *, to_address: str, token: str, amount: int, from_address: str | None = None
    ) -> ChainTransaction:
        """Someone outside pays `amount` raw units of PayGo's asset `token` into one of the sandbox's
        wallets: a SUCCESS transaction, and the wallet's balance grows."""
        (paid,) = self.receive_batch([Payment(to_address, token, amount)], from_address=from_address)
        return paid

    def receive_batch(self, payments: list[Payment], *, from_address: str | None = None) -> list[ChainTransaction]:
        """One transaction from outside that makes every one of `payments` (an exchange's batched
        withdrawal, one multicall): one hash, a SUCCESS record per transfer, in order."""
        sender = address_normalize(from_address) if from_address else _random_felt_hex()
        if sender is None:
            raise ValueError(f"Not a Starknet address: {from_address!r}")
        transfers = []
        for payment in payments:
            amount = payment.amount
            if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount < MAX_RAW_AMOUNT:
                raise ValueError("The amount must be a positive integer of raw units.")
            transfers.append((_chain_token(payment.token), address_normalize(payment.to_address) or "", amount))
        if not transfers:
            raise ValueError("A transaction makes at least one transfer.")
        recipients = {to for _, to, _ in transfers}
        tx_hash = _random_felt_hex()
        with _chain_write():
            if SandboxWallet.objects.filter(address__in=recipients).count() != len(recipients):
                raise ValueError("Not a wallet of this sandbox.")
            block = _next_block()
            rows = [
                _record(tx_hash, token, amount, sender=sender, recipient=to, block=block)
                for token, to, amount in transfers
            ]
        return [_to_chain(row) for row in rows]

    def settle(self, tx_hash: str) -> list[ChainTransaction]:
        """A transaction whose records are PENDING (the "pending" fault) is accepted on chain: SUCCESS."""
        with _chain_write():
            rows = self._transfers_for_update(tx_hash)
            if rows[0].status not in _UNSETTLED:
                raise ValueError(f"The transaction is {rows[0].status}, not pending.")
            SandboxTransaction.objects.filter(pk__in=[row.pk for row in rows]).update(
                status=SandboxTransaction.Status.SUCCESS
            )
        return self.transactions(tx_hash)

    def revert(self, tx_hash: str) -> list[ChainTransaction]:
        """A transaction Chipi accepted, still PENDING (the "pending" fault), ends FAILED: reverted on
        chain, as an execution can after its hash was answered. Its records say FAILED and the money
        of every transfer it made is back where it was (the simulated chain applies a transfer when
        it is executed, so this undoes it). A SUCCESS is final, as on chain: it cannot be reverted.

        As on Starknet, a reverted transaction leaves no state, the account's record that the outside
        execution's nonce was used included: the nonce is free again, and the signed execution (whose
        calldata the reverted transaction made public) can be submitted again within its window."""
        with _chain_write():
            rows = self._transfers_for_update(tx_hash)
            if rows[0].status not in _UNSETTLED:
                raise ValueError(f"The transaction is {rows[0].status}, not pending: it cannot fail now.")
            changes: dict[tuple[str, str], int] = {}
            for row in rows:
                for address, change in ((row.destination_address, -row.amount), (row.sender_address, row.amount)):
                    changes[address, row.token] = changes.get((address, row.token), 0) + change
            # The balances locked in address order, as every chain write takes them.
            for (address, token), change in sorted(changes.items()):
                held = _balance_for_update(address, token)
                if held.balance + change < 0:
                    raise ValueError("The recipient no longer holds what the transfer paid it; it cannot be undone.")
                held.balance += change
                held.save(update_fields=["balance"])
            SandboxTransaction.objects.filter(pk__in=[row.pk for row in rows]).update(
                status=SandboxTransaction.Status.FAILED
            )
            for address, nonce in {(row.sender_address, row.nonce) for row in rows if row.nonce}:
                SandboxUsedNonce.objects.filter(address=address, nonce=nonce).delete()
        return self.transactions(tx_hash)

    @staticmethod
    def _transfers_for_update(tx_hash: str) -> list[SandboxTransaction]:
        rows = list(
            SandboxTransaction.objects.select_for_update().filter(tx_hash=felt_canonical(tx_hash) or "").order_by("pk")
        )
        if not rows:
            raise ValueError(f"No transaction {tx_hash!r} in the sandbox.")
        return rows

    def balance(self, address: str, token: str) -> int:
        """Raw units of PayGo's asset `token` at `address`."""
        return self._balance(address_normalize(address) or "", _chain_token(token))

    def custody_balance(self, token: str) -> int:
        """Raw units of `token` in all of the sandbox's wallets together (all of them PayGo's)."""
        wallets = SandboxWallet.objects.values("address")
        held = SandboxBalance.objects.filter(token=_chain_token(token), address__in=wallets).aggregate(
            total=Sum("balance")
        )
        return int(held["total"] or 0)

    def transactions(self, tx_hash: str) -> list[ChainTransaction]:
        """The records of one transaction: a transfer each, in the order it made them."""
        rows = SandboxTransaction.objects.filter(tx_hash=felt_canonical(tx_hash) or "").order_by("pk")
        return [_to_chain(row) for row in rows]

    def payments_into(self, address: str) -> list[ChainTransaction]:
        """Every transfer into `address`, oldest first."""
        rows = SandboxTransaction.objects.filter(destination_address=address_normalize(address) or "").order_by("pk")
        return [_to_chain(row) for row in rows]

    @staticmethod
    def _balance(address: str, chain_token: str) -> int:
        row = SandboxBalance.objects.filter(address=address, token=chain_token).first()
        return int(row.balance) if row else 0


@dataclass
class _OutsideExecution:
    caller: int
    nonce: int
    execute_after: int
    execute_before: int
    calls: list[tuple[int, int, list[int]]]  # (contract, selector, calldata)
    signature: list[int]


def _parse_outside_execution(calldata: list[Any]) -> _OutsideExecution:
    """execute_from_outside_v2's calldata, in the Cairo serde order the SDK writes."""
    try:
        felts = [int(value, 16) for value in calldata]
        caller, nonce, after, before, count = felts[:5]
        position, calls = 5, []
        for _ in range(count):
            contract, selector, length = felts[position : position + 3]
            calls.append((contract, selector, felts[position + 3 : position + 3 + length]))
            position += 3 + length
        signature_length = felts[position]
        signature = felts[position + 1 : position + 1 + signature_length]
        if len(signature) != signature_length or position + 1 + signature_length != len(felts) or not calls:
            raise ValueError("length mismatch")
    except (TypeError, ValueError, IndexError):
        raise SandboxApiError(400, "Malformed outside execution calldata", "VALIDATION_ERROR") from None
    return _OutsideExecution(caller, nonce, after, before, calls, signature)


def _verify(execution: _OutsideExecution, wallet: SandboxWallet) -> None:
    """What the account checks before it runs an outside execution: the window and the signature."""
    from starknet_py.hash.selector import get_selector_from_name
    from starknet_py.hash.utils import verify_message_signature

    _, _, _, oe, snip12 = _sdk()
    now = int(time.time())
    if not execution.execute_after < now < execution.execute_before:
        raise SandboxApiError(400, "SRC9: outside of the execution window", "TRANSACTION_EXECUTION_ERROR")
    transfer = get_selector_from_name("transfer")
    if any(selector != transfer for _, selector, _ in execution.calls):
        raise SandboxApiError(400, "The sandbox executes ERC-20 transfers only", "VALIDATION_ERROR")
    outside = snip12.OutsideExecution(
        caller=execution.caller,
        nonce=execution.nonce,
        execute_after=execution.execute_after,
        execute_before=execution.execute_before,
        calls=[snip12.Call(contract_address=c, entrypoint="transfer", calldata=d) for c, _, d in execution.calls],
    )
    message_hash = oe.compute_oe_hash(outside, wallet.address, snip12.encode_shortstring("SN_MAIN"))
    envelope = execution.signature
    stark = snip12.encode_shortstring("STARK")
    if len(envelope) != 5 or envelope[:3] != [snip12.SIG_VERSION_V2_SNIP12, 0, stark]:
        raise SandboxApiError(400, "SHHH: bad signature envelope", "TRANSACTION_EXECUTION_ERROR")
    if not verify_message_signature(message_hash, envelope[3:], int(wallet.owner_public_key, 16)):
        raise SandboxApiError(400, "SHHH: signature invalid", "TRANSACTION_EXECUTION_ERROR")


def _transfer_of(call: tuple[int, int, list[int]], contracts: dict[str, str]) -> tuple[str, str, int]:
    contract, _, data = call
    token = contracts.get(f"0x{contract:064x}")
    if token is None or len(data) != 3:
        raise SandboxApiError(400, "Not a transfer of a token Chipi supports", "VALIDATION_ERROR")
    recipient = address_normalize(hex(data[0]))
    amount = data[1] + data[2] * U128
    if recipient is None or not 0 < amount < MAX_RAW_AMOUNT or data[1] >= U128:
        raise SandboxApiError(400, "A transfer names a recipient and a positive u256 amount", "VALIDATION_ERROR")
    return token, recipient, amount


def _balance_for_update(address: str, chain_token: str) -> SandboxBalance:
    SandboxBalance.objects.get_or_create(address=address, token=chain_token)
    return SandboxBalance.objects.select_for_update().get(address=address, token=chain_token)


_UNSETTLED = (SandboxTransaction.Status.PENDING, SandboxTransaction.Status.PROCESSING)


def _record(
    tx_hash: str,
    chain_token: str,
    amount: int,
    *,
    sender: str,
    recipient: str,
    status: str = SandboxTransaction.Status.SUCCESS,
    block: int,
    nonce: str = "",
) -> SandboxTransaction:
    """A transfer, SUCCESS unless told: the recipient's balance grows (the sender's was taken by the
    caller). A PENDING one moves the money too; revert() puts it back."""
    destination = _balance_for_update(recipient, chain_token)
    destination.balance += amount
    destination.save(update_fields=["balance"])
    return SandboxTransaction.objects.create(
        tx_hash=tx_hash,
        status=status,
        token=chain_token,
        amount=amount,
        sender_address=sender,
        destination_address=recipient,
        block_number=block,
        created_at=timezone.now(),
        nonce=nonce,
    )


def _next_block() -> int:
    """The block a new transaction goes in (its transfers share it)."""
    return (SandboxTransaction.objects.aggregate(top=Max("block_number"))["top"] or 0) + 1


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise SandboxApiError(400, "The body must be a JSON object", "VALIDATION_ERROR")
    return body


def _positive(query: dict[str, str], name: str, default: int) -> int:
    value = query.get(name)
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise SandboxApiError(400, f"{name} must be a positive integer", "VALIDATION_ERROR")
    return int(value)


_process_sandbox = ChipiSandbox()


def get_sandbox() -> ChipiSandbox:
    """The process's one sandbox (its faults are per process; its chain is the database's)."""
    return _process_sandbox
