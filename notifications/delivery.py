"""One attempt at delivering one notification on one channel: claim it, send it, record what happened.

The Celery tasks call `deliver()` and act on its outcome (retry or stop); the state lives on the
notification, so re-running an attempt for a delivery that is already done does nothing.

An SMS is sent at most once: it is marked as being sent (committed) before Twilio is asked, and
one whose outcome is unknown (Twilio's answer lost, the time limit or the worker's death while it
was awaited) is recorded as failed, never asked for again. An email is at least once: a worker that
dies after the mail server took it and before that is recorded leaves it to be sent again, rarely
twice, which costs less than an email lost.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from celery.exceptions import SoftTimeLimitExceeded

from notifications import selectors, senders, services
from notifications.models import Channel, DeliveryStatus, Notification
from paygo.api.text import without_hidden_characters

logger = logging.getLogger("paygo.notifications")

SMS_MAX_CHARS = 320  # two segments: an SMS is a nudge to open the app, not the whole story


class Outcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    RETRY = "retry"  # an error that can heal: try again later
    BUSY = "busy"  # another worker holds the claim: look again once it has expired
    NOTHING_TO_DO = "nothing_to_do"  # already sent, failed, skipped, or never requested


def deliver(*, channel: str, notification_id: int, final_attempt: bool) -> Outcome:
    notification = services.delivery_claim(notification_id=notification_id, channel=channel)
    if notification is None:
        if services.delivery_is_claimed(notification_id=notification_id, channel=channel):
            return Outcome.BUSY
        return Outcome.NOTHING_TO_DO

    def finish(status: DeliveryStatus, error: str = "", **extra: str) -> Outcome:
        services.delivery_finish(notification_id=notification_id, channel=channel, status=status, error=error, **extra)
        return Outcome(status.value)

    # The account may have changed since the notification was made (phone removed, deactivated),
    # and so may what its owner wants: a retry, or a delivery re-queued later, goes out only on a
    # channel they still have on for this type.
    reason = services.unreachable_reason(notification.user, channel)
    if reason:
        return finish(DeliveryStatus.SKIPPED, reason)
    if not getattr(selectors.channels_for(notification.user_id, notification.type), channel):
        return finish(DeliveryStatus.SKIPPED, "Turned off in the notification preferences since.")
    try:
        if channel == Channel.EMAIL:
            _send_email(notification)
            sent = {}
        else:
            sent = {"sms_sid": _send_sms(notification)}
    except senders.ProviderNotConfigured as exc:
        return finish(DeliveryStatus.SKIPPED, f"{exc} The message was logged, not sent.")
    except senders.PermanentDeliveryError as exc:
        logger.warning("%s delivery of notification %s failed: %s", channel, notification_id, exc)
        return finish(DeliveryStatus.FAILED, str(exc))
    except (senders.TransientDeliveryError, SoftTimeLimitExceeded) as exc:
        # An SMS's time limit arrives here only from before its request was handed to Twilio's
        # client (send_sms makes it OutcomeUnknown after), when nothing was sent. An email's may
        # arrive as the mail server takes it: retried, it may arrive twice (at least once).
        error = str(exc) or "The send took too long."
        if final_attempt:
            logger.warning("%s delivery of notification %s gave up: %s", channel, notification_id, error)
            return finish(
                DeliveryStatus.FAILED, f"Gave up after {notification_attempts(notification, channel)} attempts: {error}"
            )
        services.delivery_release(notification_id=notification_id, channel=channel, error=error)
        return Outcome.RETRY
    except Exception as exc:  # a bug: recorded, never retried in a loop, never raised to the caller
        logger.exception("%s delivery of notification %s broke", channel, notification_id)
        return finish(DeliveryStatus.FAILED, f"Unexpected error: {exc.__class__.__name__}: {exc}")
    # The provider has the message: from here nothing may read as "not sent" (a retry would send it
    # again). The soft time limit, arriving while this is recorded, is raised once: record it again.
    try:
        return finish(DeliveryStatus.SENT, **sent)
    except SoftTimeLimitExceeded:
        return finish(DeliveryStatus.SENT, **sent)


def notification_attempts(notification: Notification, channel: str) -> int:
    return getattr(notification, f"{channel}_attempts")


def _send_email(notification: Notification) -> None:
    user = notification.user
    body = (
        f"Hello {without_hidden_characters(user.name)},\n\n{notification.message}\n\n"
        f"--\nPayGo. You receive this email because email is on for {notification.get_type_display().lower()} "
        "notifications in your notification preferences."
    )
    senders.send_email(to=user.email, subject=notification.title, body=body)


def sms_body(notification: Notification) -> str:
    text = f"PayGo: {notification.title}\n{notification.message}"
    return text if len(text) <= SMS_MAX_CHARS else text[: SMS_MAX_CHARS - 3] + "..."


def _send_sms(notification: Notification) -> str:
    if senders.sms_configured():  # otherwise it is only logged: nothing to mark
        services.delivery_sms_sending(notification_id=notification.pk)
    return senders.send_sms(to=notification.user.phone, body=sms_body(notification))
