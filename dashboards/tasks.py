"""Celery tasks of the dashboards: the ledger's conservation check and the rollup, run on a schedule."""

from __future__ import annotations

from celery import shared_task

from dashboards import health, rollup
from paygo.single_flight import single_flight


@shared_task(name="dashboards.ledger_health_check", ignore_result=True, time_limit=300, soft_time_limit=280)
@single_flight
def ledger_health_check_task() -> bool:
    """Check the entries committed since the last run and every account's and session's state, and
    keep the result for the dashboards (dashboards.health)."""
    return health.ledger_health_check()["healthy"]


@shared_task(name="dashboards.rollup_advance", ignore_result=True, time_limit=300, soft_time_limit=280)
def rollup_advance_task() -> int:
    """Add the entries committed since the last run to the dashboards' rollup (idempotent: two runs
    at once sum each entry once); returns the entry watermark."""
    return rollup.rollup_advance().entry_id
