"""The sweep's shards split the sessions by their vendor's wallet rather than by session id, and a
batch locks the platform's revenue account only as it posts (after updating its sessions), so that
two shards credit no vendor's wallet in common and decide at once, taking turns only to post
(issue 15). Installed from a frozen copy of
streaming/sql/sweep_batch.sql beside this migration; the reverse loads the previous copy."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0013_charge_guards_one_pass"), ("wallets", "0014_system_accounts_locked_last")]

    operations = [
        migrations.RunSQL(
            (SQL / "0014_sweep_batch.sql").read_text(),
            (SQL / "0012_sweep_batch.sql").read_text(),
        ),
    ]
