"""Raw SQL for the set-based hot paths (the ledger's batch posting, the billing sweep)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from django.db import connection, migrations


def execute_bound(sql: str, params: dict[str, Any] | None = None, *, binary: bool = False) -> list[tuple] | None:
    """Run one statement with server-side parameter binding, in the current transaction.

    Django's PostgreSQL cursor binds parameters on the client, quoting every element of every
    array parameter in Python; a sweep's batch passes arrays of thousands of elements, and that
    quoting cost more than the statement itself. psycopg's own cursor sends them bound, and with
    %(name)b placeholders in binary, dumped by its C adapters. `binary` asks for the results in
    binary too (thousands of rows of timestamps load faster so). Errors still come out as
    Django's (IntegrityError, ...).
    """
    connection.ensure_connection()
    started = time.monotonic()
    try:
        # An explicit psycopg.Cursor: the connection's default factory is Django's ClientCursor.
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, binary=binary)
            return cursor.fetchall() if cursor.description else None
    finally:
        if connection.queries_logged:  # so that query counts (assertNumQueries, debug) still see it
            connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})


class PostgresSQL(migrations.RunSQL):
    """RunSQL that runs on PostgreSQL only: the ledger's and the sweep's functions and triggers,
    which the embedded SQLite does without. Each text is executed whole (a function body holds
    semicolons), not split into statements."""

    def __init__(self, sql: str, reverse_sql: str, **kwargs):
        super().__init__([sql], [reverse_sql], **kwargs)

    def deconstruct(self):
        name, _, kwargs = super().deconstruct()
        return name, [kwargs.pop("sql")[0], kwargs.pop("reverse_sql")[0]], kwargs

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
