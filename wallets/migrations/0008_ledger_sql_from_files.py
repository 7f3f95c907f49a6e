"""The ledger's SQL, each rule whole in one file: the posting function and the guards.

wallets_post (0005, bounded to its batch's rows by 0007) and the guards (0002, 0006) are installed
again from frozen copies of wallets/sql/wallets_post.sql and wallets/sql/ledger_guards.sql, kept
in sql/ beside this migration. On a database migrated through 0007 this changes nothing (the same
definitions, CREATE OR REPLACE); from here on, what runs is read in one file, and a change of it
is a new migration loading a new copy, whose reverse loads these.
"""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("wallets", "0007_ledger_post_reads_only_its_rows")]

    operations = [
        # The reverse has nothing to undo: 0007 left the same definitions.
        migrations.RunSQL([(SQL / "0008_wallets_post.sql").read_text()], migrations.RunSQL.noop),
        migrations.RunSQL([(SQL / "0008_ledger_guards.sql").read_text()], migrations.RunSQL.noop),
    ]
