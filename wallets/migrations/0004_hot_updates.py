"""Leave room in each page of accounts and holds for HOT updates.

Balances and held amounts change on every charge but are never indexed: with free space on the
page PostgreSQL updates the row in place, without touching the table's indexes.
"""

from django.db import migrations


TABLES = "ALTER TABLE wallets_account SET (fillfactor = {0}); ALTER TABLE wallets_hold SET (fillfactor = {0})"


class Migration(migrations.Migration):
    dependencies = [("wallets", "0003_entry_covering_indexes")]

    operations = [migrations.RunSQL([TABLES.format(70)], [TABLES.format(100)])]
