"""The charges' statement guard checks the sessions named in the same pass that share-locks them
(the statement's distinct (session, account) pairs joined to the sessions paid from that account)
rather than looking every charge's session up again after the locks: one index look-up per
charge instead of two. The rule is the same. Installed from a frozen copy of
streaming/sql/charge_guards.sql beside this migration; the reverse loads the previous copy."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0012_idle_ends_whoever_asks")]

    operations = [
        migrations.RunSQL(
            (SQL / "0013_charge_guards.sql").read_text(),
            (SQL / "0009_charge_guards.sql").read_text(),
        ),
    ]
