"""Operators watch sessions here, live while they run, and can stop one (through the same service as
the API). Sessions are written only by the streaming services: their pages are read-only."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse

from marketplace.models import ServiceUnit
from paygo.admin import (
    AdminInputMixin,
    EstimatedCountPaginator,
    FirstRowsInlineMixin,
    ReadOnlyAdminMixin,
    amount_field,
    in_units,
    short,
)
from streaming import services
from streaming.models import SessionStatus, StopReason, StreamingSession, UsageEvent
from wallets.admin import transaction_link
from wallets.models import Entry

STOP_PERMISSION = "streaming.change_streamingsession"


class SessionChargeInline(FirstRowsInlineMixin, ReadOnlyAdminMixin, admin.TabularInline):
    """A session's latest charges (the ledger's debits of its payer that carry it), newest first,
    and a link to all of them in the ledger's entries."""

    model = Entry
    fk_name = "session"
    verbose_name, verbose_name_plural = "charge", "charges"
    fields = ("amount_in_units", "billed_from", "billed_until", "fee_in_units", "ledger_transaction")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-billed_until", "-id")

    amount_in_units = amount_field("charged", asset="asset", description="amount", ordering=False)
    fee_in_units = amount_field("fee", asset="asset", description="platform fee", ordering=False)

    def get_queryset(self, request):
        # The account, its owner and asset: each row's heading (Entry.__str__) names them.
        return super().get_queryset(request).select_related("asset", "account__owner", "account__asset", "transaction")

    def all_rows_url(self, session: StreamingSession) -> str:
        return f"{reverse('admin:wallets_entry_changelist')}?session={session.pk}"

    @admin.display(description="ledger transaction")
    def ledger_transaction(self, charge: Entry) -> str:
        return transaction_link(charge.transaction)


@admin.register(StreamingSession)
class StreamingSessionAdmin(AdminInputMixin, admin.ModelAdmin):
    list_display = ("short_id", "status", "cost", "start_time", "service", "user_name", "vendor_name")
    list_filter = ("status", "kind", "stop_reason", "unit")
    search_fields = ("session_id", "user__email", "vendor__email", "service__name")
    date_hierarchy = "start_time"
    list_select_related = ("user", "vendor", "service", "asset")
    paginator = EstimatedCountPaginator  # a session per call and stream, kept: the whole list is big
    show_full_result_count = False
    inlines = [SessionChargeInline]
    actions = ["stop_sessions"]
    fieldsets = (
        (None, {"fields": ("session_id", "status", "stop_reason", "kind", "service", "user", "vendor")}),
        (
            "Money",
            {
                "fields": (
                    "price",
                    "free_seconds",
                    "minimum_charge_in_units",
                    "session_fee_in_units",
                    "max_cost_in_units",
                    "metered_cost_in_units",
                    "cost",
                    "charge_count",
                    "usage_quantity",
                    "payer_account",
                    "payee_account",
                    "hold",
                    "held",
                )
            },
        ),
        (
            "Time",
            {
                "fields": (
                    "start_time",
                    "end_time",
                    "charged_until",
                    "last_heartbeat_at",
                    "stop_at",
                    "stop_at_reason",
                    "alert_level",
                    "total_usage_seconds",
                )
            },
        ),
        ("Client", {"fields": ("client_info", "quality_metrics", "created_at", "updated_at")}),
    )
    readonly_fields = tuple(field for _, options in fieldsets for field in options["fields"])

    minimum_charge_in_units = amount_field("minimum_charge", description="minimum charge")
    session_fee_in_units = amount_field("session_fee", description="session fee")
    max_cost_in_units = amount_field("max_cost", description="max cost")
    metered_cost_in_units = amount_field("metered_cost", description="metered cost")
    cost = amount_field("total_cost", description="total cost")

    # A session changes only through the streaming services: its page has nothing to save, and
    # stopping it (the action, the button on its page) asks the permission to change sessions.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_stop_permission(self, request) -> bool:
        return request.user.has_perm(STOP_PERMISSION)

    @admin.display(description="session", ordering="session_id")
    def short_id(self, session: StreamingSession) -> str:
        return short(str(session.session_id))

    @admin.display(description="user", ordering="user__name")
    def user_name(self, session: StreamingSession) -> str:
        return session.user.name

    @admin.display(description="vendor", ordering="vendor__name")
    def vendor_name(self, session: StreamingSession) -> str:
        return session.vendor.name

    @admin.display(description="rate")
    def price(self, session: StreamingSession) -> str:
        label = ServiceUnit(session.unit).label
        return f"{in_units(session.rate, session.asset)} {label[0].lower()}{label[1:]}"

    @admin.display(description="held for the coming period")
    def held(self, session: StreamingSession) -> str:
        return in_units(session.hold.amount, session.asset)

    @admin.action(description="Stop the selected sessions (charged up to now)", permissions=["stop"])
    def stop_sessions(self, request, queryset):
        stopped = 0
        for session in queryset.filter(status=SessionStatus.ACTIVE):
            services.session_stop(session=session, reason=StopReason.STAFF)
            stopped += 1
        self.message_user(request, f"{stopped} session(s) stopped.", messages.SUCCESS)

    def get_urls(self):
        stop = self.admin_site.admin_view(self.stop_view)
        return [path("<int:pk>/stop/", stop, name="streaming_streamingsession_stop"), *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        session = self.get_object(request, object_id)
        live = session is not None and session.status == SessionStatus.ACTIVE
        extra_context = {
            **(extra_context or {}),
            "live": live,
            "live_token": session.asset.code if session else "",
            "stop_url": reverse("admin:streaming_streamingsession_stop", args=[session.pk])
            if live and self.has_stop_permission(request)
            else None,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def stop_view(self, request, pk: int):
        """The stop button of a running session's page: charged up to now, as the API stops it."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_stop_permission(request):
            raise PermissionDenied
        session = get_object_or_404(StreamingSession, pk=pk)
        services.session_stop(session=session, reason=StopReason.STAFF)
        self.message_user(request, f"Session {session.session_id} stopped.", messages.SUCCESS)
        return redirect("admin:streaming_streamingsession_change", pk)


@admin.register(UsageEvent)
class UsageEventAdmin(AdminInputMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("event_id", "session", "quantity", "created_at")
    search_fields = ("event_id", "session__session_id")
    paginator = EstimatedCountPaginator  # a row per usage report: the whole list is big
    show_full_result_count = False
    readonly_fields = ("session", "event_id", "quantity", "created_at")
