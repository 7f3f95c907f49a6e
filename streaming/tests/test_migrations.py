"""The migrations of streaming, run on a database as an earlier version left it."""

from __future__ import annotations

import re
from pathlib import Path

from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from conftest import money_db

STREAMING = Path(__file__).resolve().parent.parent
SWEEP_FUNCTIONS = ("streaming_bill", "streaming_decide", "streaming_unbilled")


def bodies(sql: Path) -> dict[str, str]:
    """Each function a rule's file creates, by name: its body, as PostgreSQL keeps it (prosrc)."""
    return dict(re.findall(r"CREATE FUNCTION (\w+)\(.*?\$\$(.*?)\$\$", sql.read_text(), re.S))


def installed() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT proname, prosrc FROM pg_proc WHERE proname = ANY (%s)", [list(SWEEP_FUNCTIONS)])
        return dict(cursor.fetchall())


@money_db
def test_a_database_migrated_with_0017_as_it_shipped_runs_the_files_sweep_after_0018():
    """0017's frozen copy was edited after 0017 shipped: a database migrated in between kept its
    streaming_decide (each session's runway alone, a maxCost nearing told as a low balance). 0018
    installs the file's."""
    shipped = bodies(STREAMING / "migrations" / "sql" / "0017_sweep_batch.sql")
    current = bodies(STREAMING / "sql" / "sweep_batch.sql")
    assert set(shipped) == set(current) == set(SWEEP_FUNCTIONS)
    assert shipped["streaming_decide"] != current["streaming_decide"]

    MigrationExecutor(connection).migrate([("streaming", "0017_sweep_bills_what_its_walk_skipped")])
    try:
        assert installed() == shipped
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert installed() == current
