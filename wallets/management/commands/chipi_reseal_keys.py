"""Seal every wallet's encryptKey under the current master key (the rotation's middle step)."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from wallets import keys
from wallets.models import ChipiWallet


class Command(BaseCommand):
    help = (
        "Re-seal the wallets' keys under CHIPI_KEY_ENCRYPTION_KEY. Run it with the old master key in "
        "CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS; afterwards the old key can be removed."
    )

    def handle(self, *args, **options) -> None:
        resealed = 0
        for pk in ChipiWallet.objects.values_list("pk", flat=True):
            with transaction.atomic():
                wallet = ChipiWallet.objects.select_for_update().get(pk=pk)
                if keys.sealed_under_current(wallet.encrypt_key_sealed):
                    continue
                wallet.encrypt_key_sealed = keys.seal(keys.unseal(wallet.encrypt_key_sealed))
                wallet.save(update_fields=["encrypt_key_sealed"])
                resealed += 1
        self.stdout.write(f"Re-sealed {resealed} wallet key(s) under the current master key.")
