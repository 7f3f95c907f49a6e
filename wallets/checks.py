"""Deploy checks of wallets: what would otherwise fail later, on a withdrawal's or a sweep's signature."""

from __future__ import annotations

from django.core import checks
from django.db import DatabaseError, transaction

TREASURY_KEY_HINT = (
    "Configure the master key the treasury's key was sealed under: as CHIPI_KEY_ENCRYPTION_KEY, or in "
    "CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS while rotating (then run `manage.py chipi_reseal_keys`). Until then "
    "every withdrawal and payout is refused (503 treasury_key_unavailable)."
)
DEPOSIT_KEYS_HINT = (
    "Configure the master key they were sealed under in CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS and run "
    "`manage.py chipi_reseal_keys`. Their deposits are credited to their owners meanwhile; the money "
    "stays in those wallets, counted by the reconciliation."
)


@checks.register(checks.Tags.security, deploy=True)
def check_wallet_keys(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """The treasury's key must open (an error: nothing could leave); deposit wallets' keys that do not
    open are a warning (their deposits are credited, not swept)."""
    from wallets.services import TreasuryKeyUnusable, deposit_keys_unusable, treasury_key_check

    messages: list[checks.CheckMessage] = []
    try:
        with transaction.atomic():
            try:
                treasury_key_check()
            except TreasuryKeyUnusable as exc:
                messages.append(checks.Error(str(exc), hint=TREASURY_KEY_HINT, id="wallets.E001"))
            unusable = deposit_keys_unusable()
    except DatabaseError:
        # Not reachable, or not migrated yet (no wallets to read): migrate, which comes first, says why.
        return []
    if unusable:
        message = (
            f"{unusable} deposit wallet(s)' keys were sealed under a master key that is not configured: "
            "deposits into them cannot be swept into the treasury."
        )
        messages.append(checks.Warning(message, hint=DEPOSIT_KEYS_HINT, id="wallets.W002"))
    return messages
