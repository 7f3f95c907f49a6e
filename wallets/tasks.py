"""Celery tasks of wallets: the withdrawal outbox, sweeps into the treasury, confirmation of what they sent,
reconciliation, idempotency-key expiry."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from paygo.single_flight import single_flight
from wallets import idempotency, services

logger = logging.getLogger("wallets.outbox")


def _send_each(kind: str, ids: list, send: Callable[..., str]) -> None:
    """Send each due row, each on its own: a row that raises (a key that does not unseal, a bug)
    is logged and left to its claim's expiry, and the rows after it still go. (It stopped the
    loop: one such row, due first every time, held every withdrawal behind it.)"""
    for row_id in ids:
        try:
            send(row_id)
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            logger.exception("The %s %s could not be sent; the others go on", kind, row_id)


@shared_task(name="wallets.withdrawal_send", ignore_result=True, time_limit=120, soft_time_limit=100)
def withdrawal_send_task(withdrawal_id: str) -> str:
    # No Celery-level retry: the outbox row carries its own next_attempt_at, and the periodic
    # dispatcher picks it up again; a retry here could not be safer than that.
    return services.withdrawal_send(withdrawal_id=withdrawal_id)


@shared_task(name="wallets.withdrawals_dispatch", ignore_result=True, time_limit=300, soft_time_limit=280)
def withdrawals_dispatch_task(limit: int = 100) -> int:
    """Settle the reverted withdrawals whose refund has come due (first: an equal withdrawal waits for
    them), then send what the outbox holds that is due (new rows, retries, rows whose sender died)."""
    reverted = services.withdrawals_refund_due(limit=limit)
    _send_each("reverted withdrawal", reverted, lambda row_id: services.withdrawal_refund_settle(withdrawal_id=row_id))
    due = services.withdrawals_due(limit=limit)
    _send_each("withdrawal", due, lambda row_id: services.withdrawal_send(withdrawal_id=row_id))
    return len(reverted) + len(due)


@shared_task(name="wallets.sweep_send", ignore_result=True, time_limit=120, soft_time_limit=100)
def sweep_send_task(sweep_id: str) -> str:
    return services.sweep_send(sweep_id=sweep_id)


@shared_task(name="wallets.sweeps_dispatch", ignore_result=True, time_limit=300, soft_time_limit=280)
def sweeps_dispatch_task(limit: int = 100) -> int:
    """Sweep what deposits are due into the treasury (new ones, retries, ones whose sender died)."""
    due = services.sweeps_due(limit=limit)
    _send_each("sweep", due, lambda row_id: services.sweep_send(sweep_id=row_id))
    return len(due)


@shared_task(name="wallets.sends_confirm", ignore_result=True, time_limit=300, soft_time_limit=280)
@single_flight
def sends_confirm_task() -> dict[str, int]:
    """Confirm (or undo) what the outbox sent, from Chipi's records (one read of the treasury's)."""
    return vars(services.sends_confirm())


@shared_task(name="wallets.deposits_poll", ignore_result=True, time_limit=300, soft_time_limit=280)
@single_flight
def deposits_poll_task() -> int:
    """Look for deposits no webhook reported (a lost webhook loses nothing)."""
    return services.deposits_poll()


@shared_task(name="wallets.reconcile", ignore_result=True, time_limit=300, soft_time_limit=280)
@single_flight
def reconcile_task() -> list[int]:
    return [report.difference for report in services.reconcile()]


@shared_task(name="wallets.idempotency_expire", ignore_result=True, time_limit=300, soft_time_limit=280)
def idempotency_expire_task() -> int:
    return idempotency.idempotency_keys_expire(now=timezone.now())
