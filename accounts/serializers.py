"""Shapes of the accounts API."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.core.validators import URLValidator
from django.db.models import Q
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import AdminProfile, Image, Profile, Role, User, VendorProfile
from marketplace.models import Category
from paygo.api.amounts import AmountField, format_minor, minor_from_field
from paygo.api.text import NameField
from paygo.tokens import DEFAULT_TOKEN, decimals_of
from wallets.serializers import WalletAddressField


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "name", "email", "role", "wallet_address"]
        read_only_fields = fields


class RegisterSerializer(serializers.Serializer):
    # Shown to other people (the vendor directory, "... sent you ..." notifications): the visible-text
    # rule of every name, or a name could pose as another ("\u202etroppuS oGyaP" reads "PayGo Support").
    name = NameField(max_length=120)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})
    role = serializers.ChoiceField(choices=Role.choices, default=Role.USER)


class LoginSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})


class RefreshSerializer(serializers.Serializer):
    refresh_token = serializers.CharField(required=False)
    # simplejwt's own name, accepted too
    refresh = serializers.CharField(required=False)

    def validate(self, attrs):
        token = attrs.get("refresh_token") or attrs.get("refresh")
        if not token:
            raise serializers.ValidationError({"refresh_token": ["This field is required."]})
        return {"refresh_token": token}


class LogoutSerializer(RefreshSerializer):
    everywhere = serializers.BooleanField(
        default=False, help_text="End every sign-in of the token's user (every device), not only this one."
    )

    def validate(self, attrs):
        return {**super().validate(attrs), "everywhere": attrs["everywhere"]}


class AuthResponseSerializer(serializers.Serializer):
    user = UserSerializer()
    token = serializers.CharField()
    refresh_token = serializers.CharField()


# --- Images and profiles --------------------------------------------------------------------------

PHONE_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
MAX_SOCIAL_LINKS = 10
_http_url = URLValidator(schemes=["http", "https"], message="Enter a valid http(s) URL.")


def _absolute(request, url: str) -> str:
    return request.build_absolute_uri(url) if request is not None else url


class ImageSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = ["id", "url", "content_type", "width", "height", "size", "created_at"]
        read_only_fields = fields

    def get_url(self, image: Image) -> str:
        return _absolute(self.context.get("request"), image.file.url)


class ImageUploadSerializer(serializers.Serializer):
    # A plain file: what it is gets decided from its bytes (accounts.images), not here.
    image = serializers.FileField(allow_empty_file=True, use_url=False)


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "description": "In: an uploaded image's id. Out: {id, url}.",
        "properties": {"id": {"type": "string", "format": "uuid"}, "url": {"type": "string", "format": "uri"}},
    }
)
class AvatarField(serializers.RelatedField):
    """An image id in; {id, url} out. Whose image it is, the service checks."""

    default_error_messages = {"unknown_image": "Unknown image.", "invalid": "Give the id of an uploaded image."}

    def __init__(self, **kwargs: Any):
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", Image.objects.all())
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Image:
        try:
            image_id = uuid.UUID(str(data))
        except ValueError:
            self.fail("invalid")
        image = self.get_queryset().filter(pk=image_id).first()
        if image is None:
            self.fail("unknown_image")
        return image

    def to_representation(self, image: Image) -> dict[str, str]:
        return {"id": str(image.pk), "url": _absolute(self.context.get("request"), image.file.url)}


class HttpUrlField(serializers.CharField):
    def __init__(self, **kwargs: Any):
        kwargs.setdefault("max_length", 300)
        super().__init__(**kwargs)
        self.validators.append(_http_url)


class PhoneField(serializers.CharField):
    """E.164 (+14155550123); spaces, dots, dashes and brackets people type are dropped first."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("max_length", 32)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = re.sub(r"[\s().-]", "", super().to_internal_value(data))
        if value and not PHONE_E164.match(value):
            raise serializers.ValidationError("Enter the number in international E.164 form, e.g. +14155550123.")
        return value


class ProfileUserSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    email = serializers.EmailField(read_only=True)
    role = serializers.CharField(read_only=True)


class _ProfileFields(serializers.ModelSerializer):
    """Fields every kind of profile shares."""

    user = ProfileUserSerializer(read_only=True)
    phone = PhoneField(required=False, allow_blank=True)
    address = serializers.CharField(max_length=300, required=False, allow_blank=True)
    bio = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    social_links = serializers.ListField(
        child=HttpUrlField(), max_length=MAX_SOCIAL_LINKS, required=False, allow_empty=True
    )
    avatar = AvatarField(required=False, allow_null=True)

    common_fields = ["id", "user", "phone", "address", "bio", "social_links", "avatar", "created_at", "updated_at"]


class ProfileSerializer(_ProfileFields):
    class Meta:
        model = Profile
        fields = _ProfileFields.common_fields
        read_only_fields = ["id", "user", "created_at", "updated_at"]


class AdminProfileSerializer(_ProfileFields):
    department = serializers.CharField(max_length=120, required=False, allow_blank=True)

    class Meta:
        model = AdminProfile
        fields = [*_ProfileFields.common_fields, "department"]
        read_only_fields = ["id", "user", "created_at", "updated_at"]


class CategoryNamesField(serializers.ListField):
    """Marketplace categories or subcategories by name (case-insensitive in, canonical out)."""

    child = serializers.CharField(max_length=80)

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("max_length", 20)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[Category]:
        names = [name.strip() for name in super().to_internal_value(data)]
        query = Q(pk__in=[])
        for name in names:
            query |= Q(name__iexact=name)
        found = {category.name.lower(): category for category in Category.objects.filter(query)}
        unknown = [name for name in names if name.lower() not in found]
        if unknown:
            raise serializers.ValidationError(f"Unknown category '{unknown[0]}'.")
        return list({found[name.lower()].pk: found[name.lower()] for name in names}.values())

    def to_representation(self, categories) -> list[str]:
        return [category.name for category in categories.all()]


class VendorProfileSerializer(_ProfileFields):
    business_name = NameField(max_length=120)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    website = HttpUrlField(required=False, allow_blank=True)
    categories = CategoryNamesField(required=False)
    # Kept as every address is compared with Chipi's records: "0x" + 64 lower-case hex digits, a felt.
    payout_address = WalletAddressField(
        required=False,
        allow_blank=True,
        error_messages={"invalid": "Enter a Starknet address: 0x followed by 1 to 64 hex digits."},
    )
    payout_threshold = AmountField(required=False, allow_null=True)

    class Meta:
        model = VendorProfile
        fields = [
            *_ProfileFields.common_fields,
            "business_name",
            "description",
            "website",
            "categories",
            "payout_address",
            "payout_threshold",
        ]
        read_only_fields = ["id", "user", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("payout_address"):
            from wallets.services import refuse_paygo_address

            refuse_paygo_address("payout_address", attrs["payout_address"])  # payouts are withdrawals
        if attrs.get("payout_threshold") is not None:
            attrs["payout_threshold"] = minor_from_field(
                "payout_threshold", attrs["payout_threshold"], decimals_of(DEFAULT_TOKEN)
            )
        return attrs

    def to_representation(self, instance: VendorProfile) -> dict[str, Any]:
        data = super().to_representation(instance)
        threshold = instance.payout_threshold
        data["payout_threshold"] = None if threshold is None else format_minor(threshold, decimals_of(DEFAULT_TOKEN))
        return data


class VendorPublicSerializer(serializers.ModelSerializer):
    """A vendor in the public directory: the business card, nothing private."""

    vendor = serializers.SerializerMethodField()
    categories = CategoryNamesField(read_only=True)
    avatar = AvatarField(read_only=True)

    class Meta:
        model = VendorProfile
        fields = ["id", "vendor", "business_name", "description", "website", "categories", "avatar"]
        read_only_fields = fields

    def get_vendor(self, profile: VendorProfile) -> dict[str, Any]:
        return {"id": profile.user_id, "name": profile.user.name}


PROFILE_SERIALIZERS: dict[str, type[serializers.ModelSerializer]] = {
    "user": ProfileSerializer,
    "vendor": VendorProfileSerializer,
    "admin": AdminProfileSerializer,
}
