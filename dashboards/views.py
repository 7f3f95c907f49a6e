"""The dashboards API: a user's spending, a vendor's earnings, the platform's figures for staff.

A user sees only their own dashboard, a vendor only theirs; staff with the view permissions on
what a dashboard shows see anyone's (`?userId=`, `?vendorId=`), and those with the platform
overview permission the platform's (dashboards.selectors says which permissions).
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboards import selectors
from dashboards.periods import DAY, MONTH, PERIODS, PeriodError, window
from dashboards.serializers import (
    DashboardSessionSerializer,
    RefreshQuerySerializer,
    StatusQuerySerializer,
    SubjectQuerySerializer,
    TzQuerySerializer,
    UserOverviewSerializer,
    UserSessionDetailSerializer,
    VendorOverviewSerializer,
    WalletAnalyticsSerializer,
    WindowQuerySerializer,
)
from paygo.api.filters import query_filters
from paygo.api.permissions import StaffWithPermission
from paygo.api.schema import error_responses

TZ = OpenApiParameter("tz", str, description="IANA time zone of the periods (default UTC)")
PERIOD = OpenApiParameter("period", str, enum=PERIODS, description="Bucket of the series (default month)")
FROM = OpenApiParameter("from", OpenApiTypes.DATE, description="First local day (included)")
TO = OpenApiParameter("to", OpenApiTypes.DATE, description="Last local day (included)")
USER_ID = OpenApiParameter(
    "userId", int, description="Staff who may view sessions and ledger transactions: whose dashboard"
)
VENDOR_ID = OpenApiParameter(
    "vendorId", int, description="Staff who may view sessions, ledger transactions and services: whose dashboard"
)


# Whose dashboard: one of another role is refused (403), a userId or vendorId that is no id is a 400, and
# one that names no one of the role a 404.
_SUBJECT_ERRORS = error_responses(403, 404)


def _subject(request, *, role: str, param: str):
    query = SubjectQuerySerializer(data=query_filters(request), param=param)
    query.is_valid(raise_exception=True)
    return selectors.dashboard_subject(request.user, role=role, param=param, wanted=query.validated_data.get(param))


def _window(request, *, default_period: str = MONTH):
    query = WindowQuerySerializer(data=query_filters(request), default_period=default_period)
    query.is_valid(raise_exception=True)
    values = query.validated_data
    try:
        return window(
            period=values["period"],
            tz=values["tz"],
            now=timezone.now(),
            since=values.get("from"),
            until=values.get("to"),
        )
    except PeriodError as exc:
        raise exceptions.ValidationError({exc.field: [str(exc)]}) from None


def _sessions(sessions) -> list:
    return DashboardSessionSerializer(sessions, many=True).data


class UserOverviewView(APIView):
    @extend_schema(
        summary="A user's dashboard: sessions, spending, favourite categories, spending per period",
        parameters=[PERIOD, TZ, FROM, TO, USER_ID],
        responses={200: UserOverviewSerializer, **_SUBJECT_ERRORS},
    )
    def get(self, request):
        user = _subject(request, role="user", param="userId")
        overview = selectors.user_overview(user, window=_window(request), now=timezone.now())
        overview["recent_sessions"] = _sessions(overview["recent_sessions"])
        return Response(overview)


class UserSessionsView(generics.ListAPIView):
    serializer_class = DashboardSessionSerializer
    results_key = "sessions"

    @extend_schema(
        operation_id="dashboard_user_sessions_list",
        summary="A user's sessions, newest first, with what each cost on the ledger",
        parameters=[
            OpenApiParameter("status", str, enum=StatusQuerySerializer().fields["status"].choices),
            USER_ID,
        ],
        responses={200: DashboardSessionSerializer(many=True), **_SUBJECT_ERRORS},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        user = _subject(self.request, role="user", param="userId")
        query = StatusQuerySerializer(data=query_filters(self.request))
        query.is_valid(raise_exception=True)
        return selectors.user_sessions(user, status=query.validated_data.get("status"))


class UserSessionDetailView(APIView):
    @extend_schema(
        summary="One of the user's sessions with its charge timeline (staff: any session)",
        responses={200: UserSessionDetailSerializer, **error_responses(403)},  # 403: callers without a user dashboard
    )
    def get(self, request, session_id):
        session = selectors.user_session_get(request.user, session_id)
        body = DashboardSessionSerializer(session).data
        body["charges"] = selectors.session_charge_timeline(session)
        return Response({"session": body})


class VendorOverviewView(APIView):
    @extend_schema(
        summary="A vendor's dashboard: earnings, sessions hosted, services, customers, earnings per period",
        parameters=[PERIOD, TZ, FROM, TO, VENDOR_ID],
        responses={200: VendorOverviewSerializer, **_SUBJECT_ERRORS},
    )
    def get(self, request):
        vendor = _subject(request, role="vendor", param="vendorId")
        overview = selectors.vendor_overview(vendor, window=_window(request), now=timezone.now())
        overview["recent_sessions"] = _sessions(overview["recent_sessions"])
        return Response(overview)


class VendorEarningsView(APIView):
    @extend_schema(
        summary="A vendor's earnings per period (net of the platform fee) between two dates",
        parameters=[PERIOD, TZ, FROM, TO, VENDOR_ID],
        responses={200: OpenApiTypes.OBJECT, **_SUBJECT_ERRORS},
    )
    def get(self, request):
        vendor = _subject(request, role="vendor", param="vendorId")
        return Response(selectors.vendor_earnings(vendor, window=_window(request, default_period=DAY)))


ADMIN_OVERVIEW_MONEY = (
    "Amounts are in `token`, from the ledger, over the window (`totals`) and per period (`series`). "
    "`grossVolume`: what sessions were charged; `platformRevenue`: the fees on them; `vendorEarnings`: the rest. "
    "`deposits`: what on-chain payments credited to wallets. `withdrawals`: what withdrawals and vendor payouts took "
    "out of PayGo's custody, counted when the outbox sent them, less those reverted on chain, subtracted when "
    "seen reverted (a period's figure can then be negative; counted again if the transfer signed for one is "
    "executed after all). A request still waiting is `outbox.backlogAmount`, not a "
    "withdrawal; one Chipi refused is refunded and never counted (`outbox.failed`)."
)


class AdminOverviewView(APIView):
    def get_permissions(self):
        return [StaffWithPermission(selectors.PLATFORM_OVERVIEW)]

    @extend_schema(
        summary="The platform (staff): volume, revenue, sessions, users, deposits, withdrawals, outbox, ledger health",
        description=ADMIN_OVERVIEW_MONEY,
        parameters=[
            PERIOD,
            TZ,
            FROM,
            TO,
            OpenApiParameter("refresh", bool, description="Recompute now (figures are shared for a minute)"),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        query = RefreshQuerySerializer(data=query_filters(request))
        query.is_valid(raise_exception=True)
        refresh = query.validated_data["refresh"]
        return Response(
            selectors.admin_overview(window=_window(request, default_period=DAY), now=timezone.now(), refresh=refresh)
        )


class WalletAnalyticsView(APIView):
    @extend_schema(
        summary="Spending and time-used analytics for the wallet page",
        parameters=[TZ],
        responses={200: WalletAnalyticsSerializer},
    )
    def get(self, request):
        query = TzQuerySerializer(data=query_filters(request))
        query.is_valid(raise_exception=True)
        tz = query.validated_data["tz"]
        return Response(selectors.wallet_analytics(request.user, tz=tz, now=timezone.now()))
