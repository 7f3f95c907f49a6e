"""get_gateway(): Chipi through its official Python SDK (chipi-stack), live or against the sandbox.

ChipiSdkGateway is the one place PayGo calls Chipi. Every request is the SDK's own: wallets are
made with its create_wallet (prepare-creation -> create, the SDK's default SHHH wallet with a STARK
key it generates and encrypts with the encryptKey PayGo gives it), looked up with get_wallet,
balances read with get_token_balance, records with get_transaction_list, and transfers signed and
executed with its execute_shhh_sponsored_raw_sync (the SHHH path of its execute_transaction, called
directly so that PayGo chooses the outside execution's nonce: the outbox records the nonce before
executing, and an account accepts a nonce once).

The SDK is not changed, with one seam: it makes its httpx clients with a fixed 30 s timeout and no
transport argument, so they are replaced here by clients with PayGo's timeout and, in sandbox mode,
the sandbox's transport at its base URL. Its async wallet creation runs through a transport that
blocks, so it completes without an event loop (and inside a Django request thread).

Retries: reads are retried with backoff on 429, 5xx, timeouts and connection errors; wallet creation
and executions never are (Chipi has no idempotency: the callers look up before trying again).
"""

from __future__ import annotations

import importlib
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError

from wallets.chipi import ratelimit
from wallets.chipi.errors import ChipiError, ChipiRateLimited, ChipiRejected, ChipiTimeout, ChipiUnavailable
from wallets.chipi.interface import (
    ASSET_BY_CHAIN_TOKEN,
    CHAIN_TOKENS,
    CHIPI_STATUSES,
    PENDING,
    TOKEN_DECIMALS,
    ChainTransaction,
    ChipiGateway,
    ChipiWallet,
    raw_amount,
)
from wallets.starknet import address_normalize, tx_hash_canonical

logger = logging.getLogger("wallets.chipi")

_MAX_CONNECT_TIMEOUT = 5.0
_U128 = 1 << 128
# transaction-list pages read per look-up (100 records each): a wallet's recent history; and, for a
# look-up back to a given instant (an outbox row in doubt, made before the treasury's last 500
# transfers), as far as that, within this bound: half of Chipi's 100 requests a minute per key (a
# look-up past it would be cut off by the budget at every try, and starve the other calls).
MAX_TRANSACTION_PAGES = 5
MAX_TRANSACTION_PAGES_BACK = 50
_jitter = random.SystemRandom()
# The longest Retry-After taken from Chipi (a date far off, or a number of hours, is no plan).
MAX_RETRY_AFTER = 3600.0


class _RetryAfterNoted(httpx.BaseTransport):
    """The transport, noting for the thread that sent it how long Chipi's 429 said to wait: the SDK
    raises its error without the answer's headers, and translate() reads it from here. (Ignored,
    a read was tried again after PayGo's own quarter second, and a rate-limited send a second later,
    whatever Chipi had said.)"""

    noted = threading.local()

    def __init__(self, inner: httpx.BaseTransport):
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.noted.retry_after = _retry_after(response) if response.status_code == 429 else None
        return response

    def close(self) -> None:
        self.inner.close()


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After's seconds (a number, or an HTTP date), within MAX_RETRY_AFTER; None if unreadable."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value) if value.isascii() and value.replace(".", "", 1).isdigit() else None
        if seconds is None:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError, OverflowError):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


class _BlockingAsyncTransport(httpx.AsyncBaseTransport):
    """The SDK's async client over a blocking transport: its coroutine never suspends, so it runs
    to the end without an event loop (see _complete)."""

    def __init__(self, transport: httpx.BaseTransport):
        self.transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        blocking = httpx.Request(request.method, request.url, headers=request.headers, content=await request.aread())
        response = self.transport.handle_request(blocking)
        content = response.read()
        response.close()
        return httpx.Response(response.status_code, headers=response.headers, content=content, request=request)


def preload_sdk() -> threading.Thread:
    """Import the SDK in the background: it takes seconds (starknet-py, sympy), which the first
    request opening a wallet would otherwise wait for. Servers call this at start (paygo/asgi.py);
    a request that needs the SDK meanwhile waits on the import lock."""
    thread = threading.Thread(target=importlib.import_module, args=("chipi_sdk",), name="chipi-sdk-import", daemon=True)
    thread.start()
    return thread


def _complete(coroutine: Coroutine) -> Any:
    """Run a coroutine that never suspends (the SDK's async code over _BlockingAsyncTransport)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("The Chipi SDK suspended on something other than its HTTP transport.")


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from or during (the SDK wraps errors in its own)."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        chain.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return chain


def translate(exc: BaseException, *, idempotent: bool) -> ChipiError:
    """What an SDK failure tells PayGo: refused for good, rate limited, down, or unknown outcome."""
    from chipi_sdk.errors import ChipiApiError

    chain = _causes(exc)
    api_error = next((item for item in chain if isinstance(item, ChipiApiError)), None)
    unknown = ChipiUnavailable if idempotent else ChipiTimeout
    if api_error is not None:
        status, code, message = api_error.status, api_error.code, api_error.message
        if status == 429:
            # Refused before acting: safe to retry, once Chipi's Retry-After has passed (noted by the
            # transport, as the SDK does not pass it on), never sooner than PayGo's own backoff.
            said = getattr(_RetryAfterNoted.noted, "retry_after", None) or 0.0
            return ChipiRateLimited(
                message, code=code, status=status, retry_after=max(ChipiSdkGateway.backoff_base, said)
            )
        if status is not None and 400 <= status < 500:
            return ChipiRejected(message, code=code, status=status)
        return unknown(f"Chipi answered HTTP {status}: {message}", code=code, status=status)
    if any(isinstance(item, httpx.ConnectError | httpx.ConnectTimeout) for item in chain):
        return ChipiUnavailable(f"Could not connect to Chipi: {exc}")  # nothing was sent
    if any(isinstance(item, httpx.TimeoutException) for item in chain):
        return ChipiTimeout(f"Chipi did not answer in time: {exc}")
    return unknown(f"Chipi's answer could not be used: {type(exc).__name__}: {exc}")


class ChipiSdkGateway:
    """The ChipiGateway: the official SDK, pointed at Chipi or (transport=) at the sandbox."""

    backoff_base = 0.5  # seconds before the first retry of a read, doubled each time, with jitter
    max_backoff = 8.0
    max_rate_limit_wait = 5.0  # longest wait for PayGo's own rate limiter before ChipiRateLimited

    def __init__(
        self,
        *,
        api_key: str,
        secret_key: str,
        base_url: str,
        timeout: float,
        max_retries: int,
        transport: httpx.BaseTransport | None = None,
    ):
        from chipi_sdk import ChipiSDK
        from chipi_sdk.models.core import ChipiSDKConfig

        self.api_key = api_key
        self._secret_key = secret_key
        self.base_url = base_url.rstrip("/")
        self.max_retries = max(0, max_retries)
        self.sdk = ChipiSDK(ChipiSDKConfig(api_public_key=api_key, api_secret_key=secret_key, alpha_url=self.base_url))
        self.transport = transport or httpx.HTTPTransport(retries=0)
        limits = httpx.Timeout(float(timeout), connect=min(_MAX_CONNECT_TIMEOUT, float(timeout)))
        # The seam (see the module's docstring): the SDK's clients, with PayGo's timeout and transport.
        noted = _RetryAfterNoted(self.transport)
        self.sdk.client._sync_client = httpx.Client(transport=noted, timeout=limits, follow_redirects=False)
        self.sdk.client._async_client = httpx.AsyncClient(
            transport=_BlockingAsyncTransport(noted), timeout=limits, follow_redirects=False
        )
        self.sleep: Callable[[float], Any] = time.sleep  # injectable: tests never really sleep

    def __repr__(self) -> str:
        return f"ChipiSdkGateway(base_url={self.base_url!r})"

    # --- The gateway -------------------------------------------------------------------------------

    def create_wallet(self, *, external_user_id: str, encrypt_key: str) -> ChipiWallet:
        from chipi_sdk.models.wallet import CreateWalletParams

        # Two requests (prepare-creation, create); never retried: a second create is refused.
        params = CreateWalletParams(encrypt_key=encrypt_key, external_user_id=external_user_id)
        made = self._once(lambda: _complete(self.sdk.acreate_wallet(params=params)), cost=2)
        return _wallet(made)

    def get_wallet(self, *, external_user_id: str) -> ChipiWallet | None:
        from chipi_sdk.models.wallet import GetWalletParams

        found = self._read(lambda: self.sdk.get_wallet(GetWalletParams(external_user_id=external_user_id)))
        return None if found is None else _wallet(found)

    def wallet_transactions(
        self, address: str, *, since: datetime | None = None, max_pages: int | None = None
    ) -> list[ChainTransaction]:
        from chipi_sdk.models.transaction import GetTransactionListQuery

        records: list[ChainTransaction] = []
        # Each record once: one written since the first page was read pushes the others down a
        # place, and the last of a page comes again at the top of the next. Twice, a transfer is two
        # deposits (they are told apart by count within their transaction, services.deposits_in).
        seen: set[str] = set()
        last_page = MAX_TRANSACTION_PAGES if since is None else MAX_TRANSACTION_PAGES_BACK
        if max_pages is not None:
            last_page = max(1, min(last_page, max_pages))

        def read(page: int):
            query = GetTransactionListQuery(wallet_address=address, page=page, limit=100)
            answer = self._read(lambda: self.sdk.get_transaction_list(query))
            for item in map(_chain_transaction, answer.data):
                if item is not None and (not item.record_id or item.record_id not in seen):
                    seen.add(item.record_id)
                    records.append(item)
            return answer

        def reaches_since(answer) -> bool:
            return since is not None and bool(answer.data) and min(_aware(i.created_at) for i in answer.data) < since

        first = read(1)
        # Read from the newest page to the oldest, and no further back than `since`. Chipi's
        # documentation does not say in which order it lists the records: newest first (as the
        # sandbox does) the newest page is the first; oldest first it is the last, and the first page
        # read holds the oldest records, which would have stopped the reading before anything new.
        newest = [_aware(i.created_at) for i in first.data if i.created_at is not None]
        oldest_first = len(newest) > 1 and newest[0] < newest[-1]
        if oldest_first:
            logger.warning("Chipi lists the records of %s oldest first: read from its last page back", address)
            pages, done = list(range(first.total_pages, 1, -1)), False
        else:
            pages, done = list(range(2, first.total_pages + 1)), reaches_since(first)
        read_count = 1
        for page in pages:
            if done or read_count >= last_page:
                break
            done = reaches_since(read(page))
            read_count += 1
        else:
            done = True  # every page read
        if not done and since is not None:
            # Past the caller's own bound (max_pages) it knew it might stop short: a warning.
            level = logging.ERROR if max_pages is None else logging.WARNING
            logger.log(level, "Chipi's records of %s read back %d pages without reaching %s", address, last_page, since)
        return records

    def token_balance(self, address: str, token: str) -> int:
        from chipi_sdk.models.wallet import GetTokenBalanceParams

        # Built unvalidated, with the enums' values: validated, the SDK dumps its ChainToken and Chain
        # enums into the query, which Python 3.11+ writes "chainToken=ChainToken.USDC&chain=Chain.STARKNET"
        # (str() of a str-mixin Enum), and Chipi (like the sandbox) knows no such token.
        params = GetTokenBalanceParams.model_construct(
            wallet_public_key=address, chain_token=CHAIN_TOKENS[token], chain="STARKNET", external_user_id=None
        )
        answer = self._read(lambda: self.sdk.get_token_balance(params))
        try:
            return raw_amount(answer.balance, answer.decimals)
        except ValueError as exc:
            raise ChipiUnavailable(f"Chipi answered an unreadable balance: {exc}") from None

    def execute_transfer(
        self, *, wallet: ChipiWallet, encrypt_key: str, token: str, amount: int, to_address: str, nonce: int
    ) -> str:
        from chipi_sdk.models.core import STARKNET_CONTRACTS, ChainToken
        from chipi_sdk.shhh.execute_paymaster_raw import execute_shhh_sponsored_raw_sync
        from chipi_sdk.shhh.snip12_hash import Call

        if wallet.wallet_type != "SHHH":
            raise ChipiRejected(f"PayGo signs for SHHH wallets only, not {wallet.wallet_type}.", code="wallet_type")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount < _U128 * _U128:
            raise ChipiRejected("The amount must be a positive integer of raw units.", code="invalid_amount")
        contract = STARKNET_CONTRACTS[ChainToken(CHAIN_TOKENS[token])].contract_address
        call = Call(
            contract_address=contract,
            entrypoint="transfer",
            calldata=[to_address, hex(amount % _U128), hex(amount // _U128)],  # recipient, u256 low, high
        )
        tx_hash = self._once(
            lambda: execute_shhh_sponsored_raw_sync(
                client=self.sdk.client,
                bearer_token=self._secret_key,
                wallet_public_key=wallet.address,
                wallet_encrypted_private_key=wallet.encrypted_private_key,
                encrypt_key=encrypt_key,
                calls=[call],
                nonce=nonce,
            )
        )
        canonical = tx_hash_canonical(tx_hash)
        if canonical is None:
            raise ChipiTimeout(f"Chipi executed but answered a malformed hash: {tx_hash!r}")
        return canonical

    # --- Calling the SDK ---------------------------------------------------------------------------

    def _once(self, call: Callable[[], Any], *, cost: int = 1) -> Any:
        """A call that may act: never retried; an unknown outcome is ChipiTimeout."""
        self._wait_for_rate_limit(cost)
        try:
            return call()
        except ChipiError:
            raise
        except Exception as exc:
            error = translate(exc, idempotent=False)
            logger.warning("Chipi call failed: %r", error)
            raise error from None

    def _read(self, call: Callable[[], Any]) -> Any:
        """A read, retried with backoff while Chipi is down, slow or rate limiting."""
        attempt = 0
        while True:
            self._wait_for_rate_limit(1)
            try:
                return call()
            except Exception as exc:
                error = translate(exc, idempotent=True)
            delay = self._backoff(attempt)
            if isinstance(error, ChipiRateLimited):
                delay = max(delay, error.retry_after)  # not before Chipi said
            # A wait longer than a read's backoff ever is: the caller is told, rather than held.
            if isinstance(error, ChipiRejected) or attempt >= self.max_retries or delay > self.max_backoff:
                logger.warning("Chipi read failed: %r", error)
                raise error from None
            logger.info("Chipi read: %r; retry %d in %.2fs", error, attempt + 1, delay)
            self.sleep(delay)
            attempt += 1

    def _acquire(self, cost: int) -> float:
        """The shared budget's answer; a cache that cannot count it (Redis failed or silent) is
        Chipi unavailable to PayGo: nothing is sent, and callers already know what to do then (a
        sign-up opens its wallet on first use, the outbox tries again)."""
        try:
            return ratelimit.acquire(cost, api_key=self.api_key)
        except RedisError as exc:
            raise ChipiUnavailable(f"PayGo's Chipi request budget could not be counted: {exc}") from exc

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, so workers spread out."""
        ceiling = min(self.max_backoff, self.backoff_base * 2**attempt)
        return ceiling / 2 + _jitter.uniform(0, ceiling / 2)

    def _wait_for_rate_limit(self, cost: int) -> None:
        waited = 0.0
        while (wait := self._acquire(cost)) > 0:
            if waited + wait > self.max_rate_limit_wait:
                raise ChipiRateLimited(
                    "PayGo's Chipi request budget for this minute is spent.",
                    code="client_rate_limited",
                    retry_after=wait,
                )
            self.sleep(wait)
            waited += wait


def _wallet(answer: Any) -> ChipiWallet:
    address = address_normalize(answer.public_key)
    if address is None:
        raise ChipiUnavailable(f"Chipi answered a malformed wallet address: {answer.public_key!r}")
    wallet_type = getattr(answer.wallet_type, "value", answer.wallet_type)
    return ChipiWallet(address=address, encrypted_private_key=answer.encrypted_private_key, wallet_type=wallet_type)


def _chain_transaction(record: Any) -> ChainTransaction | None:
    """A record of transaction-list in PayGo's terms; None for one that is not a readable transfer."""
    tx_hash = tx_hash_canonical(record.transaction_hash)
    sender, recipient = address_normalize(record.sender_address), address_normalize(record.destination_address)
    token = ASSET_BY_CHAIN_TOKEN.get(record.token, "")
    if tx_hash is None or sender is None or recipient is None or not token:
        return None
    try:
        amount = raw_amount(record.amount, TOKEN_DECIMALS[token])
    except ValueError:
        return None
    status = CHIPI_STATUSES.get(record.status, PENDING)
    return ChainTransaction(
        tx_hash=tx_hash,
        status=status,
        token=token,
        amount=amount,
        from_address=sender,
        to_address=recipient,
        created_at=_aware(record.created_at),
        record_id=str(record.id),
    )


def _aware(moment: datetime) -> datetime:
    """A record's time, in UTC when Chipi wrote it without a zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# One gateway per thread, rebuilt when the settings it was made from change (override_settings).
_local = threading.local()


def _gateway_settings() -> tuple:
    return (
        settings.CHIPI_API_KEY,
        settings.CHIPI_SECRET_KEY,
        settings.CHIPI_BASE_URL,
        settings.CHIPI_TIMEOUT_SECONDS,
        settings.CHIPI_MAX_RETRIES,
        settings.CHIPI_SANDBOX,
    )


def sandbox_in_use() -> bool:
    """Whether this process's gateway is the sandbox, whose deposits are simulated money: without an
    API key, and only where it was chosen (CHIPI_SANDBOX, on by default with DEBUG on). The settings
    refuse to start with neither; this refuses too, should they be changed under it."""
    if settings.CHIPI_API_KEY:
        return False
    if not settings.CHIPI_SANDBOX:
        raise ImproperlyConfigured("No Chipi gateway: set CHIPI_API_KEY, or CHIPI_SANDBOX=1 for the sandbox.")
    return True


def get_gateway() -> ChipiGateway:
    """The SDK pointed at Chipi when settings.CHIPI_API_KEY is set, else at the process's sandbox."""
    sandbox = sandbox_in_use()
    made_from = _gateway_settings()
    if getattr(_local, "made_from", None) != made_from:
        common = {"timeout": settings.CHIPI_TIMEOUT_SECONDS, "max_retries": settings.CHIPI_MAX_RETRIES}
        if sandbox:
            # Imported here: the sandbox uses this app's models, which must not load with the package.
            from wallets.chipi.sandbox import SANDBOX_API_KEY, get_sandbox
            from wallets.chipi.sandbox_http import SANDBOX_BASE_URL, SandboxTransport

            _local.gateway = ChipiSdkGateway(
                api_key=SANDBOX_API_KEY,
                secret_key=settings.CHIPI_SECRET_KEY,
                base_url=SANDBOX_BASE_URL,
                transport=SandboxTransport(get_sandbox()),
                **common,
            )
        else:
            _local.gateway = ChipiSdkGateway(
                api_key=settings.CHIPI_API_KEY,
                secret_key=settings.CHIPI_SECRET_KEY,
                base_url=settings.CHIPI_BASE_URL,
                **common,
            )
        _local.made_from = made_from
    return _local.gateway
