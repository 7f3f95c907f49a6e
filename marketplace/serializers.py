"""Shapes of the marketplace API: services in and out, the listing's filters, categories."""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marketplace.models import PRICE_TERMS, Category, Service, ServiceType, ServiceUnit
from marketplace.services import DEFAULT_USAGE_BOUND_UNITS
from paygo.api.amounts import AmountField, format_minor, minor_from_field
from paygo.api.schema import ErrorCode
from paygo.api.text import NameField, validate_storable_text
from paygo.api.validators import WholeNumberField
from paygo.tokens import DEFAULT_TOKEN, TOKENS, decimals_of

MAX_METADATA_BYTES = 8 * 1024
MAX_TAGS = 20
MAX_TAG_LENGTH = 32
MAX_DESCRIPTION_LENGTH = 2000
MAX_FREE_SECONDS = 86_400

# How a start (a session's, a consultation call's) that names a price no longer current is answered
# (marketplace.services.service_locked_for_sale), as the schema tells it.
PRICE_CHANGED = ErrorCode(
    409,
    "price_changed",
    "the service's price changed since the `priceVersion` sent; nothing was started, held or charged. The "
    "body carries the current terms (`serviceId`, `priceVersion`, `rate`, `unit`, `token`, `minimumCharge`, "
    "`freeSeconds`, `maxSessionCost`, `maxEventQuantity`): show them and start again with their `priceVersion`.",
    fields={
        "service_id": serializers.IntegerField(),
        "price_version": serializers.IntegerField(),
        "rate": AmountField(),
        "unit": serializers.CharField(),
        "token": serializers.CharField(),
        "minimum_charge": AmountField(),
        "free_seconds": serializers.IntegerField(help_text="Time not charged at the start of a session, in seconds."),
        "max_session_cost": AmountField(allow_null=True),
        "max_event_quantity": serializers.IntegerField(allow_null=True),
    },
)
SERVICE_NAME_TAKEN = ErrorCode(
    409, "service_name_taken", "the vendor has another service of that name (`errors.name`); nothing was changed."
)


@extend_schema_field(OpenApiTypes.STR)
class CategoryNameField(serializers.RelatedField):
    """A category or subcategory given and shown by name (case-insensitive on the way in)."""

    default_error_messages = {
        "unknown_category": "Unknown {kind} '{name}'.",
        "invalid": "Give the {kind}'s name as a string.",
    }

    def __init__(self, *, subcategory: bool, **kwargs: Any):
        self.kind = "subcategory" if subcategory else "category"
        kwargs.setdefault("queryset", Category.objects.filter(parent__isnull=not subcategory))
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Category:
        if not isinstance(data, str) or not data.strip() or len(data) > 80:
            self.fail("invalid", kind=self.kind)
        validate_storable_text(data)  # such text would make the lookup below a database error
        category = self.get_queryset().filter(name__iexact=data.strip()).select_related("parent").first()
        if category is None:
            self.fail("unknown_category", kind=self.kind, name=data.strip())
        return category

    def to_representation(self, value: Category) -> str:
        return value.name


class TagsField(serializers.ListField):
    child = serializers.CharField(max_length=MAX_TAG_LENGTH, min_length=1, trim_whitespace=True)

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("max_length", MAX_TAGS)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[str]:
        if isinstance(data, list) and not all(isinstance(tag, str) for tag in data):
            raise serializers.ValidationError("Tags must be strings.")
        tags = super().to_internal_value(data)
        unique: dict[str, str] = {}
        for tag in tags:
            unique.setdefault(tag.lower(), tag)
        return list(unique.values())


class MetadataField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        validate_storable_text(value)  # jsonb cannot store NUL, in a key or a value
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_METADATA_BYTES:
            raise serializers.ValidationError(f"Must be at most {MAX_METADATA_BYTES} bytes of JSON; it is {size}.")
        return value


class VendorSerializer(serializers.Serializer):
    """The public face of a vendor: never the email."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)


class ServiceSerializer(serializers.ModelSerializer):
    """A service in and out. Amounts are decimal strings at the token's precision."""

    vendor = VendorSerializer(read_only=True)
    name = NameField(max_length=120)
    description = serializers.CharField(
        max_length=MAX_DESCRIPTION_LENGTH, allow_blank=True, required=False, default="", trim_whitespace=True
    )
    category = CategoryNameField(subcategory=False)
    subcategory = CategoryNameField(subcategory=True, required=False, allow_null=True, default=None)
    type = serializers.ChoiceField(choices=ServiceType.choices, required=False, default=ServiceType.OTHER)
    rate = AmountField()
    token = serializers.ChoiceField(choices=list(TOKENS), required=False, default=DEFAULT_TOKEN)
    unit = serializers.ChoiceField(choices=ServiceUnit.choices)
    minimum_charge = AmountField(
        allow_zero=True,
        required=False,
        default="0",
        help_text="What a user owes at least for a session they end early: they stop it, go silent, or their "
        "money or maxCost runs out (within what they have and maxCost). A session the vendor or staff stop "
        "costs the time used only.",
    )
    free_seconds = WholeNumberField(
        min_value=0,
        max_value=MAX_FREE_SECONDS,
        required=False,
        default=0,
        help_text="Time not charged at the start of each session, in seconds: time-metered units only (per "
        "second, minute, hour); another unit takes only 0 (a per-session fee is charged at the start, usage as "
        "reported). A change of unit to one not metered by time sets it to 0 unless given.",
    )
    max_session_cost = AmountField(
        required=False,
        allow_null=True,
        help_text="Usage units only: the most a session may cost when its user sets no maxCost "
        f"(default: {DEFAULT_USAGE_BOUND_UNITS} times the rate). Usage beyond it is refused.",
    )
    max_event_quantity = WholeNumberField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=10**18,
        help_text="Usage units only: the largest quantity one usage report may carry (bytes for per_gb; "
        f"default: {DEFAULT_USAGE_BOUND_UNITS} units). A larger report is refused.",
    )
    metadata = MetadataField(required=False, default=dict)
    tags = TagsField(required=False, default=list)
    # No default: a PUT that leaves it out keeps the service as active or inactive as it was.
    is_active = serializers.BooleanField(required=False)
    price_version = serializers.IntegerField(
        read_only=True,
        help_text="Names the price terms shown (rate, token, unit, minimumCharge, freeSeconds, maxSessionCost, "
        "maxEventQuantity); moves with every change of them. Send it with a session's start (priceVersion) so "
        "that a price changed since is refused rather than charged.",
    )

    class Meta:
        model = Service
        fields = [
            "id",
            "vendor",
            "name",
            "description",
            "category",
            "subcategory",
            "type",
            *PRICE_TERMS,
            "metadata",
            "tags",
            "is_active",
            "price_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "vendor", "price_version", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Amounts become minor units of the token they are priced in (the payload's, or the
        # service's current one on a partial update).
        token = attrs.get("token") or (self.instance.token if self.instance else DEFAULT_TOKEN)
        decimals = decimals_of(token)
        if "rate" in attrs:
            attrs["rate"] = minor_from_field("rate", attrs["rate"], decimals)
        if "minimum_charge" in attrs:
            attrs["minimum_charge"] = minor_from_field(
                "minimum_charge", attrs["minimum_charge"], decimals, allow_zero=True
            )
        if attrs.get("max_session_cost") is not None:
            attrs["max_session_cost"] = minor_from_field("max_session_cost", attrs["max_session_cost"], decimals)
        return attrs

    def to_representation(self, instance: Service) -> dict[str, Any]:
        data = super().to_representation(instance)
        decimals = decimals_of(instance.token)
        data["rate"] = format_minor(int(instance.rate), decimals)
        data["minimum_charge"] = format_minor(int(instance.minimum_charge), decimals)
        cap = instance.max_session_cost
        data["max_session_cost"] = None if cap is None else format_minor(int(cap), decimals)
        data["max_event_quantity"] = None if instance.max_event_quantity is None else int(instance.max_event_quantity)
        return data


class ServiceFilterSerializer(serializers.Serializer):
    """Query parameters shared by the marketplace and a vendor's own listing (snake_case here)."""

    category = CategoryNameField(subcategory=False, required=False)
    subcategory = CategoryNameField(subcategory=True, required=False)
    type = serializers.ChoiceField(choices=ServiceType.choices, required=False)
    unit = serializers.ChoiceField(choices=ServiceUnit.choices, required=False)
    token = serializers.ChoiceField(choices=list(TOKENS), required=False)
    min_rate = AmountField(allow_zero=True, required=False)
    max_rate = AmountField(allow_zero=True, required=False)
    search = serializers.CharField(max_length=100, required=False, allow_blank=True)
    ordering = serializers.ChoiceField(
        choices=["createdAt", "-createdAt", "name", "-name", "rate", "-rate"], required=False
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # The seed's frontend may send snake_case ordering values too.
        if isinstance(data, dict) and data.get("ordering") in ("created_at", "-created_at"):
            data = {**data, "ordering": data["ordering"].replace("created_at", "createdAt")}
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        low, high = attrs.get("min_rate"), attrs.get("max_rate")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"max_rate": ["Must not be less than minRate."]})
        return attrs


class PublicServiceFilterSerializer(ServiceFilterSerializer):
    vendor_id = WholeNumberField(min_value=1, max_value=2**63 - 1, required=False)
    include_inactive = serializers.BooleanField(required=False, default=False)


class MyServiceFilterSerializer(ServiceFilterSerializer):
    is_active = serializers.BooleanField(required=False, default=None)


class ServiceResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    service = ServiceSerializer()


class ToggleStatusResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    is_active = serializers.BooleanField()


class CategorySerializer(serializers.Serializer):
    name = serializers.CharField()
    subcategories = serializers.SerializerMethodField()

    def get_subcategories(self, category: Category) -> list[str]:
        return [child.name for child in category.subcategories]
