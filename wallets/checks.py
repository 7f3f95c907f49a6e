"""Deploy checks of wallets: what would otherwise fail later, on a withdrawal's or a sweep's signature."""

from __future__ import annotations

from django.core import checks
from django.db import DatabaseError, transaction

TREASURY_KEY_HINT = (
    "Configure the master key the treasury's key was sealed under: as CHIPI_KEY_ENCRYPTION_KEY, or in "
    "CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS while rotating (then run `manage.py chipi_reseal_keys`). Until then "
    "every withdrawal and payout is refused (503 treasury_key_unavailable)."
)


@checks.register(checks.Tags.security, deploy=True)
def check_treasury_key(app_configs, **kwargs) -> list[checks.CheckMessage]:
    from wallets.services import TreasuryKeyUnusable, treasury_key_check

    try:
        with transaction.atomic():
            treasury_key_check()
    except TreasuryKeyUnusable as exc:
        return [checks.Error(str(exc), hint=TREASURY_KEY_HINT, id="wallets.E001")]
    except DatabaseError:
        # Not reachable, or not migrated yet (no wallets to read): migrate, which comes first, says why.
        return []
    return []


DEPOSIT_KEYS_HINT = (
    "Configure the master key they were sealed under in CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS and run "
    "`manage.py chipi_reseal_keys`. Their deposits are credited to their owners meanwhile; the money "
    "stays in those wallets, counted by the reconciliation."
)


@checks.register(checks.Tags.security, deploy=True)
def check_deposit_keys(app_configs, **kwargs) -> list[checks.CheckMessage]:
    from wallets.services import deposit_keys_unusable

    try:
        with transaction.atomic():
            unusable = deposit_keys_unusable()
    except DatabaseError:
        return []  # as check_treasury_key
    if not unusable:
        return []
    message = (
        f"{unusable} deposit wallet(s)' keys were sealed under a master key that is not configured: "
        "deposits into them cannot be swept into the treasury."
    )
    return [checks.Warning(message, hint=DEPOSIT_KEYS_HINT, id="wallets.W002")]
