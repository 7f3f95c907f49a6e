"""Fixtures for the Chipi gateway: a fresh sandbox, and the HTTP client served by it through one fake boundary."""

from __future__ import annotations

import pytest

from wallets.chipi.client import ChipiHttpClient
from wallets.chipi.sandbox import ChipiSandbox
from wallets.chipi.sandbox_http import SandboxHttpAdapter

API_KEY = "pk_test_gateway"
SECRET_KEY = "sk_test_gateway"
BASE_URL = "https://chipi.test/v1"


@pytest.fixture
def sandbox(db) -> ChipiSandbox:
    return ChipiSandbox()


@pytest.fixture
def sleeps() -> list[float]:
    """Every sleep the client asked for: the tests never really sleep."""
    return []


@pytest.fixture
def http_client(sleeps) -> ChipiHttpClient:
    client = ChipiHttpClient(api_key=API_KEY, secret_key=SECRET_KEY, base_url=BASE_URL, timeout=10, max_retries=3)
    client.sleep = sleeps.append
    return client


@pytest.fixture
def adapter(sandbox, http_client) -> SandboxHttpAdapter:
    """The one fake HTTP boundary: Chipi's REST API served from the sandbox, mounted on the client."""
    return SandboxHttpAdapter(sandbox, base_url=BASE_URL, api_key=API_KEY, secret_key=SECRET_KEY).mount_on(http_client)


@pytest.fixture(params=["sandbox", "http"])
def gateway(request, sandbox):
    """Each behaviour test runs against the sandbox itself and against the HTTP client served by it."""
    if request.param == "sandbox":
        return sandbox
    request.getfixturevalue("adapter")
    return request.getfixturevalue("http_client")


def fund(sandbox: ChipiSandbox, token: str, amount: int, *, user: str = "funder") -> str:
    """Pay `amount` into a deposit address of `user`, so custody holds it; returns the address."""
    address = sandbox.create_wallet(external_user_id=user)
    sandbox.receive_payment(to_address=address, token=token, amount=amount)
    return address
