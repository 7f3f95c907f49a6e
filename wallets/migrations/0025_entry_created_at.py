"""Entries carry their transaction's time (created_at), so that an account's history is read newest
first, and by date, from one index instead of sorting all of the account's entries by their
transactions' times (a year of a session always on is half a million of them).

This step is instant on a big table: the column is added empty (no default, no rewrite), wallets_post
writes it from now on, and the entries' guard checks that a new entry carries its transaction's time.
Migration 0026 fills in the entries written before, 0027 indexes the column and makes it NOT NULL.
Installed from frozen copies of wallets/sql/wallets_post.sql and ledger_guards.sql beside this
migration (the guards' copy lets 0026's filling through, once per entry); the reverse loads the
previous copies."""

from pathlib import Path

from django.db import migrations, models

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("wallets", "0024_minimum_withdrawal")]

    operations = [
        migrations.AddField(
            model_name="entry",
            name="created_at",
            field=models.DateTimeField(editable=False, null=True),
        ),
        migrations.RunSQL(
            (SQL / "0025_ledger_guards.sql").read_text(),
            (SQL / "0013_ledger_guards.sql").read_text() + "DROP FUNCTION IF EXISTS wallets_entry_refuse_change();",
        ),
        migrations.RunSQL(
            (SQL / "0025_wallets_post.sql").read_text(),
            (SQL / "0018_wallets_post.sql").read_text(),
        ),
    ]
