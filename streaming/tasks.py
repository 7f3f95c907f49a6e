"""Celery tasks of streaming: the billing sweep (split into shards when configured)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from streaming.sweep import sweep


@shared_task(name="streaming.billing_sweep", ignore_result=True, time_limit=600, soft_time_limit=540)
def billing_sweep_task() -> int:
    """Beat's entry: one shard inline, or one task per shard for several workers to share."""
    shards = max(1, settings.BILLING_SWEEP_SHARDS)
    if shards == 1:
        return billing_sweep_shard_task(0, 1)
    for shard in range(shards):
        billing_sweep_shard_task.delay(shard, shards)
    return 0


@shared_task(name="streaming.billing_sweep_shard", ignore_result=True, time_limit=600, soft_time_limit=540)
def billing_sweep_shard_task(shard: int, shards: int) -> int:
    from streaming.payouts import payouts_queue

    result = sweep(shard=shard, shards=shards)
    if result.vendors:
        payouts_queue(vendor_ids=result.vendors)
    return result.sessions
