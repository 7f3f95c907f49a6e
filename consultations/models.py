"""Consultation threads between a user and a vendor, their messages, and their paid calls."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length
from django.db.models.lookups import GreaterThan, LessThanOrEqual
from django.utils import timezone

MESSAGE_MAX_LENGTH = 5000


class ConsultationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    # Never stored: an accepted consultation is active while one of its calls is a running session
    # (selectors.with_current_status). Whatever ends the session (the user, the vendor, staff, the
    # billing sweep when funds run out, silence for the idle timeout, from the instant it runs out)
    # thereby returns it to accepted.
    ACTIVE = "active", "Active (call running)"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"


STORED_STATUSES = [value for value in ConsultationStatus.values if value != ConsultationStatus.ACTIVE]
OPEN_STATUSES = [ConsultationStatus.PENDING, ConsultationStatus.ACCEPTED]
CLOSED_STATUSES = [ConsultationStatus.COMPLETED, ConsultationStatus.CANCELLED, ConsultationStatus.REJECTED]
ONE_OPEN_PER_USER_SERVICE = "consultation_one_open_per_user_service"


class Consultation(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="consultations")
    vendor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="vendor_consultations")
    service = models.ForeignKey("marketplace.Service", on_delete=models.PROTECT, related_name="consultations")
    status = models.CharField(
        max_length=10,
        choices=[(value, label) for value, label in ConsultationStatus.choices if value in STORED_STATUSES],
        default=ConsultationStatus.PENDING,
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True, help_text="When it was completed, cancelled or rejected.")
    # The newest message's time: lists are ordered by it (newest activity first) through an index.
    last_message_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_message_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-last_message_at", "-id"], name="consultation_user_activity"),
            models.Index(fields=["vendor", "-last_message_at", "-id"], name="consultation_vendor_activity"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=STORED_STATUSES), name="consultation_status_stored"),
            models.CheckConstraint(condition=~Q(user=F("vendor")), name="consultation_not_with_oneself"),
            models.CheckConstraint(
                condition=(Q(status__in=OPEN_STATUSES) & Q(closed_at__isnull=True))
                | (Q(status__in=CLOSED_STATUSES) & Q(closed_at__isnull=False)),
                name="consultation_closed_at_matches_status",
            ),
            # One open request per user and service: asking again while one is open is a 409 that names
            # it (services.consultation_create), and two asks at once are one row and one refusal.
            models.UniqueConstraint(
                fields=["user", "service"],
                condition=Q(status__in=OPEN_STATUSES),
                name=ONE_OPEN_PER_USER_SERVICE,
            ),
        ]

    def __str__(self) -> str:
        return f"consultation {self.pk} ({self.status})"

    @property
    def is_closed(self) -> bool:
        return self.status in CLOSED_STATUSES

    def participant_side(self, user) -> str | None:
        """'user' or 'vendor' for its participants, None for anyone else."""
        if user.pk == self.user_id:
            return "user"
        if user.pk == self.vendor_id:
            return "vendor"
        return None

    def other_participant_id(self, user) -> int:
        return self.vendor_id if user.pk == self.user_id else self.user_id


class Message(models.Model):
    consultation = models.ForeignKey(Consultation, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # Visible text (paygo.api.text.visible_text, its lines kept), stored as the API took it; the API
    # returns it JSON-encoded and every HTML page escapes it.
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True, help_text="When the other participant opened it.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["consultation", "-created_at", "-id"], name="consultation_message_thread"),
            models.Index(
                fields=["consultation", "sender"], condition=Q(read_at__isnull=True), name="consultation_message_unread"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=GreaterThan(Length("body"), 0) & LessThanOrEqual(Length("body"), MESSAGE_MAX_LENGTH),
                name="consultation_message_body_length",
            ),
        ]

    def __str__(self) -> str:
        return f"message {self.pk} in consultation {self.consultation_id}"


class ConsultationCall(models.Model):
    """A consultation's paid call: a metered session (kind consultation) on its service.

    The link lives here, so that streaming knows nothing of consultations.
    """

    consultation = models.ForeignKey(Consultation, on_delete=models.PROTECT, related_name="calls")
    session = models.OneToOneField(
        "streaming.StreamingSession", on_delete=models.PROTECT, related_name="consultation_call"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"call {self.session_id} of consultation {self.consultation_id}"
