"""Categories (a two-level taxonomy staff keep) and vendors' priced services."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower

from paygo.fields import MinorUnitsField
from paygo.tokens import DEFAULT_TOKEN, TOKEN_CHOICES


class CategoryManager(models.Manager):
    def get_queryset(self):
        # A subcategory is named with its parent's name (__str__): every list of them (the admin's
        # filters and columns, its choices) reads the parents in the same query, not one each.
        return super().get_queryset().select_related("parent")


class Category(models.Model):
    """A top-level category (parent empty) or one of its subcategories; the API uses names."""

    name = models.CharField(max_length=80)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="Empty for a category; the category for a subcategory.",
    )

    objects = CategoryManager()

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"
        constraints = [
            models.UniqueConstraint(Lower("name"), name="marketplace_category_name_ci_unique"),
            models.CheckConstraint(
                condition=~models.Q(parent=models.F("id")), name="marketplace_category_not_own_parent"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.parent.name} > {self.name}" if self.parent_id and self.parent else self.name

    def clean(self) -> None:
        # Two levels only: a subcategory's parent is a top-level category.
        if self.parent_id:
            if self.parent_id == self.pk:
                raise ValidationError({"parent": "A category cannot be its own parent."})
            if self.parent.parent_id is not None:
                raise ValidationError({"parent": "Choose a top-level category: subcategories have no subcategories."})
            if self.pk and self.children.exists():
                raise ValidationError({"parent": "This category has subcategories, so it must stay top-level."})


class ServiceType(models.TextChoices):
    VIDEO = "video", "Video"
    AUDIO = "audio", "Audio"
    DATA = "data", "Data"
    OTHER = "other", "Other"


class ServiceUnit(models.TextChoices):
    """What one `rate` pays for. Time units know their length (the metering reads `unit_ms`)."""

    PER_SECOND = "per_second", "Per second"
    PER_MINUTE = "per_minute", "Per minute"
    PER_HOUR = "per_hour", "Per hour"
    PER_SESSION = "per_session", "Per session"
    PER_GB = "per_gb", "Per GB"
    PER_REQUEST = "per_request", "Per request"
    PER_TRANSACTION = "per_transaction", "Per transaction"

    @property
    def unit_ms(self) -> int | None:
        """Milliseconds in one unit for time-metered units; None for the others."""
        return _UNIT_MS.get(self.value)

    @property
    def is_time_based(self) -> bool:
        return self.value in _UNIT_MS

    @property
    def unit_quantity(self) -> int | None:
        """Reported quantity in one unit of a usage-metered unit (bytes in a GB, one request); None
        for the others."""
        return USAGE_UNIT_QUANTITY.get(self.value)

    @classmethod
    def time_units(cls) -> list[ServiceUnit]:
        return [cls(value) for value in _UNIT_MS]


_UNIT_MS = {"per_second": 1_000, "per_minute": 60_000, "per_hour": 3_600_000}
# Quantity in one unit of a usage-metered service: bytes in a GB, one request, one transaction.
USAGE_UNIT_QUANTITY = {"per_gb": 1_000_000_000, "per_request": 1, "per_transaction": 1}

# A service's price terms: what a session copies at its start and is billed by. A change of any of
# them is a new price (price_version); the rest of a service (its words, tags, state) is not.
PRICE_TERMS = (
    "rate",
    "token",
    "unit",
    "minimum_charge",
    "free_seconds",
    "max_session_cost",
    "max_event_quantity",
)


class Service(models.Model):
    """A vendor's priced offering. `rate` and `minimum_charge` are integers of `token`'s minor unit.

    Services are never hard-deleted through the product: deleting one sets `deleted_at`, so that
    sessions (which reference services with on_delete=PROTECT) keep their history.
    """

    vendor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="services")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, default="")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="services")
    subcategory = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.PROTECT, related_name="subcategory_services"
    )
    type = models.CharField(max_length=10, choices=ServiceType.choices, default=ServiceType.OTHER)
    # NUMERIC(38,0): 18-decimal tokens overflow a bigint.
    rate = models.DecimalField(max_digits=38, decimal_places=0, help_text="Minor units of the token per unit.")
    token = models.CharField(max_length=10, choices=TOKEN_CHOICES, default=DEFAULT_TOKEN)
    unit = models.CharField(max_length=20, choices=ServiceUnit.choices)
    minimum_charge = models.DecimalField(
        max_digits=38,
        decimal_places=0,
        default=0,
        help_text="Minor units of the token a user owes at least for a session they end early (not one the "
        "vendor or staff stop).",
    )
    free_seconds = models.IntegerField(
        default=0, help_text="Time-metered units: free first seconds of each session (0 for the other units)."
    )
    # What bounds a usage-metered session (set for usage units, and only for them): the vendor
    # reports the usage, so the user sees these before starting and a report beyond them is refused.
    max_session_cost = MinorUnitsField(
        null=True, blank=True, help_text="Usage units: most a session may cost when its user sets no maxCost."
    )
    max_event_quantity = MinorUnitsField(
        null=True, blank=True, help_text="Usage units: the largest quantity one usage report may carry."
    )
    # Which price a user was shown: a start that names it is refused when the price changed since
    # (marketplace.services.service_locked_for_sale), so nobody is billed on terms they never saw.
    price_version = models.PositiveIntegerField(
        default=1, help_text="Moves by one with every change of the price terms (rate, token, unit, ...)."
    )
    metadata = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField(default=True)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="Set when the vendor deleted it; hidden since.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(rate__gt=0), name="marketplace_service_rate_positive"),
            models.CheckConstraint(
                condition=models.Q(minimum_charge__gte=0), name="marketplace_service_minimum_charge_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(free_seconds__gte=0), name="marketplace_service_free_seconds_not_negative"
            ),
            # Billing frees time only (marketplace.services._check_rules says so first).
            models.CheckConstraint(
                condition=models.Q(free_seconds=0) | models.Q(unit__in=list(_UNIT_MS)),
                name="marketplace_service_free_seconds_time_units",
            ),
            models.CheckConstraint(
                condition=models.Q(price_version__gte=1), name="marketplace_service_price_version_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(token__in=[t for t, _ in TOKEN_CHOICES]), name="marketplace_service_token_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(unit__in=ServiceUnit.values), name="marketplace_service_unit_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(type__in=ServiceType.values), name="marketplace_service_type_valid"
            ),
            # Usage bounds: declared by every usage-metered service, by no other.
            models.CheckConstraint(
                condition=(
                    models.Q(unit__in=list(USAGE_UNIT_QUANTITY), max_session_cost__gt=0, max_event_quantity__gt=0)
                    | (
                        ~models.Q(unit__in=list(USAGE_UNIT_QUANTITY))
                        & models.Q(max_session_cost__isnull=True, max_event_quantity__isnull=True)
                    )
                ),
                name="marketplace_service_usage_bounds",
            ),
            # A deleted service is never active.
            models.CheckConstraint(
                condition=models.Q(deleted_at__isnull=True) | models.Q(is_active=False),
                name="marketplace_service_deleted_inactive",
            ),
            # A vendor's live service names are unique whatever their case; deleting frees the name.
            models.UniqueConstraint(
                "vendor",
                Lower("name"),
                condition=models.Q(deleted_at__isnull=True),
                name="marketplace_service_vendor_name_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["is_active", "-created_at"], name="marketplace_service_listing"),
            models.Index(fields=["token", "rate"], name="marketplace_service_rate"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None
