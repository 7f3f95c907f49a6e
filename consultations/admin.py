"""Operators read consultations, their messages and their calls; they never write in them.

Message bodies are shown as Django's admin shows every text: escaped.
"""

from __future__ import annotations

from django.contrib import admin

from consultations.models import Consultation, ConsultationCall, ConsultationStatus, Message
from consultations.selectors import with_current_status
from paygo.admin import AdminInputMixin, EstimatedCountPaginator, ReadOnlyAdminMixin
from paygo.api.amounts import format_minor


class _ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False


class MessageInline(_ReadOnlyInline):
    model = Message
    fields = ("created_at", "sender", "body", "read_at")
    readonly_fields = fields
    ordering = ("created_at", "id")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("sender")


class CallInline(_ReadOnlyInline):
    model = ConsultationCall
    fields = ("session", "session_status", "start_time", "end_time", "cost")
    readonly_fields = fields
    verbose_name = "call"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("session__asset")

    @admin.display(description="status")
    def session_status(self, call: ConsultationCall) -> str:
        return call.session.get_status_display()

    @admin.display(description="started")
    def start_time(self, call: ConsultationCall):
        return call.session.start_time

    @admin.display(description="ended")
    def end_time(self, call: ConsultationCall):
        return call.session.end_time

    @admin.display(description="cost")
    def cost(self, call: ConsultationCall) -> str:
        session = call.session
        return f"{format_minor(session.total_cost, session.asset.decimals)} {session.asset.code}"


class CurrentStatusFilter(admin.SimpleListFilter):
    """The status the API shows: `active` is an accepted consultation with a call running."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return ConsultationStatus.choices

    def queryset(self, request, queryset):
        if self.value() in ConsultationStatus.values:
            return queryset.filter(current_status=self.value())
        return queryset


@admin.register(Consultation)
class ConsultationAdmin(AdminInputMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "user", "vendor", "service", "current_status", "created_at", "last_message_at")
    list_filter = (CurrentStatusFilter, "created_at", "last_message_at")
    search_fields = ("=id", "user__email", "user__name", "vendor__email", "vendor__name", "service__name")
    list_select_related = ("user", "vendor", "service")
    paginator = EstimatedCountPaginator  # consultations are kept: the whole list grows
    show_full_result_count = False
    date_hierarchy = "created_at"
    fields = (
        "user",
        "vendor",
        "service",
        "current_status",
        "created_at",
        "updated_at",
        "accepted_at",
        "closed_at",
        "last_message_at",
    )
    readonly_fields = fields
    inlines = (CallInline, MessageInline)

    def get_queryset(self, request):
        return with_current_status(super().get_queryset(request))

    @admin.display(description="status", ordering="current_status")
    def current_status(self, consultation: Consultation) -> str:
        return ConsultationStatus(consultation.current_status).label

    # A consultation is a record of what a user and a vendor said and paid: operators read it
    # (ReadOnlyAdminMixin); its participants change it through the API.
