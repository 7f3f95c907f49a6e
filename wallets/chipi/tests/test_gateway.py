"""get_gateway() and the Chipi settings: the sandbox without an API key, the HTTP client with one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from wallets.chipi import ChipiGateway, ChipiHttpClient, ChipiSandbox, get_gateway
from wallets.chipi.sandbox import get_sandbox

ROOT = Path(__file__).resolve().parents[3]


def test_without_an_api_key_it_is_the_process_sandbox():
    assert settings.CHIPI_API_KEY == ""

    gateway = get_gateway()

    assert isinstance(gateway, ChipiSandbox)
    assert gateway is get_sandbox() is get_gateway()
    assert isinstance(gateway, ChipiGateway)


@override_settings(CHIPI_API_KEY="pk_live_1", CHIPI_SECRET_KEY="sk_live_1", CHIPI_BASE_URL="https://chipi.test/v1/")
def test_with_an_api_key_it_is_the_http_client_made_from_settings():
    gateway = get_gateway()

    assert isinstance(gateway, ChipiHttpClient)
    assert isinstance(gateway, ChipiGateway)
    assert gateway.base_url == "https://chipi.test/v1"
    assert gateway.session.headers["x-api-key"] == "pk_live_1"
    assert gateway.session.headers["Authorization"] == "Bearer sk_live_1"
    assert gateway.timeout == (5.0, 10.0)
    assert gateway.max_retries == 3
    assert get_gateway() is gateway  # one client (and connection pool) per thread


def test_a_change_of_settings_makes_a_new_client():
    with override_settings(CHIPI_API_KEY="pk_a", CHIPI_SECRET_KEY="sk_a"):
        first = get_gateway()
    with override_settings(CHIPI_API_KEY="pk_b", CHIPI_SECRET_KEY="sk_b", CHIPI_TIMEOUT_SECONDS=2):
        second = get_gateway()

    assert second is not first
    assert second.session.headers["x-api-key"] == "pk_b"
    assert second.timeout == (2.0, 2.0)


def test_the_defaults():
    assert settings.CHIPI_BASE_URL == "https://api.chipipay.com/v1"
    assert settings.CHIPI_TIMEOUT_SECONDS == 10
    assert settings.CHIPI_MAX_RETRIES == 3
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
    loaded = chipi_secret_with(DEBUG="0", CHIPI_API_KEY="pk_live", CHIPI_SECRET_KEY="sk_live")

    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "'sk_live'"


@pytest.mark.parametrize(
    ("environment", "says"),
    [
        ({"DEBUG": "0"}, "CHIPI_SANDBOX=1"),  # no key and no choice: never the sandbox by default
        ({"DEBUG": "1", "CHIPI_SANDBOX": "0"}, "CHIPI_SANDBOX=1"),
        ({"DEBUG": "0", "CHIPI_SANDBOX": "1"}, "CHIPI_SECRET_KEY"),  # the sandbox's webhook key is required too
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
