"""The billing sweep: every active session charged up to now, in batches, set-based.

Each batch is one database transaction: claim up to BILLING_SWEEP_BATCH active sessions with
FOR UPDATE SKIP LOCKED (a concurrent sweep, or a user stopping their session, takes the rows
this one does not), bill them, commit: one call of the database function streaming_bill
(streaming/billing.py, streaming/sql/sweep_batch.sql), which posts one ledger transaction for the
batch. Sessions are walked in id order
and marked with the run's start, so a run visits each session once; a second sweep at the same
time takes other rows or finds them done, and one re-run after a crash bills only what the lost
batch did not commit. Charges are cumulative (due(now) - charged): a session billed twice in a
minute is charged for the minute once.

SKIP LOCKED skips a row whoever holds it, and signs of life hold sessions' rows (a heartbeat, a
metrics or usage report, the live hub's UPDATE of every watched session each second): a run then
ends with a last pass over what nobody billed up to its `now`, which it bills as a stop does,
waiting for each row (streaming_unbilled).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone
from psycopg import errors

from streaming.billing import Billed, bill_batch, bill_stop, unbilled

logger = logging.getLogger("paygo.streaming")


@dataclass
class SweepResult:
    sessions: int = 0
    charged: int = 0
    stopped: int = 0
    amount: int = 0
    batches: int = 0
    vendors: set[int] = field(default_factory=set)


def sweep(
    *, now: datetime | None = None, shard: int = 0, shards: int = 1, batch_size: int | None = None
) -> SweepResult:
    """Bill every active session (of this shard) up to `now`."""
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: shards must be at least 1 and 0 <= shard < shards")
    with _cyclic_gc_paused():
        return _sweep(now=now or timezone.now(), shard=shard, shards=shards, batch_size=batch_size)


@contextlib.contextmanager
def _cyclic_gc_paused():
    """A batch allocates hundreds of thousands of short-lived objects (rows, outcomes, array
    parameters), none of them in reference cycles: the cyclic collector would walk them again and
    again for nothing (a sixth of a sweep's time, measured). Reference counting still frees them.
    The switch is process-wide: a Celery worker process runs one task at a time, and in the
    embedded server the pause lasts as long as its (small) sweep."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _sweep(*, now: datetime, shard: int, shards: int, batch_size: int | None) -> SweepResult:
    batch_size = batch_size or settings.BILLING_SWEEP_BATCH
    result = SweepResult()
    after_id = 0
    while True:
        with transaction.atomic():
            billed = bill_batch(now=now, after_id=after_id, shard=shard, shards=shards, limit=batch_size)
        if not billed:
            break
        after_id = billed[-1].id  # in id order
        _count(result, billed)
    # What the walk skipped: left to the next run, a session held by a sign of life went a period
    # unheld and untold, which that run could not charge. Billed waiting for their rows, in id
    # order and then their wallets, as a stop locks; one another biller reached meanwhile is
    # charged nothing more.
    missed = unbilled(now=now, shard=shard, shards=shards)
    for start in range(0, len(missed), batch_size):
        _count(result, _bill_waiting(missed[start : start + batch_size], now=now))
    if result.sessions:
        logger.info(
            "Sweep shard %s/%s: %s sessions, %s charged, %s stopped, %s batches",
            shard,
            shards,
            result.sessions,
            result.charged,
            result.stopped,
            result.batches,
        )
    return result


def _bill_waiting(session_ids: list[int], *, now: datetime) -> list[Billed]:
    """Bill these sessions as a stop would, waiting for their rows, in one transaction; one at a
    time if PostgreSQL ends it as a deadlock. Every biller, report and stop locks sessions in id
    order and then wallets, and so does the live hub's one UPDATE of its watched sessions
    (services.sessions_seen); this is the defence against a transaction that would not: billed one
    at a time, a session holds no other while it waits."""
    try:
        with transaction.atomic():
            return bill_stop(session_ids=session_ids, reason=None, now=now)
    except OperationalError as exc:
        if not isinstance(exc.__cause__, errors.DeadlockDetected):
            raise
    logger.warning("Sweep: a deadlock ended a batch of %s sessions; billed one at a time", len(session_ids))
    billed = []
    for session_id in session_ids:
        with transaction.atomic():
            billed += bill_stop(session_ids=[session_id], reason=None, now=now)
    return billed


def _count(result: SweepResult, billed: list[Billed]) -> None:
    if not billed:
        return
    result.batches += 1
    result.sessions += len(billed)
    for outcome in billed:
        if outcome.charge:
            result.charged += 1
            result.amount += outcome.charge
            result.vendors.add(outcome.vendor_id)
        result.stopped += outcome.stops
