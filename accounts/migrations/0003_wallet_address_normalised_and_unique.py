# Wallet addresses are compared in one spelling, "0x" + 64 lower-case hex digits (wallets.starknet),
# and name one user each: a transfer to an address (issue 19) pays its one owner.

import re

from django.db import migrations, models

# A frozen copy of wallets.starknet.address_normalize's rule: "0x" and 1 to 64 hex digits, any case.
_HEX = re.compile(r"0x[0-9a-f]{1,64}")


def normalise_addresses(apps, schema_editor):
    """Spell the addresses already kept as the constraint below wants. An address that is not one
    is left as it is, so that adding the constraint stops the migration rather than lose it."""
    User = apps.get_model("accounts", "User")
    kept = User.objects.exclude(wallet_address="").exclude(wallet_address__regex=r"^0x[0-9a-f]{64}$")
    for user in kept.only("pk", "wallet_address").iterator():
        text = user.wallet_address.strip().lower()
        if _HEX.fullmatch(text):
            User.objects.filter(pk=user.pk).update(wallet_address=f"0x{int(text, 16):064x}")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_profiles_images"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(normalise_addresses, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.CheckConstraint(
                condition=models.Q(("wallet_address", ""), ("wallet_address__regex", "^0x[0-9a-f]{64}$"), _connector="OR"),
                name="accounts_user_wallet_address_normalised",
            ),
        ),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.UniqueConstraint(
                condition=models.Q(("wallet_address", ""), _negated=True),
                fields=("wallet_address",),
                name="accounts_user_wallet_address_unique",
            ),
        ),
    ]
