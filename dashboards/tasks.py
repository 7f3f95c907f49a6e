"""Celery tasks of the dashboards: the ledger's conservation check, run on a schedule."""

from __future__ import annotations

from celery import shared_task

from dashboards import selectors


@shared_task(name="dashboards.ledger_health_check", ignore_result=True, time_limit=300, soft_time_limit=280)
def ledger_health_check_task() -> bool:
    """Check the whole ledger and keep the result for the dashboards (it reads every entry, so no
    request runs it while a recent result exists)."""
    return selectors.ledger_health_checked(refresh=True)["healthy"]
