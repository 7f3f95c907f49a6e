"""Shapes of the dashboards: the query parameters they take, the sessions they list, and (for the
schema) the bodies they answer."""

from __future__ import annotations

from rest_framework import serializers

from dashboards.periods import MONTH, PERIODS, PeriodError, parse_tz
from paygo.api.amounts import AmountField, format_minor
from paygo.api.validators import WholeNumberField
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


class SubjectQuerySerializer(serializers.Serializer):
    """?userId= or ?vendorId= (`param`): whose dashboard staff look at, an id in ASCII digits."""

    def __init__(self, *args, param: str, **kwargs):
        self.param = param
        super().__init__(*args, **kwargs)

    def get_fields(self):
        return {self.param: WholeNumberField(min_value=1, max_value=2**63 - 1, required=False)}


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
    duration_seconds = serializers.SerializerMethodField(
        help_text="How long it ran, in seconds: from its start to its end, or to now while it runs."
    )

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


# --- What the dashboards answer (for the schema; dashboards.selectors builds these bodies) ---------

DAY_IN_TZ = "A day in the caller's time zone (`tz`)."
PERIOD_LABEL = "The bucket: its first local day (YYYY-MM-DD), or YYYY-MM for months and YYYY for years."


class WindowBodySerializer(serializers.Serializer):
    """The window a dashboard covers, as the query named it."""

    token = serializers.CharField(help_text="The token every amount is in.")
    period = serializers.ChoiceField(choices=PERIODS)
    tz = serializers.CharField(help_text="The IANA time zone of the buckets.")

    def get_fields(self):
        # `from` is a Python keyword: declared here rather than as an attribute.
        return {
            **super().get_fields(),
            "from": serializers.DateField(help_text="The first local day of the window."),
            "to": serializers.DateField(help_text="The last local day of the window."),
        }


class UserOverviewFiguresSerializer(serializers.Serializer):
    total_sessions = serializers.IntegerField()
    total_spent = AmountField()
    average_session_length = serializers.IntegerField(help_text="The average length of ended sessions, in seconds.")
    recent_activity = serializers.IntegerField(help_text="Sessions started in the last 7 days.")


class FavoriteCategorySerializer(serializers.Serializer):
    category_id = serializers.IntegerField(allow_null=True)
    category = serializers.CharField()
    total_spent = AmountField()
    session_count = serializers.IntegerField()


class UserPeriodSerializer(serializers.Serializer):
    period = serializers.CharField(help_text=PERIOD_LABEL)
    session_count = serializers.IntegerField()
    total_spent = AmountField()


class UserOverviewSerializer(WindowBodySerializer):
    """GET /dashboard/user/overview: the user's sessions and spending over the window."""

    overview = UserOverviewFiguresSerializer()
    favorite_categories = FavoriteCategorySerializer(many=True)
    recent_sessions = DashboardSessionSerializer(many=True)
    analytics = UserPeriodSerializer(many=True)


class SessionChargeSerializer(serializers.Serializer):
    transaction_id = serializers.IntegerField(help_text="The ledger transaction (a sweep's batch) it was posted in.")
    reference = serializers.CharField(allow_null=True, help_text="charge:<sessionId>:<n>, n counting from 1.")
    at = serializers.DateTimeField()
    metered_until = serializers.DateTimeField(help_text="The instant this charge billed the session up to.")
    amount = AmountField()
    cumulative = AmountField(help_text="Charged so far, this charge included.")


class DashboardSessionDetailSerializer(DashboardSessionSerializer):
    charges = SessionChargeSerializer(many=True, help_text="Its charges, oldest first.")

    class Meta(DashboardSessionSerializer.Meta):
        fields = [*DashboardSessionSerializer.Meta.fields, "charges"]


class UserSessionDetailSerializer(serializers.Serializer):
    session = DashboardSessionDetailSerializer()


class VendorOverviewFiguresSerializer(serializers.Serializer):
    total_earnings = AmountField(help_text="Net of the platform fee.")
    total_sessions_hosted = serializers.IntegerField()
    active_services = serializers.IntegerField()
    total_services = serializers.IntegerField()
    average_earning_per_session = AmountField()


class VendorTopServiceSerializer(serializers.Serializer):
    service_id = serializers.IntegerField()
    name = serializers.CharField()
    earnings = AmountField()
    sessions = serializers.IntegerField()


class VendorCustomerSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    name = serializers.CharField()
    last_session_at = serializers.DateTimeField()
    sessions = serializers.IntegerField()
    earnings = AmountField()


class VendorServiceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    category = serializers.CharField()
    is_active = serializers.BooleanField()
    unit = serializers.CharField()
    rate = AmountField(allow_null=True, help_text="Null when the service is priced in another token.")
    service_token = serializers.CharField()
    sessions = serializers.IntegerField()
    earnings = AmountField()


class VendorPeriodSerializer(serializers.Serializer):
    period = serializers.CharField(help_text=PERIOD_LABEL)
    earnings = AmountField()
    sessions = serializers.IntegerField()


class VendorOverviewSerializer(WindowBodySerializer):
    """GET /dashboard/vendor/overview: the vendor's earnings and sessions over the window."""

    overview = VendorOverviewFiguresSerializer()
    top_services = VendorTopServiceSerializer(many=True)
    recent_sessions = DashboardSessionSerializer(many=True)
    recent_customers = VendorCustomerSerializer(many=True)
    services = VendorServiceSerializer(many=True)
    analytics = VendorPeriodSerializer(many=True)


class ServiceSpendingSerializer(serializers.Serializer):
    service = serializers.CharField()
    amount = AmountField(help_text="Spent on this service, in `token`.")


class MonthSpendingSerializer(serializers.Serializer):
    month = serializers.RegexField(r"^\d{4}-\d{2}$", help_text="YYYY-MM, in the caller's time zone.")
    amount = AmountField(help_text="Spent that month, in `token`.")


class UsageDaySerializer(serializers.Serializer):
    date = serializers.DateField(help_text=DAY_IN_TZ)
    usage = serializers.IntegerField(
        help_text="Time used that day, in seconds: the part of each of the caller's sessions that ran that "
        "local day (a session across midnight counts on both days; a running one up to now)."
    )
    spent = AmountField(help_text="What the caller's sessions were charged that day, in `token`.")


class WalletChartDataSerializer(serializers.Serializer):
    monthly_spending = MonthSpendingSerializer(many=True, help_text="The last 12 months with spending, oldest first.")
    top_services = ServiceSpendingSerializer(many=True, help_text="The 5 services spent on most.")
    usage_over_time = UsageDaySerializer(
        many=True,
        help_text="The last 30 days with time used or money spent, oldest first (days with neither are left out).",
    )


class WalletAnalyticsSerializer(serializers.Serializer):
    """GET /wallet/analytics. Money is the caller's spending on sessions in the default token
    (`token`), from the ledger; times are whole seconds."""

    total_spending = AmountField(help_text="Everything the caller's sessions were charged, in `token`.")
    services_used = serializers.IntegerField(help_text="Services the caller was charged for.")
    avg_usage_time = serializers.IntegerField(
        help_text="The average length of the caller's ended sessions, in seconds."
    )
    today_spend = AmountField(help_text="Spent today (in `tz`), in `token`.")
    month_spend = AmountField(help_text="Spent this month (in `tz`), in `token`.")
    service_breakdown = ServiceSpendingSerializer(many=True, help_text="The 10 services spent on most.")
    total_balance = AmountField(help_text="The caller's wallet balance in `token`.")
    token = serializers.CharField()
    tz = serializers.CharField(help_text="The IANA time zone of the days and months.")
    chart_data = WalletChartDataSerializer()
