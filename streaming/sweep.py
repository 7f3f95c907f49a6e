"""The billing sweep: every active session charged up to now, in batches, set-based.

Each batch is one database transaction: claim up to BILLING_SWEEP_BATCH active sessions with
FOR UPDATE SKIP LOCKED (a concurrent sweep, or a user stopping their session, takes the rows
this one does not), bill them (streaming/billing.py), commit. Sessions are walked in id order
and marked with the run's start, so a run visits each session once; a second sweep at the same
time takes other rows or finds them done, and one re-run after a crash bills only what the lost
batch did not commit. Charges are cumulative (due(now) - charged): a session billed twice in a
minute is charged for the minute once.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from paygo.db import execute_bound
from streaming.billing import Row, bill

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
            rows = claim_batch(now=now, after_id=after_id, shard=shard, shards=shards, limit=batch_size)
            if not rows:
                break
            outcomes = bill(rows, now=now)
        after_id = rows[-1].id
        result.batches += 1
        result.sessions += len(rows)
        for outcome in outcomes:
            if outcome.charge:
                result.charged += 1
                result.amount += outcome.charge
                result.vendors.add(outcome.row.vendor_id)
            result.stopped += outcome.stops
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


_CLAIM = """
SELECT s.id, s.session_id::text, s.user_id, s.vendor_id, s.service_id, svc.name, s.asset_id, s.unit, s.rate,
       s.free_seconds, s.minimum_charge, s.max_cost, s.start_time, s.charged_until, s.metered_cost, s.total_cost,
       s.charge_count, s.usage_quantity, s.stop_at, s.stop_at_reason, s.last_heartbeat_at, s.alert_level,
       s.payer_account_id, s.payee_account_id, s.hold_id, h.amount, s.kind
FROM streaming_streamingsession s
JOIN wallets_hold h ON h.id = s.hold_id
JOIN marketplace_service svc ON svc.id = s.service_id
WHERE s.status = 'active' AND s.id > %(after)b AND s.start_time <= %(now)b {shard_filter}
ORDER BY s.id
LIMIT %(limit)b
FOR UPDATE OF s SKIP LOCKED
"""
# The batch must come from the active sessions' index, walked in id order and left after `limit`
# rows. A plain `s.id % shards = shard` is estimated to keep 0.5% of the rows (PostgreSQL's guess
# for an equality on an expression); so few that the planner read every active session, sorted
# them and kept the first `limit`, for every batch (10x slower per batch at 100,000 sessions, most
# of the claim's time). Without shards there is no filter; with them it is written as a CASE,
# which the planner takes to keep half the rows, closer to 1/shards, and walks the index.
_SHARD_FILTER = "AND CASE WHEN s.id %% %(shards)b = %(shard)b THEN true ELSE false END"
_CLAIM_ALL, _CLAIM_SHARD = _CLAIM.format(shard_filter=""), _CLAIM.format(shard_filter=_SHARD_FILTER)


def claim_batch(*, now: datetime, after_id: int, shard: int, shards: int, limit: int) -> list[Row]:
    """Lock the next active sessions after `after_id`; skip rows someone else holds (they are
    being billed or stopped right now, and the next run takes them)."""
    rows = execute_bound(
        _CLAIM_SHARD if shards > 1 else _CLAIM_ALL,
        {"after": after_id, "now": now, "shards": shards, "shard": shard, "limit": limit},
        binary=True,
    )
    return [Row.from_tuple(row) for row in rows]
