"""get_gateway() and the Chipi settings: the SDK pointed at the sandbox without an API key, at Chipi with one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.test import override_settings

from wallets.chipi import ChipiGateway, ChipiSdkGateway, get_gateway
from wallets.chipi.sandbox import SANDBOX_API_KEY, get_sandbox
from wallets.chipi.sandbox_http import SANDBOX_BASE_URL, SandboxTransport

ROOT = Path(__file__).resolve().parents[3]
LIVE_KEYS = {"CHIPI_WEBHOOK_SECRET": "whsec_live", "CHIPI_KEY_ENCRYPTION_KEY": "master-" + "m" * 40}


def test_without_an_api_key_it_is_the_sdk_against_the_process_sandbox():
    assert settings.CHIPI_API_KEY == ""

    gateway = get_gateway()

    assert isinstance(gateway, ChipiSdkGateway)
    assert isinstance(gateway, ChipiGateway)
    assert isinstance(gateway.transport, SandboxTransport)
    assert gateway.transport.serving.sandbox is get_sandbox()
    assert gateway.sdk.client.base_url == SANDBOX_BASE_URL
    assert gateway.sdk.client.api_public_key == SANDBOX_API_KEY
    assert get_gateway() is gateway  # one per thread


@override_settings(CHIPI_API_KEY="pk_live_1", CHIPI_SECRET_KEY="sk_live_1", CHIPI_BASE_URL="https://chipi.test/v1/")
def test_with_an_api_key_it_is_the_sdk_made_from_settings():
    gateway = get_gateway()

    assert isinstance(gateway, ChipiSdkGateway)
    assert isinstance(gateway.transport, httpx.HTTPTransport)
    assert gateway.sdk.client.base_url == "https://chipi.test/v1"  # the SDK adds its /v1 itself
    assert gateway.sdk.client.api_public_key == "pk_live_1"
    assert gateway.sdk.api_secret_key == "sk_live_1"
    client = gateway.sdk.client._sync_client
    assert (client.timeout.connect, client.timeout.read) == (5.0, 10.0)  # PayGo's, not the SDK's 30 s
    assert gateway.max_retries == 0  # pytest.ini: the suite never waits between retries
    assert get_gateway() is gateway


def test_a_change_of_settings_makes_a_new_gateway():
    with override_settings(CHIPI_API_KEY="pk_a", CHIPI_SECRET_KEY="sk_a"):
        first = get_gateway()
    with override_settings(CHIPI_API_KEY="pk_b", CHIPI_SECRET_KEY="sk_b", CHIPI_TIMEOUT_SECONDS=2):
        second = get_gateway()

    assert second is not first
    assert second.sdk.client.api_public_key == "pk_b"
    assert second.sdk.client._sync_client.timeout.read == 2.0


def test_the_defaults():
    assert settings.CHIPI_BASE_URL == "https://api.chipipay.com/v1"
    assert settings.CHIPI_TIMEOUT_SECONDS == 10
    assert settings.CHIPI_MAX_RETRIES == 0  # pytest.ini; 3 where nothing sets it
    assert settings.RATES_BASE_URL == "https://avnu.invalid"  # pytest.ini: nothing reaches AVNU
    assert settings.CHIPI_RATE_LIMIT_PER_MINUTE == 100
    assert "wallets.chipi" in settings.INSTALLED_APPS
    assert settings.INSTALLED_APPS.index("wallets.chipi") == settings.INSTALLED_APPS.index("wallets") + 1


def chipi_secret_with(**environment: str) -> subprocess.CompletedProcess:
    """Load the settings in a fresh interpreter with this environment (and no CHIPI_* inherited)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CHIPI_")}
    env |= {"SECRET_KEY": "s" * 50, "JWT_SECRET": "j" * 50, **environment}
    return subprocess.run(
        [sys.executable, "-c", "from paygo import settings; print(repr(settings.CHIPI_SECRET_KEY))"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_development_sandbox_signs_with_this_installations_generated_secret():
    loaded = chipi_secret_with(DEBUG="1")

    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == repr(settings.CHIPI_SECRET_KEY)
    assert loaded.stdout.strip() != "'sk_sandbox_dev'"  # the constant it was, which forged webhooks


def test_a_real_key_uses_its_secret_from_the_environment():
    loaded = chipi_secret_with(DEBUG="0", CHIPI_API_KEY="pk_live", CHIPI_SECRET_KEY="sk_live", **LIVE_KEYS)

    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "'sk_live'"


@pytest.mark.parametrize("debug", ["0", "1"])
def test_an_api_key_without_the_master_key_refuses_to_start(debug):
    loaded = chipi_secret_with(
        DEBUG=debug, CHIPI_API_KEY="pk_live", CHIPI_SECRET_KEY="sk_live", CHIPI_WEBHOOK_SECRET="whsec_live"
    )

    assert loaded.returncode != 0
    assert "CHIPI_KEY_ENCRYPTION_KEY is required" in loaded.stderr


@pytest.mark.parametrize(
    ("environment", "says"),
    [
        ({"DEBUG": "0"}, "CHIPI_SANDBOX=1"),  # no key and no choice: never the sandbox by default
        ({"DEBUG": "1", "CHIPI_SANDBOX": "0"}, "CHIPI_SANDBOX=1"),
        ({"DEBUG": "0", "CHIPI_SANDBOX": "1"}, "CHIPI_SECRET_KEY"),  # the sandbox's webhook key is required too
        ({"DEBUG": "0", "CHIPI_SANDBOX": "1", "CHIPI_SECRET_KEY": "sk"}, "CHIPI_WEBHOOK_SECRET"),
        ({"DEBUG": "0", "CHIPI_SANDBOX": "1", "CHIPI_SECRET_KEY": "sk", "CHIPI_WEBHOOK_SECRET": "wh"}, "CHIPI_KEY_ENC"),
        ({"DEBUG": "0", "CHIPI_SANDBOX": "1", "CHIPI_API_KEY": "pk_live", "CHIPI_SECRET_KEY": "sk_live"}, "both set"),
    ],
)
def test_without_a_clear_choice_of_gateway_it_refuses_to_start(environment, says):
    loaded = chipi_secret_with(**environment)

    assert loaded.returncode != 0
    assert "ImproperlyConfigured" in loaded.stderr
    assert says in loaded.stderr


@pytest.mark.parametrize("debug", ["0", "1"])
def test_an_api_key_without_its_secret_refuses_to_start(debug):
    loaded = chipi_secret_with(DEBUG=debug, CHIPI_API_KEY="pk_live")

    assert loaded.returncode != 0
    assert "CHIPI_SECRET_KEY is required" in loaded.stderr


def test_servers_load_the_sdk_in_the_background_at_start():
    from wallets.chipi.gateway import preload_sdk

    thread = preload_sdk()
    thread.join(timeout=120)

    assert not thread.is_alive()
    assert "chipi_sdk" in sys.modules
    assert "preload_sdk()" in (ROOT / "paygo" / "asgi.py").read_text()
