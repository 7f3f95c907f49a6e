"""Raw SQL for the set-based hot paths (the ledger's batch posting, the billing sweep), and which
constraint an IntegrityError broke."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from django.db import IntegrityError, connection


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


def constraint_of(exc: IntegrityError) -> str | None:
    """The name of the constraint the database said was broken (psycopg's diagnostics)."""
    return getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
