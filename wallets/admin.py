"""Operators see balances, the ledger and the outbox here, read-only; corrections are adjustments."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from rest_framework.exceptions import ValidationError as ApiValidationError

from paygo.admin import ReadOnlyAdminMixin
from paygo.api.amounts import AmountError, format_minor, parse_decimal
from paygo.api.permissions import staff_has
from wallets import services
from wallets.models import Account, Asset, Entry, Hold, LedgerTransaction, Reconciliation, Withdrawal


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    pass


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "decimals", "is_default", "is_active")
    readonly_fields = ("code", "decimals")

    def has_delete_permission(self, request, obj=None):
        return False


class AdjustmentForm(forms.Form):
    amount = forms.CharField(help_text="Signed decimal: positive credits the account, negative debits it.")
    reason = forms.CharField(widget=forms.Textarea, max_length=500)

    def __init__(self, *args, account: Account, **kwargs):
        self.account = account
        super().__init__(*args, **kwargs)

    def clean_amount(self) -> int:
        decimals = self.account.asset.decimals
        try:
            number = parse_decimal(self.cleaned_data["amount"])
        except AmountError as exc:
            raise forms.ValidationError(str(exc)) from None
        minor = number.scaleb(decimals)
        if minor != minor.to_integral_value() or minor == 0:
            raise forms.ValidationError(f"A non-zero amount with at most {decimals} decimals.")
        return int(minor)


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("id", "owner", "system_code", "asset", "balance_display", "held_display", "kind")
    list_filter = ("kind", "asset", "system_code")
    search_fields = ("owner__email", "owner__name")
    list_select_related = ("owner", "asset")

    @admin.display(description="balance")
    def balance_display(self, account: Account) -> str:
        return format_minor(account.balance, account.asset.decimals)

    @admin.display(description="held")
    def held_display(self, account: Account) -> str:
        return format_minor(account.held, account.asset.decimals)

    def get_urls(self):
        return [
            path("<int:pk>/adjust/", self.admin_site.admin_view(self.adjust_view), name="wallets_account_adjust"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "adjust_url": reverse("admin:wallets_account_adjust", args=[object_id]),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def adjust_view(self, request, pk: int):
        """Post a balanced adjustment with a reason; the staff member is recorded on it."""
        if not staff_has(request.user, "wallets.add_ledgertransaction"):
            raise PermissionDenied
        account = Account.objects.select_related("asset", "owner").get(pk=pk)
        form = AdjustmentForm(request.POST or None, account=account)
        if request.method == "POST" and form.is_valid():
            try:
                tx = services.adjustment_post(
                    account=account,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    staff=request.user,
                )
            except ApiValidationError as exc:
                form.add_error(None, str(exc.detail))
            else:
                self.message_user(request, f"Adjustment #{tx.pk} posted.", messages.SUCCESS)
                return redirect("admin:wallets_account_change", pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust {account}",
            "form": form,
            "account": account,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/wallets/account/adjust.html", context)


class EntryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Entry
    fields = ("account", "asset", "amount")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "reference", "memo", "created_by", "created_at")
    list_filter = ("kind",)
    search_fields = ("reference", "memo")
    date_hierarchy = "created_at"
    inlines = [EntryInline]
    list_select_related = ("created_by",)


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "amount", "status", "reference", "created_at")
    list_filter = ("status",)
    search_fields = ("reference",)
    list_select_related = ("account__owner", "account__asset")


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "user",
        "amount_display",
        "to_address",
        "status",
        "attempts",
        "last_error",
        "created_at",
    )
    list_filter = ("status", "kind", "asset")
    search_fields = ("id", "user__email", "to_address", "tx_hash")
    list_select_related = ("user", "asset")

    @admin.display(description="amount")
    def amount_display(self, withdrawal: Withdrawal) -> str:
        return f"{format_minor(withdrawal.amount, withdrawal.asset.decimals)} {withdrawal.asset.code}"


@admin.register(Reconciliation)
class ReconciliationAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "asset", "on_chain", "ledger", "difference", "in_flight")
    list_filter = ("asset",)
