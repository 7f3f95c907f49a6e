"""Billing (streaming/sql/sweep_batch.sql): a payer's runway, balance and low-balance level from its
funds and all its sessions of the batch, maxCost aside (no "Low balance, top up" for a maxCost
nearing). This change was first written into 0017's frozen copy after 0017 had shipped: a database
migrated in between kept the streaming_decide before it. Installed from a frozen copy of the file
beside this migration; the reverse loads the previous copy."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0017_sweep_bills_what_its_walk_skipped")]

    operations = [
        migrations.RunSQL(
            (SQL / "0018_sweep_batch.sql").read_text(),
            (SQL / "0017_sweep_batch.sql").read_text(),
        ),
    ]
