"""Raw SQL for the set-based hot paths (the ledger's batch posting, the billing sweep), which
constraint an IntegrityError broke, and the bounded deletes of the retention tasks."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from django.db import IntegrityError, connection
from django.db.models import QuerySet

# Rows a retention task deletes per statement (and transaction).
DELETE_BATCH = 10_000


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


def delete_in_batches(rows: QuerySet, *, batch: int | None = None, until: float | None = None) -> int:
    """Delete `rows`, `batch` (DELETE_BATCH) at a time, and return how many went: a retention task's
    backlog of millions never becomes one statement that reads, locks and logs them all.

    Each batch's ids are read first, in `rows`' order, which should be that of the index that finds
    them (unordered, "any n rows" can look cheaper to the planner by a sequential scan), then deleted
    by id alone (with their condition again, the planner read a whole index to find them among it):
    two bounded statements per batch, and outside a transaction a transaction per batch. Stops once
    time.monotonic() passes `until`, when given: the next run goes on."""
    batch = batch or DELETE_BATCH
    deleted = 0
    while until is None or time.monotonic() < until:
        ids = list(rows.values_list("pk", flat=True)[:batch])
        if ids:
            deleted += rows.model._base_manager.filter(pk__in=ids).delete()[0]
        if len(ids) < batch:
            break
    return deleted
