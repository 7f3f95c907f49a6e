"""Fixtures for the Chipi gateway: the official SDK against the sandbox over HTTP, never sleeping."""

from __future__ import annotations

import pytest
from django.conf import settings

from wallets.chipi.gateway import ChipiSdkGateway
from wallets.chipi.sandbox import SANDBOX_API_KEY, ChipiSandbox
from wallets.chipi.sandbox_http import SANDBOX_BASE_URL, SandboxTransport


@pytest.fixture
def sandbox(db) -> ChipiSandbox:
    return ChipiSandbox()


@pytest.fixture
def sleeps() -> list[float]:
    """Every sleep the gateway asked for: the tests never really sleep."""
    return []


@pytest.fixture
def gateway(sandbox, sleeps) -> ChipiSdkGateway:
    """The SDK, its base URL the sandbox's, served over HTTP by the sandbox transport; reads retried."""
    made = ChipiSdkGateway(
        api_key=SANDBOX_API_KEY,
        secret_key=settings.CHIPI_SECRET_KEY,
        base_url=SANDBOX_BASE_URL,
        timeout=10,
        max_retries=3,
        transport=SandboxTransport(sandbox),
    )
    made.sleep = sleeps.append
    return made
