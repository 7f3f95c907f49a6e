"""Billing (streaming/sql/sweep_batch.sql): a session told when its money runs out goes on when it was
topped up since (its stop_at holds only while it has no more than its hold to spend), and a running
session's hold keeps the rest of its minimum charge, held at its start. Installed from a frozen copy
of the file beside this migration; the reverse loads the previous copy."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0014_shards_by_vendor_wallet")]

    operations = [
        migrations.RunSQL(
            (SQL / "0015_sweep_batch.sql").read_text(),
            (SQL / "0014_sweep_batch.sql").read_text(),
        ),
    ]
