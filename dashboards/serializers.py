"""Shapes of the dashboards: the query parameters they take and the sessions they list."""

from __future__ import annotations

from rest_framework import serializers

from dashboards.periods import MONTH, PERIODS, PeriodError, parse_tz
from paygo.api.amounts import format_minor
from streaming.models import SessionStatus, StreamingSession


class TzQuerySerializer(serializers.Serializer):
    """?tz=Area/City (an IANA time zone; UTC by default)"""

    tz = serializers.CharField(required=False, allow_blank=True, max_length=64, default="UTC")

    def validate_tz(self, value: str):
        try:
            return parse_tz(value)
        except PeriodError as exc:
            raise serializers.ValidationError(str(exc)) from None


class WindowQuerySerializer(TzQuerySerializer):
    """?period=day|week|month|year&tz=Area/City&from=YYYY-MM-DD&to=YYYY-MM-DD"""

    def __init__(self, *args, default_period: str = MONTH, **kwargs):
        self.default_period = default_period
        super().__init__(*args, **kwargs)

    def get_fields(self):
        # `from` is a Python keyword: the fields are declared here rather than as attributes.
        return {
            **super().get_fields(),
            "period": serializers.ChoiceField(choices=PERIODS, default=self.default_period),
            "from": serializers.DateField(required=False, input_formats=["iso-8601"]),
            "to": serializers.DateField(required=False, input_formats=["iso-8601"]),
        }


class RefreshQuerySerializer(serializers.Serializer):
    refresh = serializers.BooleanField(required=False, default=False)


class StatusQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=SessionStatus.values, required=False)


class DashboardSessionSerializer(serializers.ModelSerializer):
    """A session as the dashboards list it; `totalSpent` and `vendorEarnings` come from the ledger."""

    id = serializers.UUIDField(source="session_id")
    session_id = serializers.UUIDField()
    service = serializers.SerializerMethodField()
    vendor = serializers.SerializerMethodField()
    customer = serializers.SerializerMethodField()
    token = serializers.CharField(source="asset.code")
    rate = serializers.SerializerMethodField()
    total_spent = serializers.SerializerMethodField()
    vendor_earnings = serializers.SerializerMethodField()
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = StreamingSession
        fields = [
            "id",
            "session_id",
            "service",
            "vendor",
            "customer",
            "kind",
            "status",
            "stop_reason",
            "start_time",
            "end_time",
            "duration_seconds",
            "total_spent",
            "vendor_earnings",
            "token",
            "rate",
            "unit",
            "charge_count",
        ]

    def _money(self, session: StreamingSession, minor: int) -> str:
        return format_minor(int(minor or 0), session.asset.decimals)

    def get_service(self, session: StreamingSession) -> dict:
        service = session.service
        return {"id": service.pk, "name": service.name, "category": service.category.name}

    def get_vendor(self, session: StreamingSession) -> dict:
        return {"id": session.vendor_id, "name": session.vendor.name}

    def get_customer(self, session: StreamingSession) -> dict:
        return {"id": session.user_id, "name": session.user.name}

    def get_rate(self, session: StreamingSession) -> str:
        return self._money(session, session.rate)

    def get_total_spent(self, session: StreamingSession) -> str:
        return self._money(session, session.spent)

    def get_vendor_earnings(self, session: StreamingSession) -> str:
        return self._money(session, session.earned)

    def get_duration_seconds(self, session) -> int:
        return session.usage_seconds
