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

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Mod
from django.utils import timezone

from streaming.billing import ROW_FIELDS, Row, bill
from streaming.models import SessionStatus, StreamingSession

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
    now = now or timezone.now()
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


def claim_batch(*, now: datetime, after_id: int, shard: int, shards: int, limit: int) -> list[Row]:
    """Lock the next active sessions after `after_id`; skip rows someone else holds (they are
    being billed or stopped right now, and the next run takes them)."""
    sessions = StreamingSession.objects.filter(status=SessionStatus.ACTIVE, id__gt=after_id, start_time__lte=now)
    if shards > 1:
        sessions = sessions.alias(shard_key=Mod("id", shards)).filter(shard_key=shard)
    values = sessions.select_for_update(skip_locked=True, of=("self",)).order_by("id").values(*ROW_FIELDS)[:limit]
    return [Row.from_values(v) for v in values]
