"""The sweep's batch decided set-based (issue 15's speed): streaming_bill reads its batch's rows by
primary key and decides every session in one statement (streaming_decide) instead of a loop of
PL/pgSQL statements per session, and the metering functions are no longer STRICT, so that the
planner inlines them. Installed from frozen copies of streaming/sql/metering.sql and
sweep_batch.sql beside this migration; the reverse loads the previous copies and drops what this
one added."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0010_sweep_in_sql"), ("wallets", "0011_wallets_post_arrays")]

    operations = [
        migrations.RunSQL(
            [(SQL / "0011_metering.sql").read_text(), (SQL / "0011_sweep_batch.sql").read_text()],
            [
                (SQL / "0010_metering.sql").read_text(),
                (SQL / "0010_sweep_batch.sql").read_text(),
                "DROP TYPE IF EXISTS streaming_bill_session CASCADE",
                "DROP TYPE IF EXISTS streaming_bill_outcome",
            ],
        ),
    ]
