"""A session silent for the whole idle timeout ended the moment the timeout ran out, whoever asks
later: a stop asked for after that instant (before a sweep saw it) bills up to the timeout, as the
sweep does, rather than the whole silence (found by the simulation, issue 17). Installed from a
frozen copy of streaming/sql/sweep_batch.sql beside this migration; the reverse loads the previous
copy."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0011_sweep_decided_set_based")]

    operations = [
        migrations.RunSQL(
            (SQL / "0012_sweep_batch.sql").read_text(),
            (SQL / "0011_sweep_batch.sql").read_text(),
        ),
    ]
