"""Billing (streaming/sql/sweep_batch.sql): the minimum charge is what a user owes for ending a
session early, collected when the stop is the user's side (the user, silence, its money or maxCost
running out) and not when the vendor or staff stop it (then the time used only). Installed from a
frozen copy of the file beside this migration; the reverse loads the previous copy."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0015_topped_up_and_minimum_held")]

    operations = [
        migrations.RunSQL(
            (SQL / "0016_sweep_batch.sql").read_text(),
            (SQL / "0015_sweep_batch.sql").read_text(),
        ),
    ]
