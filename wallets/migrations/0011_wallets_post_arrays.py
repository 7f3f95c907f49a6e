"""The ledger's posting takes its batch as arrays too (issue 15's speed): wallets_post_arrays is the
posting, and wallets_post, which wallets/ledger.py calls with JSON documents, parses them and calls
it; the sweep's batch function, already in the database, calls it with arrays and spares building
and parsing JSON for every entry. Installed from a frozen copy of wallets/sql/wallets_post.sql
beside this migration; the reverse loads the previous copy and drops the new function."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("wallets", "0010_chipi_wallets_keys_sweeps")]

    operations = [
        migrations.RunSQL(
            (SQL / "0011_wallets_post.sql").read_text(),
            [
                (SQL / "0009_wallets_post.sql").read_text(),
                "DROP FUNCTION IF EXISTS wallets_post_arrays(timestamptz, varchar[], varchar[], varchar[], bigint[], "
                "jsonb[], integer[], bigint[], numeric[], bigint[], timestamptz[], timestamptz[], numeric[], bigint[], "
                "bigint[], numeric[], varchar[])",
            ],
        ),
    ]
