"""Billing (streaming/sql/sweep_batch.sql): streaming_unbilled, what a sweep's walk skipped (rows a
sign of life held), which the sweep then bills waiting for their rows. Installed from a frozen
copy of the file beside this migration; the reverse drops it and loads the previous copy."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0016_minimum_charge_on_the_users_side_only")]

    operations = [
        migrations.RunSQL(
            (SQL / "0017_sweep_batch.sql").read_text(),
            # The previous copy knows nothing of streaming_unbilled.
            [
                "DROP FUNCTION IF EXISTS streaming_unbilled(timestamptz, integer, integer)",
                (SQL / "0016_sweep_batch.sql").read_text(),
            ],
        ),
    ]
