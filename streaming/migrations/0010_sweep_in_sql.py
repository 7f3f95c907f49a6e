"""The sweep decides in PostgreSQL (issue 15): the metering arithmetic (streaming/sql/metering.sql)
and the batch function streaming_bill (streaming/sql/sweep_batch.sql), installed from frozen
copies beside this migration. The reverse drops them (billing in Python went with this change)."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"

DROP = [
    "DROP FUNCTION IF EXISTS streaming_bill(timestamptz, bigint[], varchar, bigint, integer, integer, integer, bigint, "
    "bigint, integer)",
    "DROP FUNCTION IF EXISTS streaming_platform_fee(numeric, integer)",
    "DROP FUNCTION IF EXISTS streaming_runway_ms(numeric, bigint, numeric)",
    "DROP FUNCTION IF EXISTS streaming_last_affordable_quantity(numeric, bigint, numeric)",
    "DROP FUNCTION IF EXISTS streaming_last_affordable_ms(numeric, bigint, bigint, numeric)",
    "DROP FUNCTION IF EXISTS streaming_period_cost(numeric, bigint, bigint)",
    "DROP FUNCTION IF EXISTS streaming_usage_due(numeric, bigint, numeric)",
    "DROP FUNCTION IF EXISTS streaming_time_due(numeric, bigint, bigint, bigint)",
    "DROP FUNCTION IF EXISTS streaming_elapsed_ms(timestamptz, timestamptz)",
    "DROP FUNCTION IF EXISTS streaming_floor_div(numeric, numeric)",
]


class Migration(migrations.Migration):
    dependencies = [("streaming", "0009_charges_are_entries")]

    operations = [
        migrations.RunSQL(
            [(SQL / "0010_metering.sql").read_text(), (SQL / "0010_sweep_batch.sql").read_text()], DROP
        ),
    ]
