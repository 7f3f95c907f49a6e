"""A minimum withdrawal per token. Any positive amount was taken: a withdrawal of 0.000001 USDC was
queued, signed and sent on chain, its gas paid by the platform's paymaster.

The column's default is 0 (none): one figure in minor units cannot be a sane minimum for tokens of
6 and 18 decimals and of prices a thousand times apart. Each token's is decided here instead, near
the worth of 1 USD, and staff change it in the admin: the stablecoins 1; ETH 0.0005 and STRK 10,
round figures about 1 USD at their prices of 2025 (staff follow the market)."""

from django.db import migrations, models

import paygo.fields

MINIMUMS = {
    "USDC": 1_000_000,  # 1 USDC (6 decimals)
    "USDT": 1_000_000,  # 1 USDT (6 decimals)
    "ETH": 5 * 10**14,  # 0.0005 ETH (18 decimals)
    "STRK": 10 * 10**18,  # 10 STRK (18 decimals)
}


def seed(apps, schema_editor):
    Asset = apps.get_model("wallets", "Asset")
    for code, minimum in MINIMUMS.items():
        Asset.objects.filter(code=code).update(minimum_withdrawal=minimum)


class Migration(migrations.Migration):
    dependencies = [("wallets", "0023_entry_verbose_name_plural")]

    operations = [
        migrations.AddField(
            model_name="asset",
            name="minimum_withdrawal",
            field=paygo.fields.MinorUnitsField(
                default=0, help_text="The smallest withdrawal or payout of this token, in its minor units (0: none)."
            ),
        ),
        migrations.AddConstraint(
            model_name="asset",
            constraint=models.CheckConstraint(
                condition=models.Q(("minimum_withdrawal__gte", 0)), name="wallets_asset_minimum_withdrawal_gte_0"
            ),
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
