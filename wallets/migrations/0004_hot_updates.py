"""Leave room in each page of accounts and holds for HOT updates.

Balances and held amounts change on every charge but are never indexed: with free space on the
page PostgreSQL updates the row in place, without touching the table's indexes.
"""

from django.db import migrations


def fillfactor(value: int):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for table in ("wallets_account", "wallets_hold"):
                schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {value})")

    return apply


class Migration(migrations.Migration):
    dependencies = [("wallets", "0003_entry_covering_indexes")]

    operations = [migrations.RunPython(fillfactor(70), fillfactor(100))]
