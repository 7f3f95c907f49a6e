"""Shapes of the sessions API (camelCase on the wire)."""

from __future__ import annotations

import math

from rest_framework import serializers

from paygo.api.amounts import AmountField, format_minor
from paygo.api.schema import ErrorCode
from paygo.api.text import validate_storable_text
from paygo.api.validators import WholeNumberField
from streaming.models import StreamingSession
from streaming.selectors import sees_payer_funds

METRIC_FIELDS = ("bitrate", "latency", "frame_drops")
PAYER_FIELDS = ("stop_at", "held")  # a session's fields that only its payer and staff may see


# The refusals of sessions' services, as the schema tells them (paygo.api.schema.error_codes).
SHORT_OF_FUNDS_TO_START = ErrorCode(
    402,
    "insufficient_funds",
    "the wallet cannot pay the start (the first billing period, or the session fee): `needed` is what it "
    "takes, `available` what the wallet has free, in `token`; nothing was started, held or charged.",
    fields={"needed": AmountField(), "available": AmountField(), "token": serializers.CharField()},
)
USAGE_UNPAID = ErrorCode(
    402,
    "insufficient_funds",
    "the payer cannot pay the usage reported (beyond the session's hold and the wallet's free balance); the "
    "report is not counted.",
)
SESSION_ENDED = ErrorCode(
    409, "session_ended", "the session has ended (stopped, or silent past its idle timeout); nothing was recorded."
)
USAGE_OVER_CAP = ErrorCode(
    409, "usage_over_cap", "the report would take the session's cost past its spending cap; it is not counted."
)


class SessionOptionsSerializer(serializers.Serializer):
    """What a client may say about a session it starts: its device, a cost ceiling, and the price
    it was shown."""

    # Kept in a jsonb column, which cannot store NUL (also in a plain name).
    device = serializers.JSONField(required=False, validators=[validate_storable_text])
    max_cost = AmountField(required=False)
    price_version = WholeNumberField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=2**31 - 1,
        help_text="The service's priceVersion the user was shown. Send it: when the price changed since, the "
        "start is refused with a 409 (code price_changed, with the current terms) and nothing is held or "
        "charged. Left out (or null), the session starts on the price of the moment.",
    )

    def validate_device(self, value):
        if value is None:
            return {}
        if isinstance(value, str):
            value = {"name": value[:200]}
        if not isinstance(value, dict):
            raise serializers.ValidationError("Give the device as an object or a name.")
        if len(str(value)) > 2000:
            raise serializers.ValidationError("The device description is too long.")
        return value


class StartSerializer(SessionOptionsSerializer):
    service_id = WholeNumberField(min_value=1, max_value=2**63 - 1)


class MetricsSerializer(serializers.Serializer):
    bitrate = serializers.FloatField(required=False, min_value=0, max_value=1e12)
    latency = serializers.FloatField(required=False, min_value=0, max_value=1e9)
    frame_drops = serializers.FloatField(required=False, min_value=0, max_value=1e12)

    def validate(self, attrs):
        for name, value in attrs.items():
            if not math.isfinite(value):
                raise serializers.ValidationError({name: ["Must be a finite number."]})
        if not attrs:
            raise serializers.ValidationError("Send at least one of bitrate, latency, frameDrops.")
        return attrs


class UsageSerializer(serializers.Serializer):
    event_id = serializers.RegexField(
        r"^[A-Za-z0-9._:-]{1,100}$",
        error_messages={"invalid": "An event id is 1 to 100 letters, digits, '.', '_', ':' or '-'."},
    )
    quantity = WholeNumberField(min_value=1, max_value=10**18)


class SessionSerializer(serializers.ModelSerializer):
    """A session as its user, its vendor and staff see it; the vendor does not see the payer's money.

    `stopAt` is when the payer's wallet (or maxCost) runs out, and `held` is all the wallet has
    left when it cannot cover a period: both give the balance away, so they are shown only to the
    session's user and staff, named by the request in the context. Without one they are left out,
    so that a caller that forgets the context leaks nothing.
    """

    sometimes_omitted = PAYER_FIELDS  # so the schema does not require them (paygo.api.schema)

    id = serializers.UUIDField(source="session_id")
    session_id = serializers.UUIDField()
    service = serializers.SerializerMethodField()
    token = serializers.CharField(source="asset.code")
    rate = serializers.SerializerMethodField()
    total_cost = serializers.SerializerMethodField()
    max_cost = serializers.SerializerMethodField()
    held = serializers.SerializerMethodField()
    total_usage_seconds = serializers.SerializerMethodField(
        help_text="How long it ran, in seconds: to its end; while it runs, to now, or to the instant it ended by "
        "itself when that came first (silent past its idle timeout, its funds or maxCost run out), which billing "
        "has not recorded yet: it is billed no further."
    )
    device = serializers.JSONField(source="client_info")

    class Meta:
        model = StreamingSession
        fields = [
            "id",
            "session_id",
            "user_id",
            "vendor_id",
            "service_id",
            "service",
            "kind",
            "status",
            "stop_reason",
            "start_time",
            "end_time",
            "charged_until",
            "total_usage_seconds",
            "total_cost",
            "rate",
            "unit",
            "token",
            "free_seconds",
            "max_cost",
            "held",
            "stop_at",
            "device",
            "quality_metrics",
            "last_heartbeat_at",
        ]
        extra_kwargs = {
            "status": {
                "help_text": "As billing last recorded it: a session that ended by itself (silent past its idle "
                "timeout, its funds or maxCost run out) is `active` until the next sweep or a stop records its end, "
                "at that instant; its totalUsageSeconds stop there."
            },
            "free_seconds": {
                "help_text": "Time not charged at its start, in seconds: the service's, or for a consultation's "
                "call what its earlier calls left of them."
            },
        }

    def _money(self, session: StreamingSession, amount) -> str | None:
        return None if amount is None else format_minor(amount, session.asset.decimals)

    def get_service(self, session: StreamingSession) -> dict:
        return {"id": session.service_id, "name": session.service.name}

    def get_rate(self, session: StreamingSession) -> str:
        return self._money(session, session.rate)

    def get_total_cost(self, session: StreamingSession) -> str:
        return self._money(session, session.total_cost)

    def get_max_cost(self, session: StreamingSession) -> str | None:
        return self._money(session, session.max_cost)

    def get_held(self, session: StreamingSession) -> str:
        return self._money(session, session.hold.amount)

    def get_total_usage_seconds(self, session) -> int:
        return session.usage_seconds

    def to_representation(self, session: StreamingSession) -> dict:
        data = super().to_representation(session)
        if not sees_payer_funds(getattr(self.context.get("request"), "user", None), session):
            for name in PAYER_FIELDS:
                data.pop(name, None)
        return data


# --- What the sessions API answers (for the schema; the views build these bodies) ---------------


class SessionBodySerializer(serializers.Serializer):
    session = SessionSerializer()


class StartResponseSerializer(SessionBodySerializer):
    message = serializers.CharField()
    user_role = serializers.CharField()


class StopResponseSerializer(SessionBodySerializer):
    message = serializers.CharField()
    total_usage_minutes = serializers.FloatField(help_text="How long it ran, in minutes (2 decimals).")
    total_usage_seconds = serializers.IntegerField(help_text="How long it ran, in seconds.")
    total_cost = AmountField()
    rate_per_minute = AmountField(
        allow_null=True,
        help_text="Its rate per minute, in the session's token, rounded half up at its decimals; time-metered "
        "sessions only.",
    )


class MetricsSampleSerializer(serializers.Serializer):
    bitrate = serializers.FloatField(required=False)
    latency = serializers.FloatField(required=False)
    frame_drops = serializers.FloatField(required=False)
    at = serializers.DateTimeField()


class MetricsResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    quality_metrics = MetricsSampleSerializer(help_text="The sample as recorded.")


class UsageEventSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    quantity = serializers.CharField(help_text="The quantity reported, as a decimal string.")
    created_at = serializers.DateTimeField()


class UsageResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    counted = serializers.BooleanField(help_text="False when this event id was already recorded.")
    event = UsageEventSerializer()
