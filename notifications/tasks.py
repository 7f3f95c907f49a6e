"""Celery tasks of notifications: email and SMS deliveries, broadcast dispatch, the stuck-delivery sweeper,
retention.

Thin and idempotent: the state is on the notification, and a delivery is claimed with a conditional
UPDATE before anything is sent, so a task run twice sends once. Only errors that can heal (timeouts,
dropped connections, 429, 5xx, SMTP 4xx) are retried, with exponential backoff and jitter.
"""

from __future__ import annotations

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval

from notifications import delivery, services
from notifications.models import Channel, Notification

MAX_RETRIES = 5
BACKOFF_FACTOR_SECONDS = 30  # 30s, 1m, 2m, 4m, 8m (with full jitter): about a quarter of an hour in all
BACKOFF_MAX_SECONDS = 600
_DELIVERY_OPTIONS = {
    "bind": True,
    "max_retries": MAX_RETRIES,
    "soft_time_limit": 30,
    "time_limit": 60,  # well inside services.CLAIM_DURATION
    "acks_late": True,
    "ignore_result": True,
}


def _deliver(task, channel: str, notification_id: int) -> str:
    final_attempt = task.request.retries >= task.max_retries
    outcome = delivery.deliver(channel=channel, notification_id=notification_id, final_attempt=final_attempt)
    if outcome == delivery.Outcome.RETRY:
        countdown = get_exponential_backoff_interval(
            BACKOFF_FACTOR_SECONDS, task.request.retries, BACKOFF_MAX_SECONDS, full_jitter=True
        )
        raise task.retry(countdown=max(5, countdown))
    if outcome == delivery.Outcome.BUSY and not final_attempt:
        # Another worker holds the claim (a redelivered message, or a worker that died mid-send):
        # look again once it has expired.
        raise task.retry(countdown=services.CLAIM_DURATION.total_seconds())
    return outcome.value


@shared_task(name="notifications.deliver_email", **_DELIVERY_OPTIONS)
def deliver_email(self, notification_id: int) -> str:
    return _deliver(self, Channel.EMAIL, notification_id)


@shared_task(name="notifications.deliver_sms", **_DELIVERY_OPTIONS)
def deliver_sms(self, notification_id: int) -> str:
    return _deliver(self, Channel.SMS, notification_id)


DELIVERY_TASKS = {Channel.EMAIL: deliver_email, Channel.SMS: deliver_sms}


@shared_task(name="notifications.dispatch", soft_time_limit=120, time_limit=180, ignore_result=True)
def dispatch_notifications(notification_ids: list[int]) -> int:
    """A chunk of a broadcast: push each notification to its owner's sockets, queue its deliveries."""
    notifications = list(Notification.objects.filter(pk__in=notification_ids).order_by("pk"))
    services.notifications_dispatch(notifications)
    return len(notifications)


@shared_task(name="notifications.requeue_stuck_deliveries", soft_time_limit=120, time_limit=180, ignore_result=True)
def requeue_stuck_deliveries() -> dict[str, int]:
    return services.delivery_requeue_stuck()


@shared_task(name="notifications.expire", soft_time_limit=240, time_limit=300, ignore_result=True)
def notifications_expire_task() -> int:
    return services.notifications_expire()
