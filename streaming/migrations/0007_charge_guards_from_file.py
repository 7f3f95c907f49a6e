"""The session charges' guards (0006), whole in one file.

They are installed again from a frozen copy of streaming/sql/charge_guards.sql, kept in sql/
beside this migration. On a database migrated through 0006 this changes nothing (the same
definitions, CREATE OR REPLACE); from here on, what runs is read in one file, and a change of it
is a new migration loading a new copy, whose reverse loads this one.
"""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0006_charge_references_checked_per_statement")]

    operations = [
        # The reverse has nothing to undo: 0006 left the same definitions.
        migrations.RunSQL([(SQL / "0007_charge_guards.sql").read_text()], migrations.RunSQL.noop),
    ]
