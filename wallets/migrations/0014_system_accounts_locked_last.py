"""One lock order for every posting, with the system accounts last: users' wallets by id, then
system accounts by id (wallets_lock_accounts), so that the platform's revenue account, which every
charge credits, is held only from a posting's writes to its commit; the sweep's shards then bill at
once instead of in turns (issue 15). Installed from a frozen copy of wallets/sql/wallets_post.sql
beside this migration; the reverse loads the previous copy and drops the new function."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("wallets", "0013_ledger_guards_one_pass")]

    operations = [
        migrations.RunSQL(
            (SQL / "0014_wallets_post.sql").read_text(),
            [
                (SQL / "0011_wallets_post.sql").read_text(),
                "DROP FUNCTION IF EXISTS wallets_lock_accounts(bigint[])",
            ],
        ),
    ]
