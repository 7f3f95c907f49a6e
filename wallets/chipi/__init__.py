"""The Chipi Pay gateway: one interface, the official SDK behind it, and a database-backed sandbox
that serves Chipi's API (with fault injection) to the SDK over HTTP.

Callers use get_gateway() and the names below. The package is also the `chipi_sandbox` app, which
owns the sandbox's tables; ChipiSandbox is imported lazily so the package loads before the models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wallets.chipi.errors import ChipiError, ChipiRateLimited, ChipiRejected, ChipiTimeout, ChipiUnavailable
from wallets.chipi.gateway import ChipiSdkGateway, get_gateway
from wallets.chipi.interface import TOKEN_DECIMALS, ChainTransaction, ChipiGateway, ChipiWallet
from wallets.chipi.webhooks import SIGNATURE_HEADER, sign_webhook, verify_webhook_signature

if TYPE_CHECKING:
    from wallets.chipi.sandbox import ChipiSandbox

__all__ = [
    "SIGNATURE_HEADER",
    "TOKEN_DECIMALS",
    "ChainTransaction",
    "ChipiError",
    "ChipiGateway",
    "ChipiRateLimited",
    "ChipiRejected",
    "ChipiSandbox",
    "ChipiSdkGateway",
    "ChipiTimeout",
    "ChipiUnavailable",
    "ChipiWallet",
    "get_gateway",
    "sign_webhook",
    "verify_webhook_signature",
]


def __getattr__(name: str) -> Any:
    if name == "ChipiSandbox":
        from wallets.chipi.sandbox import ChipiSandbox

        return ChipiSandbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
