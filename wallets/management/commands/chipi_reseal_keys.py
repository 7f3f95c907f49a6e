"""Seal every wallet's encryptKey under the current master key (the rotation's middle step)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from wallets import keys
from wallets.models import ChipiWallet, ChipiWalletRole


class Command(BaseCommand):
    help = (
        "Re-seal the wallets' keys under CHIPI_KEY_ENCRYPTION_KEY. Run it with the old master key in "
        "CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS; afterwards the old key can be removed."
    )

    def handle(self, *args, **options) -> None:
        resealed = 0
        missing, broken = [], []  # the roles of the keys no configured master key opens
        for pk in ChipiWallet.objects.values_list("pk", flat=True):
            with transaction.atomic():
                wallet = ChipiWallet.objects.select_for_update().get(pk=pk)
                if keys.sealed_under_current(wallet.encrypt_key_sealed):
                    continue
                try:
                    encrypt_key = keys.unseal(wallet.encrypt_key_sealed)
                except keys.MasterKeyMissing:
                    missing.append(wallet.role)
                    continue
                except keys.KeyUnsealError:
                    broken.append(wallet.role)
                    continue
                wallet.encrypt_key_sealed = keys.seal(encrypt_key)
                wallet.save(update_fields=["encrypt_key_sealed"])
                resealed += 1
        if missing or broken:
            raise CommandError(_unopened(missing, broken, resealed))
        self.stdout.write(f"Re-sealed {resealed} wallet key(s) under the current master key.")


def _unopened(missing: list[str], broken: list[str], resealed: int) -> str:
    roles = missing + broken
    treasury = " (the treasury's among them: no withdrawal or payout can be sent)"
    said = [
        f"{len(roles)} wallet key(s) cannot be opened{treasury if ChipiWalletRole.TREASURY in roles else ''}; "
        "they were left as they are."
    ]
    if missing and not settings.CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS:
        said.append(
            f"{len(missing)} of them were sealed under another master key than CHIPI_KEY_ENCRYPTION_KEY, and "
            "CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS is not set: set it to the master key they were sealed under "
            "(the CHIPI_KEY_ENCRYPTION_KEY before this one) and run this again."
        )
    elif missing:
        said.append(
            f"{len(missing)} of them were sealed under another master key than CHIPI_KEY_ENCRYPTION_KEY, and "
            "none of the keys in CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS is that key: add it there and run this again."
        )
    if broken:
        said.append(f"{len(broken)} of them do not open under the master key they name (tampered with?).")
    if resealed:
        said.append(f"{resealed} other{' was' if resealed == 1 else 's were'} re-sealed.")
    return " ".join(said)
