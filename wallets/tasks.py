"""Celery tasks of wallets: the withdrawal outbox, reconciliation, idempotency-key expiry."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from wallets import services
from wallets.models import IdempotencyKey


@shared_task(name="wallets.withdrawal_send", ignore_result=True, time_limit=120, soft_time_limit=100)
def withdrawal_send_task(withdrawal_id: str) -> str:
    # No Celery-level retry: the outbox row carries its own next_attempt_at, and the periodic
    # dispatcher picks it up again; a retry here could not be safer than that.
    return services.withdrawal_send(withdrawal_id=withdrawal_id)


@shared_task(name="wallets.withdrawals_dispatch", ignore_result=True, time_limit=300, soft_time_limit=280)
def withdrawals_dispatch_task(limit: int = 100) -> int:
    """Send what the outbox holds that is due (new rows, retries, rows whose sender died)."""
    due = services.withdrawals_due(limit=limit)
    for withdrawal_id in due:
        services.withdrawal_send(withdrawal_id=withdrawal_id)
    return len(due)


@shared_task(name="wallets.reconcile", ignore_result=True, time_limit=300, soft_time_limit=280)
def reconcile_task() -> list[int]:
    return [report.difference for report in services.reconcile()]


@shared_task(name="wallets.idempotency_expire", ignore_result=True, time_limit=300)
def idempotency_expire_task(days: int = 7) -> int:
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted
