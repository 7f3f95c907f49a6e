"""Shapes of the notifications API and of the socket push."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from djangorestframework_camel_case.settings import api_settings
from djangorestframework_camel_case.util import camelize
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from notifications.models import (
    MESSAGE_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    DeliveryStatus,
    Notification,
    NotificationType,
)
from notifications.selectors import UNREAD_COUNT_CAP
from paygo.api.text import VisibleTextField, validate_storable_text
from paygo.api.validators import WholeNumberField

DATA_MAX_BYTES = 4096


class DeliverySerializer(serializers.Serializer):
    email = serializers.ChoiceField(choices=DeliveryStatus.choices, source="email_status")
    sms = serializers.ChoiceField(choices=DeliveryStatus.choices, source="sms_status")


class NotificationSerializer(serializers.ModelSerializer):
    # Statuses only: the owner may know an email went out, not the provider's error text.
    delivery = DeliverySerializer(source="*", read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "type", "title", "message", "data", "read", "read_at", "created_at", "delivery"]
        read_only_fields = fields


def notification_payload(notification: Notification) -> dict[str, Any]:
    """The notification as the socket sends it: the API's camelCase JSON, plain dicts only."""
    return json.loads(
        json.dumps(camelize(NotificationSerializer(notification).data, **api_settings.JSON_UNDERSCOREIZE))
    )


class NotificationListResponseSerializer(serializers.Serializer):
    notifications = NotificationSerializer(many=True)
    unread_count = serializers.IntegerField(
        min_value=0,
        max_value=UNREAD_COUNT_CAP,
        help_text=(
            f"Unread notifications of every type (the badge), counted up to {UNREAD_COUNT_CAP}: with more, "
            f"{UNREAD_COUNT_CAP} and unreadCountCapped (show it as {UNREAD_COUNT_CAP}+)."
        ),
    )
    unread_count_capped = serializers.BooleanField(
        help_text=f"There are more than {UNREAD_COUNT_CAP} unread notifications; unreadCount is {UNREAD_COUNT_CAP}."
    )
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    total_pages = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class NotificationListQuerySerializer(serializers.Serializer):
    read = serializers.BooleanField(required=False, default=None)  # absent: all; "null" is no answer
    type = serializers.ChoiceField(choices=NotificationType.choices, required=False, allow_null=True, default=None)


class NotificationUpdateSerializer(serializers.Serializer):
    # The seed's `PATCH /notifications/:id  # Mark as read` takes no body: without `read`, it is read.
    read = serializers.BooleanField(
        required=False, default=True, help_text="false marks it unread; absent (or no body at all) marks it read."
    )


class NotificationReadAllResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    updated = serializers.IntegerField()


def _role_choices() -> list[tuple[str, str]]:
    return list(get_user_model()._meta.get_field("role").choices)


class NotificationSendSerializer(serializers.Serializer):
    """Staff sending: to one user (`userId`) or to every active user of a role (`role`)."""

    user_id = WholeNumberField(required=False, min_value=1)
    role = serializers.ChoiceField(choices=_role_choices(), required=False)
    type = serializers.ChoiceField(choices=NotificationType.choices, default=NotificationType.SYSTEM)
    # Text people read, in which nothing hides (paygo.api.text): the title on one line (it is also an
    # email subject), the message with its line breaks.
    title = VisibleTextField(max_length=TITLE_MAX_LENGTH)
    message = VisibleTextField(multiline=True, max_length=MESSAGE_MAX_LENGTH)
    # Kept in a jsonb column, which cannot store NUL, in a key or a value.
    data = serializers.DictField(required=False, default=dict, validators=[validate_storable_text])

    def validate_data(self, value: dict) -> dict:
        if len(json.dumps(value)) > DATA_MAX_BYTES:
            raise serializers.ValidationError(f"Must be at most {DATA_MAX_BYTES} bytes of JSON.")
        return value

    def validate(self, attrs: dict) -> dict:
        if ("user_id" in attrs) == ("role" in attrs):
            raise serializers.ValidationError("Give either userId (one user) or role (every active user of it).")
        return attrs


class NotificationSendResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    created = serializers.IntegerField()


class ChannelsSerializer(serializers.Serializer):
    in_app = serializers.BooleanField(required=False)
    email = serializers.BooleanField(required=False)
    sms = serializers.BooleanField(required=False)

    def validate_in_app(self, value: bool) -> bool:
        if not value:
            raise serializers.ValidationError("In-app notifications cannot be turned off.")
        return value

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown channel."] for key in unknown})
        return super().to_internal_value(data)


_CHANNELS_SCHEMA = {
    "type": "object",
    "properties": {"inApp": {"type": "boolean"}, "email": {"type": "boolean"}, "sms": {"type": "boolean"}},
}


@extend_schema_field({"type": "object", "properties": {type: _CHANNELS_SCHEMA for type in NotificationType.values}})
class PreferencesField(serializers.DictField):
    child = ChannelsSerializer()

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(NotificationType.values))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown notification type."] for key in unknown})
        return super().to_internal_value(data)


class PreferencesUpdateSerializer(serializers.Serializer):
    """Partial: only the types and channels given change."""

    preferences = PreferencesField()


class PreferencesResponseSerializer(serializers.Serializer):
    preferences = PreferencesField()
    verified_phone = serializers.BooleanField(help_text="SMS is only sent to a verified phone number.")
