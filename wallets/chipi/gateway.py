"""get_gateway(): the Chipi gateway for this process, chosen by settings."""

from __future__ import annotations

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from wallets.chipi.client import ChipiHttpClient
from wallets.chipi.interface import ChipiGateway

# One client per thread (a requests.Session is not promised to be thread-safe), rebuilt when the
# settings it was made from change (override_settings in tests).
_local = threading.local()


def _client_settings() -> tuple:
    return (
        settings.CHIPI_API_KEY,
        settings.CHIPI_SECRET_KEY,
        settings.CHIPI_BASE_URL,
        settings.CHIPI_TIMEOUT_SECONDS,
        settings.CHIPI_MAX_RETRIES,
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
    """The HTTP client when settings.CHIPI_API_KEY is set, else the process's sandbox."""
    if sandbox_in_use():
        # Imported here: the sandbox uses this app's models, which must not load with the package.
        from wallets.chipi.sandbox import get_sandbox

        return get_sandbox()
    made_from = _client_settings()
    if getattr(_local, "made_from", None) != made_from:
        _local.client = ChipiHttpClient()
        _local.made_from = made_from
    return _local.client
