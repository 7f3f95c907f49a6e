"""Metered sessions (the seed's StreamingSession) and their usage events.

A session's charges are ledger entries: the debits of its payer that carry it (wallets.Entry.session).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from paygo.fields import MinorUnitsField
from streaming.billing import session_ends_by_itself_at


class SessionKind(models.TextChoices):
    STREAM = "stream", "Stream"
    CONSULTATION = "consultation", "Consultation call"


class SessionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"  # ended by its user
    STOPPED = "stopped", "Stopped"  # ended by the vendor, staff, or the platform


class StopReason(models.TextChoices):
    USER = "user", "Stopped by the user"
    VENDOR = "vendor", "Stopped by the vendor"
    STAFF = "staff", "Stopped by staff"
    INSUFFICIENT_FUNDS = "insufficient_funds", "Funds ran out"
    IDLE = "idle", "No heartbeat"
    MAX_COST = "max_cost", "Reached its maximum cost"


class StreamingSession(models.Model):
    session_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Indexes cost every sweep's updates: user and vendor are covered by the (user|vendor,
    # start_time) indexes below, the accounts and asset are never looked up from here.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="streaming_sessions", db_index=False
    )
    vendor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="hosted_sessions", db_index=False
    )
    service = models.ForeignKey("marketplace.Service", on_delete=models.PROTECT, related_name="sessions")
    kind = models.CharField(max_length=12, choices=SessionKind.choices, default=SessionKind.STREAM)
    status = models.CharField(max_length=10, choices=SessionStatus.choices, default=SessionStatus.ACTIVE)
    stop_reason = models.CharField(max_length=20, choices=StopReason.choices, blank=True, default="")
    start_time = models.DateTimeField(default=timezone.now)
    end_time = models.DateTimeField(null=True, blank=True)

    # The price, copied from the service at start: a later price change never touches a running session.
    asset = models.ForeignKey("wallets.Asset", on_delete=models.PROTECT, related_name="+", db_index=False)
    rate = MinorUnitsField()
    unit = models.CharField(max_length=20)
    free_seconds = models.PositiveIntegerField(default=0)
    minimum_charge = MinorUnitsField(default=0)
    session_fee = MinorUnitsField(default=0, help_text="Charged once at start (per_session services).")
    # The spending cap: the user's maxCost, or for usage units the service's max_session_cost.
    max_cost = MinorUnitsField(null=True, blank=True)
    max_event_quantity = MinorUnitsField(
        null=True, blank=True, help_text="Usage units: the largest quantity one report may carry (from the service)."
    )

    # Money: the wallets it moves between (opened at start) and its hold on the payer's wallet.
    payer_account = models.ForeignKey("wallets.Account", on_delete=models.PROTECT, related_name="+", db_index=False)
    payee_account = models.ForeignKey("wallets.Account", on_delete=models.PROTECT, related_name="+", db_index=False)
    hold = models.OneToOneField("wallets.Hold", on_delete=models.PROTECT, related_name="session")

    # Billing state, changed only by streaming_bill (streaming/sql/sweep_batch.sql, through billing.py).
    charged_until = models.DateTimeField(help_text="The instant up to which metered_cost is charged.")
    metered_cost = MinorUnitsField(default=0, help_text="Charged for time or usage so far: due(charged_until).")
    total_cost = MinorUnitsField(default=0, help_text="Everything charged: metered, session fee, minimum top-up.")
    charge_count = models.PositiveIntegerField(default=0)
    usage_quantity = MinorUnitsField(default=0, help_text="Usage reported so far (bytes, requests, transactions).")
    stop_at = models.DateTimeField(null=True, blank=True, help_text="When its money or maxCost runs out.")
    stop_at_reason = models.CharField(max_length=20, choices=StopReason.choices, blank=True, default="")
    alert_level = models.PositiveSmallIntegerField(
        default=0, help_text="Low-balance alerts sent: 1 at 5 min, 2 at 1 min."
    )
    total_usage_seconds = models.PositiveIntegerField(default=0)

    client_info = models.JSONField(default=dict, blank=True)
    quality_metrics = models.JSONField(default=list, blank=True)
    last_heartbeat_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-start_time", "-id"]
        indexes = [
            models.Index(fields=["id"], condition=Q(status="active"), name="streaming_active_sessions"),
            models.Index(fields=["user", "-start_time"], name="streaming_user_start"),
            models.Index(fields=["vendor", "-start_time"], name="streaming_vendor_start"),
            # The staff dashboard counts sessions started per period across everyone.
            models.Index(fields=["start_time"], name="streaming_start_time"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(rate__gte=0), name="streaming_rate_gte_0"),
            models.CheckConstraint(condition=Q(metered_cost__gte=0), name="streaming_metered_gte_0"),
            models.CheckConstraint(condition=Q(total_cost__gte=F("metered_cost")), name="streaming_total_gte_metered"),
            models.CheckConstraint(
                condition=Q(max_cost__isnull=True) | Q(max_cost__gt=0), name="streaming_max_cost_gt_0"
            ),
            models.CheckConstraint(
                condition=(Q(status="active") & Q(end_time__isnull=True))
                | (~Q(status="active") & Q(end_time__isnull=False) & Q(end_time__gte=F("start_time"))),
                name="streaming_end_matches_status",
            ),
        ]

    def __str__(self) -> str:
        return f"session {self.session_id} ({self.status})"

    @property
    def funds(self) -> int:
        """What it may still spend: its hold plus its payer wallet's free balance (as
        selectors.LiveSession has it). Read the session with its hold and payer_account."""
        return int(self.hold.amount + self.payer_account.available)

    @property
    def usage_seconds(self) -> int:
        """Whole seconds of use: as recorded at the end; while it runs, so far, but never past the
        instant it ended by itself (silent past its idle timeout, its funds or maxCost run out),
        which no bill goes beyond though it reads active until billing records it. That instant
        needs its funds: read the session with its hold and payer_account."""
        if self.end_time:
            return self.total_usage_seconds
        until = min(timezone.now(), session_ends_by_itself_at(self))
        return max(0, int((until - self.start_time).total_seconds()))


class UsageEvent(models.Model):
    """A vendor's report of usage on a usage-metered session; each event id counts once."""

    session = models.ForeignKey(StreamingSession, on_delete=models.PROTECT, related_name="usage_events")
    event_id = models.CharField(max_length=100)
    quantity = MinorUnitsField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["session", "event_id"], name="streaming_usage_event_once"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="streaming_usage_quantity_gt_0"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id}: {self.quantity}"
