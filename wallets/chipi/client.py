"""ChipiHttpClient: the Chipi REST API over requests, with timeouts, retries that never double-send, and the rate limit.

Retries: reads and wallet creation are idempotent and are retried with exponential backoff and jitter
on 429, 5xx, timeouts and connection errors. A transfer is not: Chipi has no idempotency header, so
once a POST /transfers may have reached Chipi (a read timeout, a dropped connection, a 5xx) it is
never resent here; the caller gets ChipiTimeout and looks the reference up with find_transfer.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple
from urllib.parse import quote

import requests
from django.conf import settings
from urllib3.exceptions import NewConnectionError

from wallets.chipi import ratelimit
from wallets.chipi.errors import ChipiError, ChipiRateLimited, ChipiRejected, ChipiTimeout, ChipiUnavailable
from wallets.chipi.interface import TRANSACTION_STATUSES, ChainTransaction, is_chain_hex


class Paths:
    """Chipi's REST paths, relative to CHIPI_BASE_URL: the one place that spells them."""

    WALLETS = "/wallets"  # POST {externalUserId} -> {address, externalUserId}
    TRANSACTION = "/transactions/{tx_hash}"  # GET -> transaction, or 404
    TRANSACTIONS = "/transactions"  # GET ?reference= -> {transactions: [transaction, ...]}
    TRANSFERS = "/transfers"  # POST {reference, token, amount, toAddress} -> transaction
    CUSTODY_BALANCE = "/custody/balance"  # GET ?token= -> {token, balance}
    RATES = "/rates"  # GET ?from=&to= -> {from, to, rate}


logger = logging.getLogger("wallets.chipi")

_RAW_AMOUNT = re.compile(r"\d{1,80}")
# Connecting should be quick; reading may wait for Chipi to submit the transaction on chain.
_MAX_CONNECT_TIMEOUT = 5.0
_jitter = random.SystemRandom()


def transaction_to_wire(tx: ChainTransaction) -> dict[str, str]:
    """A transaction as Chipi's JSON writes it: camelCase, the amount a raw integer string."""
    return {
        "txHash": tx.tx_hash,
        "status": tx.status,
        "token": tx.token,
        "amount": str(tx.amount),
        "fromAddress": tx.from_address,
        "toAddress": tx.to_address,
        "reference": tx.reference,
    }


def parse_raw_amount(value: Any) -> int:
    """A raw integer amount from the wire (a digit string; an integer is tolerated), or ValueError."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _RAW_AMOUNT.fullmatch(value):
        return int(value)
    raise ValueError(f"Not a raw integer amount: {value!r}")


def transaction_from_wire(data: Any) -> ChainTransaction:
    """Chipi's JSON transaction as a ChainTransaction, or ValueError when it is not one."""
    if not isinstance(data, dict):
        raise ValueError("A transaction is a JSON object.")
    tx_hash, status = data.get("txHash"), data.get("status")
    if not is_chain_hex(tx_hash) or status not in TRANSACTION_STATUSES:
        raise ValueError(f"Malformed transaction: {data!r}")
    from_address, to_address = data.get("fromAddress"), data.get("toAddress")
    token, reference = data.get("token"), data.get("reference") or ""
    if not all(isinstance(value, str) for value in (from_address, to_address, token, reference)):
        raise ValueError(f"Malformed transaction: {data!r}")
    return ChainTransaction(
        tx_hash=tx_hash.lower(),
        status=status,
        token=token,
        amount=parse_raw_amount(data.get("amount")),
        from_address=from_address.lower(),
        to_address=to_address.lower(),
        reference=reference,
    )


def _failed_before_sending(exc: requests.RequestException) -> bool:
    """True only when the request certainly never left: no TCP connection was ever made.

    A connect timeout and a refused or unresolvable connection (urllib3's NewConnectionError) fail
    before a byte is written, so even a transfer may be retried. Anything else -- a read timeout, a
    reset or aborted connection (even on a stale pooled one), a TLS error -- may come after Chipi
    got the request, and counts as "may have acted".
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        return isinstance(getattr(exc.args[0], "reason", None), NewConnectionError)
    return False


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After in seconds (either of its forms), or None when absent or unreadable."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None


def _error_body(response: requests.Response) -> dict[str, Any] | None:
    """Chipi's error body {"error", "message", "code"}, or None when the answer is not one (say a proxy's page)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and ("error" in body or "code" in body) else None


def _error_fields(response: requests.Response) -> tuple[str | None, str]:
    """(code, message) from Chipi's error body, or from the status alone."""
    body = _error_body(response)
    if body is not None:
        code = body.get("code")
        message = body.get("message") or body.get("error")
        if code or message:
            return (str(code) if code else None), str(message or f"Chipi answered HTTP {response.status_code}.")
    return None, f"Chipi answered HTTP {response.status_code}."


class _Failure(NamedTuple):
    error: ChipiError
    retry: bool
    delay: float | None = None  # None: exponential backoff


class ChipiHttpClient:
    """The ChipiGateway used when CHIPI_API_KEY is set."""

    backoff_base = 0.5  # seconds before the first retry, doubled each time, with jitter
    max_backoff = 8.0  # longest sleep between tries; a longer Retry-After goes back to the caller
    max_rate_limit_wait = 5.0  # longest wait for our own rate limiter before raising ChipiRateLimited

    def __init__(
        self,
        *,
        api_key: str | None = None,
        secret_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        session: requests.Session | None = None,
    ):
        self.api_key = settings.CHIPI_API_KEY if api_key is None else api_key
        secret_key = settings.CHIPI_SECRET_KEY if secret_key is None else secret_key
        self.base_url = (settings.CHIPI_BASE_URL if base_url is None else base_url).rstrip("/")
        read_timeout = float(settings.CHIPI_TIMEOUT_SECONDS if timeout is None else timeout)
        self.timeout = (min(_MAX_CONNECT_TIMEOUT, read_timeout), read_timeout)
        self.max_retries = max(0, settings.CHIPI_MAX_RETRIES if max_retries is None else max_retries)
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "x-api-key": self.api_key,
                "Authorization": f"Bearer {secret_key}",
                "Accept": "application/json",
                "User-Agent": "paygo-chipi/1",
            }
        )
        # Injectable so tests never really sleep.
        self.sleep: Callable[[float], Any] = time.sleep

    def __repr__(self) -> str:
        return f"ChipiHttpClient(base_url={self.base_url!r})"

    # --- The gateway -------------------------------------------------------------------------------

    def create_wallet(self, *, external_user_id: str) -> str:
        # Retried like a read: Chipi keys wallets by externalUserId and answers the existing wallet
        # when asked again, so a repeated POST cannot open a second one.
        data = self._request("POST", Paths.WALLETS, body={"externalUserId": external_user_id}, idempotent=True)
        address = self._parse(lambda: data["address"], idempotent=True)
        if not is_chain_hex(address):
            raise ChipiUnavailable(f"Chipi answered a malformed address: {address!r}")
        return address.lower()

    def get_transaction(self, tx_hash: str) -> ChainTransaction | None:
        if not is_chain_hex(tx_hash):
            raise ChipiRejected("A transaction hash is 0x and 64 hex digits.", code="invalid_tx_hash", status=400)
        path = Paths.TRANSACTION.format(tx_hash=quote(tx_hash.lower(), safe=""))
        data = self._request("GET", path, idempotent=True, missing_ok=True)
        return None if data is None else self._parse(lambda: transaction_from_wire(data), idempotent=True)

    def find_transfer(self, reference: str) -> ChainTransaction | None:
        if not isinstance(reference, str) or not reference:
            # An empty reference would match every inbound payment.
            raise ChipiRejected("The reference must be a non-empty string.", code="invalid_reference", status=400)
        data = self._request(
            "GET", Paths.TRANSACTIONS, params={"reference": reference}, idempotent=True, missing_ok=True
        )
        if data is None:
            return None
        found = self._parse(lambda: [transaction_from_wire(item) for item in data["transactions"]], idempotent=True)
        # Trust only an exact match of our reference, and the first one sent if it went twice.
        return next((tx for tx in found if tx.reference == reference), None)

    def send_transfer(self, *, reference: str, token: str, amount: int, to_address: str) -> ChainTransaction:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ChipiRejected(
                "The amount must be a positive integer of raw units.", code="invalid_amount", status=400
            )
        body = {"reference": reference, "token": token, "amount": str(amount), "toAddress": to_address}
        data = self._request("POST", Paths.TRANSFERS, body=body, idempotent=False)
        # Chipi accepted the transfer; an answer we cannot read leaves its outcome unknown to us.
        return self._parse(lambda: transaction_from_wire(data), idempotent=False)

    def custody_balance(self, token: str) -> int:
        data = self._request("GET", Paths.CUSTODY_BALANCE, params={"token": token}, idempotent=True)
        return self._parse(lambda: parse_raw_amount(data["balance"]), idempotent=True)

    def get_rate(self, from_token: str, to_token: str) -> Decimal:
        data = self._request("GET", Paths.RATES, params={"from": from_token, "to": to_token}, idempotent=True)
        rate = self._parse(lambda: Decimal(str(data["rate"])), idempotent=True)
        if not rate.is_finite() or rate <= 0:
            raise ChipiUnavailable(f"Chipi answered a rate that is not a positive number: {rate!r}")
        return rate

    # --- HTTP --------------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """Chipi's JSON answer (None for a 404 when missing_ok), retried as `idempotent` allows."""
        url = self.base_url + path
        attempt = 0
        while True:
            self._wait_for_rate_limit()
            try:
                response = self.session.request(
                    method, url, params=params, json=body, timeout=self.timeout, allow_redirects=False
                )
            except requests.RequestException as exc:
                failure = self._failure_from_exception(exc, f"{method} {path}", idempotent)
            else:
                if 200 <= response.status_code < 300:
                    return self._parse(response.json, idempotent=idempotent)
                if response.status_code == 404 and missing_ok and _error_body(response) is not None:
                    return None
                failure = self._failure_from_response(response, f"{method} {path}", idempotent, missing_ok)
            delay = self._backoff(attempt) if failure.delay is None else failure.delay
            if not failure.retry or attempt >= self.max_retries or delay > self.max_backoff:
                logger.warning("Chipi %s %s failed: %r", method, path, failure.error)
                raise failure.error
            logger.info("Chipi %s %s: %r; retry %d in %.2fs", method, path, failure.error, attempt + 1, delay)
            self.sleep(delay)
            attempt += 1

    def _failure_from_exception(self, exc: requests.RequestException, what: str, idempotent: bool) -> _Failure:
        if _failed_before_sending(exc):
            return _Failure(ChipiUnavailable(f"Could not connect to Chipi for {what}: {exc}"), retry=True)
        if isinstance(exc, requests.Timeout):
            return _Failure(ChipiTimeout(f"Chipi did not answer {what} in time."), retry=idempotent)
        if idempotent:
            return _Failure(ChipiUnavailable(f"Chipi {what} failed: {exc}"), retry=True)
        return _Failure(ChipiTimeout(f"The connection failed during {what}; it may have acted: {exc}"), retry=False)

    def _failure_from_response(
        self, response: requests.Response, what: str, idempotent: bool, missing_ok: bool = False
    ) -> _Failure:
        status = response.status_code
        code, message = _error_fields(response)
        if status == 404 and missing_ok:
            # A 404 without Chipi's error body is not Chipi saying "no such transaction" but a proxy or
            # a wrong base URL; answering None would let the caller conclude a transfer was never sent.
            return _Failure(ChipiUnavailable(f"{what} answered a 404 that is not Chipi's.", status=status), retry=True)
        if status == 429:
            # Chipi refused before acting: safe to retry even a transfer.
            retry_after = _retry_after(response)
            error = ChipiRateLimited(
                message, code=code, status=status, retry_after=self.backoff_base if retry_after is None else retry_after
            )
            return _Failure(error, retry=True, delay=retry_after)
        if 400 <= status < 500:
            return _Failure(ChipiRejected(message, code=code, status=status), retry=False)
        if idempotent:
            return _Failure(ChipiUnavailable(message, code=code, status=status), retry=status >= 500)
        # A 5xx (or anything unexpected) to a transfer: Chipi may have sent it before failing.
        return _Failure(
            ChipiTimeout(f"Chipi answered HTTP {status} to {what}; it may have acted: {message}", status=status),
            retry=False,
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, so workers spread out."""
        ceiling = min(self.max_backoff, self.backoff_base * 2**attempt)
        return ceiling / 2 + _jitter.uniform(0, ceiling / 2)

    def _wait_for_rate_limit(self) -> None:
        waited = 0.0
        while (wait := ratelimit.acquire(api_key=self.api_key)) > 0:
            if waited + wait > self.max_rate_limit_wait:
                raise ChipiRateLimited(
                    "PayGo's Chipi request budget for this minute is spent.",
                    code="client_rate_limited",
                    retry_after=wait,
                )
            self.sleep(wait)
            waited += wait

    @staticmethod
    def _parse(read: Callable[[], Any], *, idempotent: bool) -> Any:
        """Run `read` over Chipi's answer; an unreadable answer is Unavailable, or Timeout after a transfer."""
        try:
            return read()
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            error_class = ChipiUnavailable if idempotent else ChipiTimeout
            raise error_class(f"Chipi answered something unreadable: {exc}") from exc
