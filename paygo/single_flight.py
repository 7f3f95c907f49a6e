"""Single-flight tasks: one run at a time across every worker process, held by a PostgreSQL advisory lock."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import connection

logger = logging.getLogger("paygo.single_flight")

P = ParamSpec("P")
T = TypeVar("T")


def single_flight(task: Callable[P, T]) -> Callable[P, T | None]:
    """Decorates a periodic task's function: a run that finds another run of it in progress, in any
    worker process, returns None at once, without waiting and without doing the work.

    Beat sends a long task every period whatever its last run is doing, and each worker process takes
    one: two whole-ledger checks (or reconciliations, or reads of Chipi's records) at once cost twice
    and learn nothing more. The lock is session-level, not a transaction's, as these runs span
    several transactions and call Chipi outside them; PostgreSQL releases it if the worker dies.
    """
    name = f"{task.__module__}.{task.__qualname__}"
    lock = f"single-flight:{name}"

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> T | None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [lock])
            (held,) = cursor.fetchone()
        if not held:
            logger.info("%s is running elsewhere; this run ends without doing anything", name)
            return None
        try:
            return task(*args, **kwargs)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [lock])

    return run
