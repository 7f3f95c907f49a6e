"""Operators keep the category taxonomy and look after vendors' services (activate, deactivate, retire)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from rest_framework.exceptions import NotFound

from marketplace import selectors, services
from marketplace.models import Category, Service
from paygo.admin import AdminInputMixin, SeenValuesAdminMixin, SeenValuesFormMixin
from paygo.api.amounts import format_minor
from paygo.api.permissions import staff_has
from paygo.tokens import decimals_of


class SubcategoryForm(SeenValuesFormMixin, forms.ModelForm):
    """Saving a category posts its subcategories' names as its page showed them: one renamed since
    on its own page keeps its new name (SeenValuesFormMixin)."""

    class Meta:
        model = Category
        fields = ("name",)


class SubcategoryInline(admin.TabularInline):
    model = Category
    form = SubcategoryForm
    fk_name = "parent"
    fields = ("name",)
    extra = 0
    verbose_name = "subcategory"
    verbose_name_plural = "subcategories"


class TopLevelFilter(admin.SimpleListFilter):
    title = "level"
    parameter_name = "level"

    def lookups(self, request, model_admin):
        return [("category", "Categories"), ("subcategory", "Subcategories")]

    def queryset(self, request, queryset):
        if self.value() == "category":
            return queryset.filter(parent__isnull=True)
        if self.value() == "subcategory":
            return queryset.filter(parent__isnull=False)
        return queryset


@admin.register(Category)
class CategoryAdmin(AdminInputMixin, SeenValuesAdminMixin, admin.ModelAdmin):
    list_display = ("name", "parent", "service_count")
    list_filter = (TopLevelFilter, "parent")
    search_fields = ("name", "parent__name")
    list_select_related = ("parent",)
    ordering = ("parent__name", "name")
    inlines = [SubcategoryInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_service_count=Count("services", distinct=True))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "parent":
            kwargs["queryset"] = Category.objects.filter(parent__isnull=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="services", ordering="_service_count")
    def service_count(self, obj: Category) -> int:
        return obj._service_count


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return [("no", "Live"), ("yes", "Deleted")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


@admin.register(Service)
class ServiceAdmin(AdminInputMixin, admin.ModelAdmin):
    """Read-only records: vendors write services through the API; staff act through the actions,
    which call the same service functions."""

    list_display = (
        "name",
        "vendor",
        "category",
        "subcategory",
        "price",
        "unit",
        "type",
        "is_active",
        "deleted_at",
        "created_at",
    )
    list_filter = ("is_active", DeletedFilter, "token", "unit", "type", "category", "subcategory")
    search_fields = ("name", "description", "vendor__email", "vendor__name")
    list_select_related = ("vendor", "category__parent", "subcategory__parent")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ["activate", "deactivate", "retire"]
    fields = (
        "vendor",
        "name",
        "description",
        "category",
        "subcategory",
        "type",
        "price",
        "token",
        "unit",
        "minimum",
        "free_seconds",
        "price_version",
        "metadata",
        "tags",
        "is_active",
        "deleted_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # nothing on its page can be changed (no Save button): staff act through the actions

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # never hard-deleted: use the "retire" action

    def has_manage_permission(self, request) -> bool:
        """The actions change services: they ask what the admin's change page would."""
        return request.user.has_perm("marketplace.change_service")

    @admin.display(description="rate", ordering="rate")
    def price(self, obj: Service) -> str:
        return f"{format_minor(int(obj.rate), decimals_of(obj.token))} {obj.token}"

    @admin.display(description="minimum charge")
    def minimum(self, obj: Service) -> str:
        return f"{format_minor(int(obj.minimum_charge), decimals_of(obj.token))} {obj.token}"

    def _each_live(self, request, queryset, change, verb: str) -> None:
        """change(service) on each selected service still live, each in its own transaction; one
        retired since the page was read (its vendor's DELETE, another operator) is skipped and
        named, not a 500 that left the services changed before it unreported."""
        done, skipped = 0, []
        for service in queryset.filter(deleted_at__isnull=True):
            try:
                change(service)
            except NotFound:
                skipped.append(f"{service.name} (#{service.pk})")
            else:
                done += 1
        self.message_user(request, f"{done} service(s) {verb}.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped, retired meanwhile: {', '.join(sorted(skipped))}.", messages.WARNING)

    def _set_active(self, request, queryset, *, is_active: bool) -> None:
        self._each_live(
            request,
            queryset.exclude(is_active=is_active),
            lambda service: services.service_set_active(service=service, is_active=is_active),
            "activated" if is_active else "deactivated",
        )

    def has_retire_permission(self, request) -> bool:
        # Retiring is the API's DELETE: the same permissions, though nothing is ever hard-deleted.
        return staff_has(request.user, *selectors.RETIRE_SERVICE)

    @admin.action(description="Activate the selected services", permissions=["manage"])
    def activate(self, request, queryset):
        self._set_active(request, queryset, is_active=True)

    @admin.action(description="Deactivate the selected services", permissions=["manage"])
    def deactivate(self, request, queryset):
        self._set_active(request, queryset, is_active=False)

    @admin.action(description="Retire (soft-delete) the selected services", permissions=["retire"])
    def retire(self, request, queryset):
        self._each_live(
            request, queryset, lambda service: services.service_delete(service=service, by=request.user), "retired"
        )
