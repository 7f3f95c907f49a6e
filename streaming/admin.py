"""Operators watch sessions here and can stop one (through the same service as the API)."""

from __future__ import annotations

from django.contrib import admin, messages

from paygo.api.amounts import format_minor
from streaming import services
from streaming.models import SessionCharge, SessionStatus, StopReason, StreamingSession, UsageEvent


class SessionChargeInline(admin.TabularInline):
    model = SessionCharge
    fields = ("ledger_transaction", "amount", "metered_until", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(StreamingSession)
class StreamingSessionAdmin(admin.ModelAdmin):
    list_display = (
        "session_id",
        "user",
        "vendor",
        "service",
        "kind",
        "status",
        "stop_reason",
        "start_time",
        "cost_display",
    )
    list_filter = ("status", "kind", "stop_reason", "unit")
    search_fields = ("session_id", "user__email", "vendor__email", "service__name")
    date_hierarchy = "start_time"
    list_select_related = ("user", "vendor", "service", "asset")
    inlines = [SessionChargeInline]
    actions = ["stop_sessions"]
    readonly_fields = [f.name for f in StreamingSession._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="total cost")
    def cost_display(self, session: StreamingSession) -> str:
        return f"{format_minor(session.total_cost, session.asset.decimals)} {session.asset.code}"

    @admin.action(description="Stop the selected sessions (charged up to now)", permissions=["change"])
    def stop_sessions(self, request, queryset):
        stopped = 0
        for session in queryset.filter(status=SessionStatus.ACTIVE):
            services.session_stop(session=session, reason=StopReason.STAFF)
            stopped += 1
        self.message_user(request, f"{stopped} session(s) stopped.", messages.SUCCESS)


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    list_display = ("event_id", "session", "quantity", "created_at")
    search_fields = ("event_id", "session__session_id")
    readonly_fields = ("session", "event_id", "quantity", "created_at")

    def has_add_permission(self, request):
        return False
