"""The deploy checks of wallets: the treasury's key must open under the configured master keys."""

from __future__ import annotations

import pytest
from django.core import checks

from wallets import services
from wallets.checks import check_wallet_keys

pytestmark = pytest.mark.django_db

OLD, NEW = "old-master-" + "o" * 30, "new-master-" + "n" * 30


def test_a_treasury_key_that_does_not_open_is_an_error(sandbox, settings):
    settings.CHIPI_KEY_ENCRYPTION_KEY, settings.CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS = OLD, []
    services.treasury_wallet()
    settings.CHIPI_KEY_ENCRYPTION_KEY = NEW

    [error] = check_wallet_keys(None)

    assert error.id == "wallets.E001"
    assert error.is_serious()  # ERROR: check --deploy fails
    assert "treasury" in error.msg and "does not open" in error.msg
    assert "CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS" in error.hint
    assert OLD not in error.msg + error.hint and NEW not in error.msg + error.hint

    deploy = checks.run_checks(tags=[checks.Tags.security], include_deployment_checks=True)
    assert [message.id for message in deploy if message.id.startswith("wallets.")] == ["wallets.E001"]
    assert not [m.id for m in checks.run_checks(tags=[checks.Tags.security]) if m.id.startswith("wallets.")]

    settings.CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS = [OLD]
    assert check_wallet_keys(None) == []


def test_no_treasury_yet_is_no_error(settings):
    settings.CHIPI_KEY_ENCRYPTION_KEY = NEW

    assert check_wallet_keys(None) == []


def test_deposit_wallets_whose_keys_do_not_open_are_a_warning(alice, bob, sandbox, settings):
    """Their deposits are still credited; only their sweeps wait (test_keys). Before, nothing said so."""
    settings.CHIPI_KEY_ENCRYPTION_KEY, settings.CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS = OLD, []
    services.wallet_open(user=alice)
    settings.CHIPI_KEY_ENCRYPTION_KEY = NEW
    services.wallet_open(user=bob)
    services.treasury_wallet()

    [warning] = check_wallet_keys(None)

    assert warning.id == "wallets.W002" and not warning.is_serious()
    assert warning.msg.startswith("1 deposit wallet(s)' keys") and "cannot be swept" in warning.msg
    assert "chipi_reseal_keys" in warning.hint and OLD not in warning.msg + warning.hint  # the treasury's opens

    settings.CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS = [OLD]
    assert check_wallet_keys(None) == []
