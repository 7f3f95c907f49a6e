"""Swap rates: a rate-provider interface and its one real implementation, AVNU's public price API.

Chipi quotes no exchange rates (its only amount endpoint converts USD and MXN), so swaps price one
token in another from AVNU's token prices on Starknet (POST {RATES_BASE_URL}/v3/tokens/prices with
the tokens' contract addresses; each answer carries the token's USD price on Starknet's markets).
A rate is the ratio of two prices, so a rate and its inverse always agree. The tests fake AVNU at
its HTTP boundary (a requests adapter on the provider's session).
"""

from __future__ import annotations

import threading
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any, Protocol

import requests
from django.conf import settings

from wallets.starknet import address_normalize

PRICES_PATH = "/v3/tokens/prices"
RATE_PRECISION = 28


class RateUnavailable(Exception):
    """No trustworthy rate right now (the provider is down, slow, or answered nonsense)."""


class RateProvider(Protocol):
    def rate(self, from_token: str, to_token: str) -> Decimal:
        """Whole units of to_token per whole unit of from_token."""
        ...


def token_contract(code: str) -> str:
    """The token's ERC-20 contract on Starknet, as Chipi's SDK names it (normalised)."""
    from chipi_sdk.models.core import STARKNET_CONTRACTS, ChainToken

    from wallets.chipi.interface import CHAIN_TOKENS

    if code not in CHAIN_TOKENS:
        raise RateUnavailable(f"No Starknet token is known for {code!r}.")
    return address_normalize(STARKNET_CONTRACTS[ChainToken(CHAIN_TOKENS[code])].contract_address)


class AvnuRateProvider:
    """Rates from AVNU's public price API (no key needed)."""

    def __init__(self, *, base_url: str | None = None, timeout: float | None = None):
        self.base_url = (base_url or settings.RATES_BASE_URL).rstrip("/")
        self.timeout = settings.RATES_TIMEOUT_SECONDS if timeout is None else timeout
        self.session = requests.Session()

    def rate(self, from_token: str, to_token: str) -> Decimal:
        contracts = {token_contract(from_token): from_token, token_contract(to_token): to_token}
        try:
            response = self.session.post(
                self.base_url + PRICES_PATH,
                json={"tokens": list(contracts)},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise RateUnavailable(f"The price API could not be reached: {exc}") from None
        if response.status_code != 200:
            raise RateUnavailable(f"The price API answered HTTP {response.status_code}.")
        prices = _prices(response)
        try:
            price_from, price_to = prices[token_contract(from_token)], prices[token_contract(to_token)]
        except KeyError:
            raise RateUnavailable("The price API did not price both tokens.") from None
        with localcontext() as context:
            context.prec = RATE_PRECISION
            return price_from / price_to


def _prices(response: requests.Response) -> dict[str, Decimal]:
    """{contract address: USD price} from AVNU's answer, keeping only positive finite prices."""
    try:
        items: Any = response.json()
    except ValueError:
        raise RateUnavailable("The price API answered something that is not JSON.") from None
    prices = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        address = address_normalize(item.get("address"))
        market = item.get("starknetMarket") or item.get("globalMarket") or {}
        try:
            price = Decimal(str(market.get("usd"))) if isinstance(market, dict) else None
        except InvalidOperation:
            price = None
        if address and price is not None and price.is_finite() and price > 0:
            prices[address] = price
    return prices


_local = threading.local()


def get_rate_provider() -> RateProvider:
    """This thread's provider (a requests.Session is not promised to be thread-safe)."""
    made_from = (settings.RATES_BASE_URL, settings.RATES_TIMEOUT_SECONDS)
    if getattr(_local, "made_from", None) != made_from:
        _local.provider = AvnuRateProvider()
        _local.made_from = made_from
    return _local.provider
