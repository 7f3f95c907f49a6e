"""Operators see balances, the ledger and the outbox here, read-only; corrections are adjustments,
and a withdrawal in review is settled with its action."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.postgres.expressions import ArraySubquery
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Sum
from django.db.models.functions import JSONObject
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from rest_framework.exceptions import ValidationError as ApiValidationError

from paygo.admin import (
    AdminInputMixin,
    EstimatedCountPaginator,
    FirstRowsInlineMixin,
    FormTokenField,
    ReadOnlyAdminMixin,
    SeenValuesAdminMixin,
    amount_field,
    id_filter,
    in_units,
    short,
)
from paygo.api.amounts import AmountError, format_minor, to_minor
from paygo.api.errors import Conflict
from paygo.api.permissions import staff_has
from wallets import services
from wallets.models import Account, Asset, Entry, Hold, LedgerTransaction, Reconciliation, Withdrawal, WithdrawalStatus


class ReadOnlyAdmin(AdminInputMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    pass


# An adjustment shows the account's balance and changes it: seeing the account is asked too, as
# retiring a service asks to see it (marketplace.selectors.RETIRE_SERVICE).
ADJUST_ACCOUNT = ("wallets.view_account", "wallets.add_ledgertransaction")


class _Refused(Exception):
    """A service refused a form the admin had validated: what it said, for the operator."""

    def __init__(self, problems: list[str]):
        super().__init__(*problems)
        self.problems = problems


class AmountInUnitsField(forms.CharField):
    """An amount of minor units, typed and shown in whole units of the asset (`decimals`): 0 or more.
    Compared as minor units (has_changed), so "1" is no change of "1.000000"."""

    def __init__(self, *, decimals: int, **kwargs):
        self.decimals = decimals
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return format_minor(value, self.decimals) if isinstance(value, int) else value

    def to_python(self, value):
        text = super().to_python(value)
        if text in self.empty_values:
            return None
        try:
            return to_minor(text, self.decimals, allow_zero=True)
        except AmountError as exc:
            raise forms.ValidationError(str(exc)) from None


class AssetForm(forms.ModelForm):
    # In the token's units, as the API shows it: its decimals and code are the token's (set below;
    # the admin adds no token, so they are known).
    minimum_withdrawal = AmountInUnitsField(decimals=0, label="Minimum withdrawal")

    class Meta:
        model = Asset
        fields = ("name", "is_active", "minimum_withdrawal")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["minimum_withdrawal"]
        field.decimals = self.instance.decimals
        field.help_text = (
            f"The smallest withdrawal or payout of {self.instance.code}, in {self.instance.code} (0: none). "
            "Every withdrawal is sent on chain, its gas paid by the platform."
        )

    def clean_is_active(self):
        if self.instance.is_default and not self.cleaned_data["is_active"]:
            raise forms.ValidationError("The default token stays active: make another token the default first.")
        return self.cleaned_data["is_active"]


@admin.register(Asset)
class AssetAdmin(AdminInputMixin, SeenValuesAdminMixin, admin.ModelAdmin):
    """The default token (the one a request that names none uses) is always there and active: it
    changes only through the action, which moves it from one token to another at once."""

    form = AssetForm
    list_display = ("code", "name", "decimals", "is_default", "is_active", "minimum_withdrawal_in_units")
    readonly_fields = ("code", "decimals", "is_default")
    actions = ["make_default"]

    @admin.display(description="minimum withdrawal", ordering="minimum_withdrawal")
    def minimum_withdrawal_in_units(self, asset: Asset) -> str:
        return in_units(asset.minimum_withdrawal, asset)

    # Tokens come with the chain's contracts (wallets' migrations): one added here had no code nor
    # decimals (read-only fields), and saving it failed in the database.
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def lock_for_change(self, obj) -> None:
        services.assets_locked()  # in the order every change of the tokens takes them
        obj.refresh_from_db()

    def save_model(self, request, obj, form, change):
        # What the operator changed only (SeenValuesAdminMixin): not the box he saw ticked of a
        # token deactivated meanwhile.
        changes = {
            field: form.cleaned_data[field]
            for field in ("name", "is_active", "minimum_withdrawal")
            if field in form.changed_data
        }
        try:
            services.asset_update(asset=obj, **changes)
        except ApiValidationError as exc:
            raise _Refused([text for _, texts in _problems(exc.detail) for text in texts]) from None

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # The form checked the token as the page read it; asset_update checks it again once locked
        # and may refuse (the default moved to it meanwhile). The admin's transaction is rolled back
        # then (nothing saved, nothing logged) and the operator sees why, on the token as it is now.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _Refused as refused:
            self.message_user(request, " ".join(refused.problems), messages.ERROR)
            return redirect(request.get_full_path())

    @admin.action(description="Make the selected token the default", permissions=["change"])
    def make_default(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one token to make the default.", messages.ERROR)
            return
        try:
            asset = services.asset_make_default(asset=queryset.get())
        except ApiValidationError as exc:
            problems = [text for _, texts in _problems(exc.detail) for text in texts]
            self.message_user(request, " ".join(problems), messages.ERROR)
            return
        self.message_user(request, f"{asset.code} is now the default token.", messages.SUCCESS)


class AdjustmentForm(forms.Form):
    amount = forms.CharField(help_text="Signed decimal: positive credits the account, negative debits it.")
    reason = forms.CharField(widget=forms.Textarea, max_length=500)
    form_token = FormTokenField()  # the same form sent twice posts one adjustment (services.adjustment_post)

    def __init__(self, *args, account: Account, **kwargs):
        self.account = account
        super().__init__(*args, **kwargs)

    def clean_amount(self) -> int:
        try:
            return to_minor(self.cleaned_data["amount"], self.account.asset.decimals, signed=True)
        except AmountError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("account", "balance_in_units", "held_in_units", "kind")
    list_filter = ("kind", "asset", "system_code")
    search_fields = ("owner__email", "owner__name")
    list_select_related = ("owner", "asset")
    fields = ("owner", "kind", "system_code", "asset", "balance_in_units", "held_in_units", "available", "created_at")
    readonly_fields = fields

    balance_in_units = amount_field("balance")
    held_in_units = amount_field("held")

    @admin.display(description="available (balance less held)")
    def available(self, account: Account) -> str:
        return in_units(account.available, account.asset)

    @admin.display(description="account", ordering="owner__name")
    def account(self, account: Account) -> str:
        return str(account)

    def get_urls(self):
        return [
            path("<int:pk>/adjust/", self.admin_site.admin_view(self.adjust_view), name="wallets_account_adjust"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Only for an id the adjustment's URL takes: the admin answers any other ("abc") itself.
        adjust = (
            reverse("admin:wallets_account_adjust", args=[object_id])
            if object_id.isascii() and object_id.isdigit() and staff_has(request.user, *ADJUST_ACCOUNT)
            else None
        )
        extra_context = {**(extra_context or {}), "adjust_url": adjust}
        return super().change_view(request, object_id, form_url, extra_context)

    def adjust_view(self, request, pk: int):
        """Post a balanced adjustment with a reason; the staff member is recorded on it."""
        if not staff_has(request.user, *ADJUST_ACCOUNT):
            raise PermissionDenied
        account = get_object_or_404(Account.objects.select_related("asset", "owner"), pk=pk)
        form = AdjustmentForm(request.POST or None, account=account)
        if request.method == "POST" and form.is_valid():
            try:
                tx = services.adjustment_post(
                    account=account,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    staff=request.user,
                    form_token=form.cleaned_data["form_token"],
                )
            except ApiValidationError as exc:
                for field, problems in _problems(exc.detail):
                    form.add_error(field if field in form.fields else None, problems)
            else:
                self.message_user(request, f"Adjustment #{tx.pk} posted.", messages.SUCCESS)
                return redirect("admin:wallets_account_change", pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust {account}",
            "form": form,
            "account": account,
            "balance": in_units(account.balance, account.asset),
            "available": in_units(account.available, account.asset),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/wallets/account/adjust.html", context)


def _problems(detail) -> list[tuple[str | None, list[str]]]:
    """A service's ValidationError detail as (field, messages) for a form: the messages, not a repr."""
    if isinstance(detail, dict):
        return [
            (field, [str(item) for item in (items if isinstance(items, list) else [items])])
            for field, items in detail.items()
        ]
    return [(None, [str(item) for item in (detail if isinstance(detail, list) else [detail])])]


class EntryInline(FirstRowsInlineMixin, ReadOnlyAdminMixin, admin.TabularInline):
    """A transaction's first entries (a sweep's has one per session charged), and a link to all."""

    model = Entry
    fields = ("account", "amount_in_units")
    readonly_fields = fields
    extra = 0
    can_delete = False

    amount_in_units = amount_field("amount", description="amount", ordering=False)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("asset", "account__owner", "account__asset")

    def all_rows_url(self, tx: LedgerTransaction) -> str:
        return f"{reverse('admin:wallets_entry_changelist')}?transaction={tx.pk}"


def transaction_link(tx: LedgerTransaction) -> str:
    """A ledger transaction as an operator follows it: its id, a link to its page, its reference."""
    url = reverse("admin:wallets_ledgertransaction_change", args=[tx.pk])
    return format_html('<a href="{}">#{}</a> {}', url, tx.pk, short(tx.reference or tx.memo))


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    """The ledger's entries, newest first, reached filtered from the pages that show only the first
    of them: a transaction's (a sweep's has one per session charged), a session's charges."""

    list_display = ("id", "ledger_transaction", "account", "amount_in_units", "session", "billed_until")
    list_filter = (
        id_filter("transaction", "transaction"),
        id_filter("session", "session"),
        id_filter("account", "account"),
    )
    list_select_related = ("asset", "account__owner", "account__asset", "transaction", "session")
    ordering = ("-id",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    fields = (
        "id",
        "ledger_transaction",
        "account",
        "amount_in_units",
        "session",
        "billed_from",
        "billed_until",
        "fee_in_units",
    )
    readonly_fields = fields

    amount_in_units = amount_field("amount", description="amount")
    fee_in_units = amount_field("fee", description="platform fee", ordering=False)

    @admin.display(description="transaction", ordering="transaction")
    def ledger_transaction(self, entry: Entry) -> str:
        return transaction_link(entry.transaction)


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ("amount", "created_at", "kind", "short_reference", "memo")  # who and the id: on its page
    list_display_links = ("amount",)
    list_filter = ("kind",)
    search_fields = ("reference", "memo")
    # No date hierarchy: it read the distinct days of every transaction (300k) on each page.
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    inlines = [EntryInline]
    list_select_related = ("created_by",)
    fields = ("id", "kind", "amount", "reference", "memo", "metadata", "created_by", "created_at")
    readonly_fields = fields

    def get_queryset(self, request):
        # What each transaction moved: the sum of its credits per asset (a swap moves two), summed
        # by PostgreSQL from the entries' covering index (wallets_entry_tx_cov). Prefetched, a page
        # of sweep batches (5,000 entries each) was half a million Entry objects.
        credits = (
            Entry.objects.filter(transaction=OuterRef("pk"), amount__gt=0)
            .order_by()
            .values("asset__code", "asset__decimals")
            .annotate(total=Sum("amount"))
            .order_by("asset__code")
            .values(credit=JSONObject(code="asset__code", decimals="asset__decimals", total="total"))
        )
        return super().get_queryset(request).annotate(credits=ArraySubquery(credits))

    @admin.display(description="amount")
    def amount(self, tx: LedgerTransaction) -> str:
        """What the transaction moved: the sum of its credits, per asset."""
        moved = [in_units(c["total"], Asset(code=c["code"], decimals=c["decimals"])) for c in tx.credits]
        return ", ".join(moved) or "-"

    @admin.display(description="reference", ordering="reference")
    def short_reference(self, tx: LedgerTransaction) -> str:
        return short(tx.reference)


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ("amount_in_units", "status", "account", "short_reference", "created_at", "updated_at")
    list_display_links = ("amount_in_units",)
    list_filter = ("status",)
    search_fields = ("reference",)
    list_select_related = ("account__owner", "account__asset")
    paginator = EstimatedCountPaginator  # a hold per session, kept once released: the whole list is big
    show_full_result_count = False
    fields = ("account", "amount_in_units", "status", "reference", "created_at", "updated_at")
    readonly_fields = fields

    amount_in_units = amount_field("amount", asset="account.asset", description="amount")

    @admin.display(description="reference", ordering="reference")
    def short_reference(self, hold: Hold) -> str:
        return short(hold.reference)


SETTLE_PERMISSION = "wallets.settle_withdrawal"


class SettleForm(forms.Form):
    outcome = forms.ChoiceField(choices=services.Settlement.choices, widget=forms.RadioSelect)
    tx_hash = forms.CharField(
        required=False, max_length=80, label="Transaction hash", help_text="Sent: the transfer's hash on chain."
    )
    reason = forms.CharField(widget=forms.Textarea, max_length=500, help_text="What you checked, for the record.")


def withdrawal_confirmation(withdrawal: Withdrawal) -> str:
    """What the chain said of a sent withdrawal (services.sends_confirm), in an operator's words."""
    if withdrawal.status == WithdrawalStatus.NEEDS_REVIEW:
        return "in doubt: check the chain and settle it"
    if withdrawal.status == WithdrawalStatus.REVERTED:
        return f"reverted: refund due {withdrawal.refund_due_at:%Y-%m-%d %H:%M} UTC unless its signed transfer executes"
    if withdrawal.confirmed_at is not None:
        return "confirmed"
    if withdrawal.status == WithdrawalStatus.SENT:
        return "awaiting confirmation"
    if withdrawal.status == WithdrawalStatus.FAILED and withdrawal.sent_at is not None:
        return "reverted (refunded)"
    return "-"


class ConfirmationFilter(admin.SimpleListFilter):
    title = "on chain"
    parameter_name = "confirmation"

    def lookups(self, request, model_admin):
        return [
            ("confirmed", "confirmed"),
            ("awaiting", "awaiting confirmation"),
            ("refund_due", "reverted (refund due)"),
            ("reverted", "reverted (refunded)"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "confirmed":
            return queryset.filter(confirmed_at__isnull=False)
        if self.value() == "awaiting":
            return queryset.filter(status=WithdrawalStatus.SENT, confirmed_at__isnull=True)
        if self.value() == "refund_due":
            return queryset.filter(status=WithdrawalStatus.REVERTED)
        if self.value() == "reverted":
            return queryset.filter(status=WithdrawalStatus.FAILED, sent_at__isnull=False)
        return queryset


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    list_display = (
        "amount_in_units",
        "created_at",
        "status",
        "kind",
        "user",
        "short_address",
        "confirmation",
        "attempts",
        "last_error",
    )
    list_display_links = ("amount_in_units",)
    list_filter = ("status", "kind", "asset", ConfirmationFilter)
    search_fields = ("id", "user__email", "to_address", "tx_hash")
    list_select_related = ("user", "asset")
    fields = (
        "id",
        "kind",
        "user",
        "asset",
        "amount_in_units",
        "to_address",
        "status",
        "tx_hash",
        "attempts",
        "refusals",
        "last_error",
        "created_at",
        "send_attempted_at",
        "next_attempt_at",
        "claimed_until",
        "sent_at",
        "confirmation",
        "confirmed_at",
        "updated_at",
    )
    readonly_fields = fields
    actions = ["settle"]

    amount_in_units = amount_field("amount", description="amount")

    def has_settle_permission(self, request) -> bool:
        return request.user.has_perm(SETTLE_PERMISSION)

    @admin.action(description="Settle the selected withdrawal in review (refunded or sent)", permissions=["settle"])
    def settle(self, request, queryset):
        """One withdrawal in review, settled as staff found it on chain (services.withdrawal_settle),
        on a page of its own: the outcome, the hash when sent, and what was checked."""
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one withdrawal to settle.", messages.ERROR)
            return None
        withdrawal = queryset.select_related("asset", "user").get()
        if withdrawal.status != WithdrawalStatus.NEEDS_REVIEW:
            self.message_user(request, "Only a withdrawal in review is settled here.", messages.ERROR)
            return None
        form = SettleForm(request.POST if "settle" in request.POST else None)
        if form.is_valid():
            try:
                settled = services.withdrawal_settle(
                    withdrawal_id=withdrawal.pk,
                    outcome=form.cleaned_data["outcome"],
                    tx_hash=form.cleaned_data["tx_hash"],
                    reason=form.cleaned_data["reason"],
                    staff=request.user,
                )
            except ApiValidationError as exc:
                for field, problems in _problems(exc.detail):
                    form.add_error(field if field in form.fields else None, problems)
            except Conflict as exc:
                self.message_user(request, str(exc.detail.get("message", exc.detail)), messages.ERROR)
                return None
            else:
                self.message_user(
                    request,
                    f"Withdrawal {settled.pk} settled: {settled.get_status_display().lower()}.",
                    messages.SUCCESS,
                )
                return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Settle a withdrawal in review",
            "form": form,
            "withdrawal": withdrawal,
            "amount": in_units(withdrawal.amount, withdrawal.asset),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/wallets/withdrawal/settle.html", context)

    @admin.display(description="on chain")
    def confirmation(self, withdrawal: Withdrawal) -> str:
        return withdrawal_confirmation(withdrawal)

    @admin.display(description="to", ordering="to_address")
    def short_address(self, withdrawal: Withdrawal) -> str:
        return short(withdrawal.to_address)


@admin.register(Reconciliation)
class ReconciliationAdmin(ReadOnlyAdmin):
    fields = (
        "created_at",
        "asset",
        "on_chain_in_units",
        "ledger_in_units",
        "difference_in_units",
        "in_flight_in_units",
    )
    list_display = readonly_fields = fields
    list_filter = ("asset",)
    list_select_related = ("asset",)

    on_chain_in_units = amount_field("on_chain", description="on chain")
    ledger_in_units = amount_field("ledger", description="ledger")
    difference_in_units = amount_field("difference", description="difference")
    in_flight_in_units = amount_field("in_flight", description="in flight")
