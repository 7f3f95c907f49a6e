# Written by hand: the constraint Django's AddConstraint would add, NOT VALID, so that a database
# whose swap liquidity already went below zero (swaps sold what PayGo did not hold) migrates; the
# constraint holds for every change from now on, and staff put liquidity in with an adjustment.

from django.db import migrations, models

CONSTRAINT = models.CheckConstraint(
    condition=~models.Q(kind="system", system_code="swap_liquidity") | models.Q(balance__gte=0),
    name="wallets_swap_liquidity_not_negative",
)


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0015_default_asset_active"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddConstraint(model_name="account", constraint=CONSTRAINT)],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE wallets_account ADD CONSTRAINT wallets_swap_liquidity_not_negative "
                    "CHECK (NOT (kind = 'system' AND system_code = 'swap_liquidity') OR balance >= 0) NOT VALID",
                    "ALTER TABLE wallets_account DROP CONSTRAINT wallets_swap_liquidity_not_negative",
                )
            ],
        ),
    ]
