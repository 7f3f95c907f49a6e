"""The entries' statement guard checks the accounts named in the same pass that share-locks them
(the statement's distinct (account, asset) pairs joined to the accounts holding that asset), and
each transaction named once, rather than looking every entry's account and transaction up again
after the locks: a sweep batch's 5,000 entries cost one index look-up each instead of three.
The rules are the same. Installed from a frozen copy of wallets/sql/ledger_guards.sql beside this
migration; the reverse loads the previous copy."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("wallets", "0012_accounts_half_empty_pages")]

    operations = [
        migrations.RunSQL(
            (SQL / "0013_ledger_guards.sql").read_text(),
            (SQL / "0008_ledger_guards.sql").read_text(),
        ),
    ]
