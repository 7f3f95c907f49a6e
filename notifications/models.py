"""Notifications, the state of their delivery by email and SMS, and each user's channel preferences."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.db.models.functions import Least
from django.utils import timezone


class NotificationType(models.TextChoices):
    SESSION = "session", "Session"
    PAYMENT = "payment", "Payment"
    ALERT = "alert", "Alert"
    CONSULTATION = "consultation", "Consultation"
    SYSTEM = "system", "System"


class Channel(models.TextChoices):
    """The channels that leave the platform; in-app (the stored row and the socket push) is always on."""

    EMAIL = "email", "Email"
    SMS = "sms", "SMS"


class DeliveryStatus(models.TextChoices):
    NOT_REQUESTED = "not_requested", "Not requested"  # the user's preferences leave this channel off
    PENDING = "pending", "Pending"  # queued, being sent, or waiting for a retry
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"  # the provider refused it for good, or every retry failed
    # Wanted, but impossible (no verified phone, provider not configured...) or held back (an unread
    # notification of its thread was sent already).
    SKIPPED = "skipped", "Skipped"


@dataclass(frozen=True)
class ChannelChoice:
    email: bool
    sms: bool


# In-app is always on. Email for what concerns money (payments, alerts) and consultations; SMS, which
# costs money and interrupts, only for alerts (low balance, a session stopped for lack of funds). A
# session's start and end are in-app only: every session tells its user and its vendor twice, and a
# vendor with a thousand sessions a day was sent two thousand emails (its money is in its wallet's
# history, and a session stopped for lack of funds is an alert). These apply to whoever has no stored
# choice for the type; a stored choice (NotificationPreference) is the user's and is never rewritten.
DEFAULT_CHANNELS: dict[str, ChannelChoice] = {
    NotificationType.SESSION: ChannelChoice(email=False, sms=False),
    NotificationType.PAYMENT: ChannelChoice(email=True, sms=False),
    NotificationType.ALERT: ChannelChoice(email=True, sms=True),
    NotificationType.CONSULTATION: ChannelChoice(email=True, sms=False),
    NotificationType.SYSTEM: ChannelChoice(email=False, sms=False),
}

TITLE_MAX_LENGTH = 200
MESSAGE_MAX_LENGTH = 5000
THREAD_MAX_LENGTH = 64
DELIVERY_ERROR_MAX_LENGTH = 500


class Notification(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    type = models.CharField(max_length=16, choices=NotificationType.choices)
    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    message = models.TextField(max_length=MESSAGE_MAX_LENGTH)
    data = models.JSONField(default=dict, blank=True)
    read = models.BooleanField(default=False)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The owner dismissed it: hidden from them, kept with its delivery record for operators.
    deleted_at = models.DateTimeField(null=True, blank=True)
    # The staff member who sent it from the API or the admin; empty for the platform's own.
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The conversation it belongs to, named by the app that sent it ("consultation:42"); empty for
    # most. Its new messages are emailed and texted only while none of its notifications is unread.
    thread = models.CharField(max_length=THREAD_MAX_LENGTH, blank=True, default="")

    # Delivery, per channel. A `*_claimed_until` in the future is a worker's claim on the send; it
    # expires by itself, so a worker that died mid-send does not block the delivery for ever.
    email_status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.NOT_REQUESTED)
    email_attempts = models.PositiveSmallIntegerField(default=0)
    email_error = models.CharField(max_length=DELIVERY_ERROR_MAX_LENGTH, blank=True, default="")
    email_sent_at = models.DateTimeField(null=True, blank=True)
    email_claimed_until = models.DateTimeField(null=True, blank=True)
    sms_status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.NOT_REQUESTED)
    sms_attempts = models.PositiveSmallIntegerField(default=0)
    sms_error = models.CharField(max_length=DELIVERY_ERROR_MAX_LENGTH, blank=True, default="")
    sms_sent_at = models.DateTimeField(null=True, blank=True)
    sms_claimed_until = models.DateTimeField(null=True, blank=True)
    sms_sid = models.CharField("Twilio message SID", max_length=64, blank=True, default="")
    # When a worker last asked Twilio for this SMS, written (committed) before the request. A pending
    # SMS with this set and its claim expired lost its worker while Twilio may have taken it: it is
    # recorded as failed, never claimed again, since a second request would send it twice. Email has
    # no such mark: it is at least once (a worker that dies as the mail server takes it resends it).
    sms_sending_at = models.DateTimeField("SMS requested from Twilio at", null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["user", "-created_at", "-id"],
                condition=models.Q(deleted_at__isnull=True),
                name="notifications_inbox_idx",
            ),
            # The unread ones, by id: the badge's capped count, and read-all's batches walking down by id.
            models.Index(
                fields=["user", "id"],
                condition=models.Q(read=False, deleted_at__isnull=True),
                name="notifications_unread_id_idx",
            ),
            # Retention (services.notifications_expire): when each was read or dismissed, whichever came
            # first; unread ones still in the inbox are not in it.
            models.Index(
                Least("read_at", "deleted_at"),
                condition=models.Q(read=True) | models.Q(deleted_at__isnull=False),
                name="notifications_done_idx",
            ),
            # The admin's list, newest first.
            models.Index(fields=["-created_at", "-id"], name="notifications_created_idx"),
            models.Index(
                fields=["created_at"],
                condition=models.Q(email_status=DeliveryStatus.PENDING) | models.Q(sms_status=DeliveryStatus.PENDING),
                name="notifications_pending_idx",
            ),
            # The admin's search by a Twilio message SID.
            models.Index(fields=["sms_sid"], condition=~models.Q(sms_sid=""), name="notifications_sms_sid_idx"),
            models.Index(
                fields=["user", "thread"],
                condition=models.Q(read=False, deleted_at__isnull=True) & ~models.Q(thread=""),
                name="notifications_thread_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(type__in=NotificationType.values), name="notifications_type_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(email_status__in=DeliveryStatus.values), name="notifications_email_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(sms_status__in=DeliveryStatus.values), name="notifications_sms_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(read=False, read_at__isnull=True) | models.Q(read=True, read_at__isnull=False),
                name="notifications_read_at_iff_read",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()}: {self.title}"


class NotificationPreference(models.Model):
    """A user's choice of channels for one type; without a row, DEFAULT_CHANNELS apply."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    type = models.CharField(max_length=16, choices=NotificationType.choices)
    email = models.BooleanField()
    sms = models.BooleanField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "type"], name="notifications_preference_one_per_type"),
            models.CheckConstraint(
                condition=models.Q(type__in=NotificationType.values), name="notifications_preference_type_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.type}: email={self.email} sms={self.sms}"


class SentForm(models.Model):
    """A send form of the admin's (Send a notification), once sent: its token is unique, so that the
    same form sent twice (a double click, a reload that sends it again) sends once."""

    form_token = models.CharField(max_length=32, unique=True)
    sent_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    recipients = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"form {self.form_token}: {self.recipients} recipient(s)"
