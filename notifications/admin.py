"""Operators see every notification with its delivery state, re-send failed deliveries, and send
notifications (to one user or to every user of a role) through the same service as the staff API."""

from __future__ import annotations

import re

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from notifications import services
from notifications.models import MESSAGE_MAX_LENGTH, TITLE_MAX_LENGTH, Notification, NotificationType
from paygo.admin import AdminInputMixin, EstimatedCountPaginator, FormTokenField, ReadOnlyAdminMixin
from paygo.api.text import VisibleTextFormField

RETRY_PERMISSION = "notifications.change_notification"

# A Twilio message's SID: SM (an SMS) or MM (an MMS) and 32 hex digits.
TWILIO_MESSAGE_SID = re.compile(r"(?:SM|MM)[0-9a-f]{32}", re.IGNORECASE)


class NotificationSendForm(forms.Form):
    role = forms.ChoiceField(required=False, help_text="Every active user of this role…")
    user_email = forms.EmailField(required=False, label="…or one user", help_text="The user's email address.")
    type = forms.ChoiceField(choices=NotificationType.choices, initial=NotificationType.SYSTEM)
    # The rule of the API's send (NotificationSendSerializer): visible text.
    title = VisibleTextFormField(max_length=TITLE_MAX_LENGTH)
    message = VisibleTextFormField(
        multiline=True, max_length=MESSAGE_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 6})
    )
    form_token = FormTokenField()  # the same form sent twice sends once (services.notification_send)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        roles = get_user_model()._meta.get_field("role").choices
        self.fields["role"].choices = [("", "---------"), *roles]

    def clean(self):
        cleaned = super().clean()
        role, email = cleaned.get("role"), cleaned.get("user_email")
        if bool(role) == bool(email):
            raise forms.ValidationError("Choose either a role or one user.")
        if email:
            User = get_user_model()
            user = User.objects.filter(email=User.objects.normalize_email(email), is_active=True).first()
            if user is None:
                self.add_error("user_email", "No active user with this email.")
            else:
                cleaned["user_id"] = user.pk
        return cleaned


@admin.register(Notification)
class NotificationAdmin(AdminInputMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    change_list_template = "admin/notifications/notification/change_list.html"
    list_display = ("id", "user", "type", "title", "read", "email_status", "sms_status", "created_at", "deleted")
    list_filter = (
        "type",
        "email_status",
        "sms_status",
        "read",
        ("deleted_at", admin.EmptyFieldListFilter),
        ("sent_by", admin.EmptyFieldListFilter),
        "created_at",
    )
    # Who it was sent to, not what it said: a search of 1.2M bodies (icontains) took 11 s a page.
    # A Twilio message SID (what Twilio's console and a user's complaint name) finds its one
    # notification through its own index instead.
    search_fields = ("user__email", "user__name")
    search_help_text = "An email address or a name; or a Twilio message SID (SM…) for its notification."
    list_select_related = ("user",)
    # Its date filter, not a date hierarchy: the hierarchy read MIN/MAX and the distinct days of
    # every notification on each page. The whole list's count is the table's estimate.
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = ["retry_failed_deliveries"]
    fieldsets = (
        (None, {"fields": ("user", "type", "title", "message", "data", "created_at", "sent_by")}),
        ("In-app", {"fields": ("read", "read_at", "deleted_at")}),
        ("Email", {"fields": ("email_status", "email_attempts", "email_error", "email_sent_at")}),
        ("SMS", {"fields": ("sms_status", "sms_attempts", "sms_error", "sms_sending_at", "sms_sent_at", "sms_sid")}),
    )
    readonly_fields = tuple(field for _, options in fieldsets for field in options["fields"])

    def get_search_results(self, request, queryset, search_term):
        sid = search_term.strip()
        if TWILIO_MESSAGE_SID.fullmatch(sid):
            # Twilio writes SIDs as SM + lower-case hex.
            return queryset.filter(sms_sid=sid[:2].upper() + sid[2:].lower()), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(boolean=True, ordering="deleted_at", description="Deleted by user")
    def deleted(self, obj: Notification) -> bool:
        return obj.deleted_at is not None

    # A notification is a record of what the platform told a user: operators read it
    # (ReadOnlyAdminMixin), re-send failed deliveries and send new ones, never edit or delete one.

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm(RETRY_PERMISSION)

    @admin.action(description="Re-send the failed email and SMS deliveries", permissions=["retry"])
    def retry_failed_deliveries(self, request, queryset):
        queued = services.delivery_retry_failed(notifications=queryset)
        self.message_user(request, f"{queued} failed delivery(ies) queued again.", messages.SUCCESS)

    def get_urls(self):
        send = path("send/", self.admin_site.admin_view(self.send_view), name="notifications_notification_send")
        return [send, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_send": request.user.has_perm(services.SEND_PERMISSION)}
        return super().changelist_view(request, extra_context=extra_context)

    def send_view(self, request):
        if not request.user.has_perm(services.SEND_PERMISSION):
            raise PermissionDenied
        form = NotificationSendForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                created = services.notification_send(
                    sent_by=request.user,
                    user_id=data.get("user_id"),
                    role=data.get("role") or None,
                    type=data["type"],
                    title=data["title"],
                    message=data["message"],
                    form_token=data["form_token"],
                )
            except services.AlreadySent as sent:
                self.message_user(request, str(sent.detail), messages.WARNING)
            else:
                self.message_user(request, f"Notification sent to {created} user(s).", messages.SUCCESS)
            return redirect(reverse("admin:notifications_notification_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Send a notification",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/notifications/notification/send.html", context)
