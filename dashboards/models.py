"""The dashboards' read model: the ledger's charges and flows, and session starts, per UTC bucket.

Written only by dashboards.rollup.rollup_advance, read only through dashboards.rollup. The rows
hold every entry up to Watermark.entry_id (every session up to Watermark.session_id) and none
after; the foreign keys are not enforced, so that this model never locks or constrains a row of
the apps it reads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import models

from paygo.fields import MinorUnitsField

QUARTER_HOUR = 15 * 60
DAY = 24 * 60 * 60


class Watermark(models.Model):
    """How far the rollup has read: every entry with id <= entry_id and every session with
    id <= session_id, none after."""

    entry_id = models.BigIntegerField(default=0)
    session_id = models.BigIntegerField(default=0)
    # Every entry after entry_id belongs to a transaction after this one (a transaction and its
    # entries are posted together, by wallets_post): the tail's transactions are found by id too.
    transaction_floor = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"rollup through entry {self.entry_id}, session {self.session_id}"


def _unenforced(to, **extra):
    return models.ForeignKey(to, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", **extra)


class ChargeBucket(models.Model):
    """One session's charge entries in one 15-minute UTC bucket of their transactions' times.

    User, vendor, service and asset are the session's, copied so that a dashboard reads them
    without a join; payer_amount (<= 0) is what the session's payer was debited, payee_amount
    (>= 0) what its vendor was credited, net of the platform's fee. A user's and a vendor's own
    dashboards read these rows; the platform's figures read ServiceBucket, whose rows do not grow
    with the sessions.
    """

    session = _unenforced("streaming.StreamingSession", db_index=False)
    start = models.DateTimeField(help_text="Start of the UTC bucket.")
    asset = _unenforced("wallets.Asset", db_index=False)
    service = _unenforced("marketplace.Service", db_index=False)
    vendor = _unenforced(settings.AUTH_USER_MODEL, db_index=False)
    user = _unenforced(settings.AUTH_USER_MODEL, db_index=False)
    payer_amount = MinorUnitsField(default=0)
    payee_amount = MinorUnitsField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "start"], name="dashboards_charge_bucket_key")]
        indexes = [
            models.Index(
                fields=["user", "start"], include=["asset", "service", "payer_amount"], name="dashboards_charge_user"
            ),
            models.Index(
                fields=["vendor", "start"],
                include=["asset", "service", "payee_amount"],
                name="dashboards_charge_vendor",
            ),
            models.Index(
                fields=["vendor", "user"], include=["asset", "payee_amount"], name="dashboards_charge_customer"
            ),
        ]

    def __str__(self) -> str:
        return f"session {self.session_id} at {self.start:%Y-%m-%d %H:%M}"


# ServiceBucket's spans: 15 minutes, a day, then 4, 16, 64, 256 and 1024 days, all counted from
# SPAN_ORIGIN (a UTC midnight). Any window of 15-minute edges is a few dozen of them, whatever its
# length: the largest that fit, from each edge inwards.
SPAN_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
SERVICE_SPANS = (QUARTER_HOUR, DAY, 4 * DAY, 16 * DAY, 64 * DAY, 256 * DAY, 1024 * DAY)


class ServiceBucket(models.Model):
    """One service's charges and session starts in one UTC bucket of `span` seconds (every charge
    and every session start is in one row of each span).

    payer_amount (<= 0) is what the service's sessions' payers were debited, payee_amount (>= 0)
    what its vendor was credited net of the fee, both by the time the charges were posted;
    `sessions` counts the service's sessions by the time they started. The platform's top services
    and vendors and a vendor's own figures read these rows: their number is bounded by the services
    and the spans of a window, not by the ledger or the sessions in it.
    """

    span = models.PositiveIntegerField(choices=[(span, f"{span} s") for span in SERVICE_SPANS])
    start = models.DateTimeField(help_text="Start of the UTC bucket.")
    asset = _unenforced("wallets.Asset", db_index=False)
    service = _unenforced("marketplace.Service", db_index=False)
    vendor = _unenforced(settings.AUTH_USER_MODEL, db_index=False)
    payer_amount = MinorUnitsField(default=0)
    payee_amount = MinorUnitsField(default=0)
    sessions = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["span", "start", "asset", "service", "vendor"],
                include=["payer_amount", "payee_amount", "sessions"],
                name="dashboards_service_bucket_key",
            )
        ]
        indexes = [
            models.Index(
                fields=["vendor", "span", "start"],
                include=["asset", "service", "payee_amount", "sessions"],
                name="dashboards_service_vendor",
            )
        ]

    def __str__(self) -> str:
        return f"service {self.service_id} at {self.start:%Y-%m-%d %H:%M} ({self.span} s)"


# UserBucket's spans: ServiceBucket's, with an hour and four hours between 15 minutes and a day, so
# that a local day in a zone off UTC (its edges on 15-minute UTC edges) is a dozen buckets at most
# (a few of 15 minutes, an hour and four hours at each edge), not up to 96 of 15 minutes.
HOUR = 60 * 60
USER_SPANS = (QUARTER_HOUR, HOUR, 4 * HOUR, *SERVICE_SPANS[1:])


class UserBucket(models.Model):
    """One user's charges (as the payer) and session starts in one asset and one UTC bucket of
    `span` seconds: every charge and every session start is in one row of each span.

    payer_amount (<= 0) is what the user's sessions' charges debited them, by the time the charges
    were posted; `sessions` counts the user's sessions by the time they started. A user's series
    (their overview's periods, their wallet's days and months) read these rows: a few per local day
    or month whatever the sessions in it, where ChargeBucket has one per session.
    """

    span = models.PositiveIntegerField(choices=[(span, f"{span} s") for span in USER_SPANS])
    start = models.DateTimeField(help_text="Start of the UTC bucket.")
    asset = _unenforced("wallets.Asset", db_index=False)
    user = _unenforced(settings.AUTH_USER_MODEL, db_index=False)
    payer_amount = MinorUnitsField(default=0)
    sessions = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "asset", "span", "start"],
                include=["payer_amount", "sessions"],
                name="dashboards_user_bucket_key",
            )
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} at {self.start:%Y-%m-%d %H:%M} ({self.span} s)"


class CustomerTotal(models.Model):
    """One user's charges and sessions on one service (of one vendor, in one asset), all time.

    payer_amount (<= 0) is what the user was debited, payee_amount (>= 0) what the vendor was
    credited net of the fee, `charges` the charge entries summed; `sessions` counts the user's
    sessions of the service, `ended` those of them that had ended when the rollup looked (a session
    summed while it ran waits in RunningSession until it ends), `ended_seconds` their total usage
    and `longest` the longest of them (end - start). A user's all-time figures per service or
    category and a vendor's earnings from a customer read these rows: one per (user, service),
    whatever the sessions.
    """

    user = _unenforced(settings.AUTH_USER_MODEL, db_index=False)
    service = _unenforced("marketplace.Service", db_index=False)
    asset = _unenforced("wallets.Asset", db_index=False)
    vendor = _unenforced(settings.AUTH_USER_MODEL, db_index=False)
    payer_amount = MinorUnitsField(default=0)
    payee_amount = MinorUnitsField(default=0)
    charges = models.BigIntegerField(default=0)
    sessions = models.BigIntegerField(default=0)
    ended = models.BigIntegerField(default=0)
    ended_seconds = models.BigIntegerField(default=0)
    longest = models.DurationField(default=timedelta)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "service", "asset", "vendor"],
                include=["payer_amount", "payee_amount", "charges", "sessions", "ended", "ended_seconds", "longest"],
                name="dashboards_customer_total_key",
            )
        ]
        indexes = [
            models.Index(
                fields=["vendor", "user"],
                include=["asset", "payee_amount", "sessions"],
                name="dashboards_customer_vendor",
            )
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} on service {self.service_id}"


class RunningSession(models.Model):
    """A session the rollup summed (its id is at or below Watermark.session_id) while it still ran:
    its end is counted into CustomerTotal (ended, ended_seconds, longest) by the first rollup run
    that sees it ended, which deletes this row in the same statement. A session's status and length
    change when it ends, after it was summed: these rows are how few sessions are looked at again."""

    session = models.OneToOneField(
        "streaming.StreamingSession", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    user = _unenforced(settings.AUTH_USER_MODEL, db_index=False)
    asset = _unenforced("wallets.Asset", db_index=False)

    class Meta:
        indexes = [models.Index(fields=["user", "asset"], name="dashboards_running_user")]

    def __str__(self) -> str:
        return f"session {self.session_id}, running when summed"


class LedgerBucket(models.Model):
    """The platform's entries of one asset and transaction kind on one kind of holder ('user' for
    user wallets, else the system account's code), per UTC bucket of `span` seconds: every entry
    is in one 15-minute row and in one day row."""

    span = models.PositiveIntegerField(choices=[(QUARTER_HOUR, "15 minutes"), (DAY, "day")])
    start = models.DateTimeField(help_text="Start of the UTC bucket.")
    asset = _unenforced("wallets.Asset", db_index=False)
    kind = models.CharField(max_length=12)
    holder = models.CharField(max_length=30)
    debits = MinorUnitsField(default=0)
    credits = MinorUnitsField(default=0)
    debit_count = models.BigIntegerField(default=0)
    credit_count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["span", "start", "asset", "kind", "holder"], name="dashboards_ledger_bucket_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} on {self.holder} at {self.start:%Y-%m-%d %H:%M} ({self.span} s)"


class SessionBucket(models.Model):
    """Sessions of one asset that started in one UTC bucket of `span` seconds: every session is in
    one 15-minute row and in one day row. A session's start time and asset never change."""

    span = models.PositiveIntegerField(choices=[(QUARTER_HOUR, "15 minutes"), (DAY, "day")])
    start = models.DateTimeField(help_text="Start of the UTC bucket.")
    asset = _unenforced("wallets.Asset", db_index=False)
    sessions = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["span", "start", "asset"], name="dashboards_session_bucket_key")]

    def __str__(self) -> str:
        return f"{self.sessions} sessions at {self.start:%Y-%m-%d %H:%M} ({self.span} s)"


class PlatformOverview(models.Model):
    """No table, no rows: it holds the permission to see the platform's figures, which the staff
    API's admin overview and the admin's operator dashboard both ask (no other model's fits them)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_platform_overview", "Can view the platform overview (the operator dashboard)")]

    def __str__(self) -> str:
        return "platform overview"


class HealthMark(models.Model):
    """How far the ledger's scheduled health check (dashboards/health.py) has read: every entry with
    id <= entry_id was checked once, and CheckedBalance and CheckedCharges hold their sums; `found`
    counts what those checks found (entries are append-only: a finding is never undone). `result`
    is the latest run's answer; `full_result` the latest full check's (manage.py ledger_check --full)."""

    entry_id = models.BigIntegerField(default=0)
    found = models.JSONField(default=dict)
    result = models.JSONField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    full_result = models.JSONField(null=True, blank=True)
    full_checked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"ledger checked through entry {self.entry_id}"


class CheckedBalance(models.Model):
    """An account's entries summed up to HealthMark.entry_id."""

    account_id = models.BigIntegerField(primary_key=True)
    total = MinorUnitsField(default=0)

    def __str__(self) -> str:
        return f"account {self.account_id}: {self.total}"


class CheckedCharges(models.Model):
    """A session's charges (what its payer was debited, >= 0) summed up to HealthMark.entry_id."""

    session_id = models.BigIntegerField(primary_key=True)
    total = MinorUnitsField(default=0)

    def __str__(self) -> str:
        return f"session {self.session_id}: {self.total}"
