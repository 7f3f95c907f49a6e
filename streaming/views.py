"""The sessions API (paths as the seed has them). Start and stop honour Idempotency-Key."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.serializers import PRICE_CHANGED
from paygo.api.amounts import format_minor
from paygo.api.filters import query_filters
from paygo.api.instants import instant
from paygo.api.permissions import IsUserRole
from paygo.api.ratelimits import MONEY, USAGE
from paygo.api.schema import error_codes, error_responses
from streaming import pricing, selectors, services
from streaming.models import SessionStatus
from streaming.serializers import (
    SESSION_ENDED,
    SHORT_OF_FUNDS_TO_START,
    USAGE_OVER_CAP,
    USAGE_UNPAID,
    MetricsResponseSerializer,
    MetricsSerializer,
    SessionBodySerializer,
    SessionSerializer,
    StartResponseSerializer,
    StartSerializer,
    StopResponseSerializer,
    UsageResponseSerializer,
    UsageSerializer,
)
from wallets.idempotency import SCHEMA_PARAMETER as IDEMPOTENCY_PARAMETER
from wallets.idempotency import idempotent, replays_first

PRESENCE_DOC = (
    "A session is billed until it stops. Signs of life: the user's metrics report (PATCH .../metrics), "
    "the user's open live socket, the vendor's usage report. A session with none for SESSION_IDLE_SECONDS "
    "(60 seconds by default) is stopped as idle at the instant that timeout ran out, billed up to it, "
    "whoever ends it later; a sign of life after that instant does not revive it."
)


def _service_for_start(service_id: int):
    from marketplace.models import Service

    service = Service.objects.select_related("vendor").filter(pk=service_id).first()
    if service is None:
        raise services.unknown_service()
    return service


class StartView(APIView):
    rate_budget = MONEY  # paygo.api.ratelimits: a money write
    permission_classes = [IsUserRole]

    @extend_schema(
        request=StartSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        summary="Start a metered session",
        description=PRESENCE_DOC,
        responses={201: StartResponseSerializer, **error_codes(SHORT_OF_FUNDS_TO_START, PRICE_CHANGED)},
    )
    @replays_first
    def post(self, request):
        data = StartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        service = _service_for_start(values["service_id"])

        def execute(_) -> Response:
            session = services.session_start(
                user=request.user,
                service=service,
                device=values.get("device"),
                max_cost=values.get("max_cost"),  # in the token of the terms the start locks
                price_version=values.get("price_version"),
            )
            return Response(
                {
                    "message": "Session started.",
                    "session": SessionSerializer(session, context={"request": request}).data,
                    "user_role": "user",
                },
                status=status.HTTP_201_CREATED,
            )

        return idempotent(request, execute)


class MetricsView(APIView):
    @extend_schema(
        request=MetricsSerializer,
        summary="Report quality metrics (a heartbeat)",
        description=PRESENCE_DOC,
        responses={200: MetricsResponseSerializer, **error_codes(SESSION_ENDED)},
    )
    def patch(self, request, session_id):
        session = selectors.session_get_for(request.user, session_id)
        if session.user_id != request.user.pk:
            raise exceptions.NotFound("No such session.")
        data = MetricsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = services.session_metrics_record(session=session, sample=_camel_sample(data.validated_data))
        return Response({"message": "Metrics recorded.", "qualityMetrics": session.quality_metrics[-1]})


def _camel_sample(values: dict) -> dict:
    return {"frameDrops" if key == "frame_drops" else key: value for key, value in values.items()}


def _stop_body(session, request) -> dict:
    decimals = session.asset.decimals
    seconds = session.total_usage_seconds
    rate_per_minute = None
    if pricing.is_time_unit(session.unit):
        per_minute = pricing.rate_per_minute(rate=int(session.rate), unit_ms=pricing.TIME_UNIT_MS[session.unit])
        rate_per_minute = format_minor(per_minute, decimals)
    return {
        "message": "Session stopped." if session.status != SessionStatus.ACTIVE else "Session is still active.",
        "total_usage_minutes": round(seconds / 60, 2),
        "total_usage_seconds": seconds,
        "total_cost": format_minor(session.total_cost, decimals),
        "rate_per_minute": rate_per_minute,
        "session": SessionSerializer(session, context={"request": request}).data,
    }


class StopView(APIView):
    rate_budget = MONEY  # paygo.api.ratelimits: a money write

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_PARAMETER],
        summary="Stop a session (owner, vendor, staff)",
        responses={200: StopResponseSerializer, **error_responses(403)},  # 403: staff who may only view it
    )
    @replays_first
    def patch(self, request, session_id):
        session = selectors.session_get_to_stop(request.user, session_id)

        def execute(_) -> Response:
            stopped = services.session_stop(session=session, reason=services.stop_reason_for(session, request.user))
            return Response(_stop_body(stopped, request))

        return idempotent(request, execute)


class MySessionsView(generics.ListAPIView):
    serializer_class = SessionSerializer
    results_key = "sessions"

    @extend_schema(parameters=[OpenApiParameter("status", str, enum=SessionStatus.values)], summary="My sessions")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        wanted = query_filters(self.request).get("status")
        if wanted and wanted not in SessionStatus.values:
            raise exceptions.ValidationError({"status": [f"Choose one of {', '.join(SessionStatus.values)}."]})
        return selectors.sessions_of(self.request.user, status=wanted)


class ActiveSessionsView(generics.ListAPIView):
    serializer_class = SessionSerializer
    results_key = "sessions"

    def get_queryset(self):
        return selectors.active_sessions_for(self.request.user)


class SessionDetailView(APIView):
    @extend_schema(summary="One session (owner, vendor, staff)", responses=SessionBodySerializer)
    def get(self, request, session_id):
        session = selectors.session_get_for(request.user, session_id)
        return Response({"session": SessionSerializer(session, context={"request": request}).data})


class UsageView(APIView):
    # paygo.api.ratelimits: a budget of its own, as a vendor reports on every session he serves
    # (sharing his money budget, more than 60 usage-metered customers went partly unreported, unbilled)
    rate_budget = USAGE

    @extend_schema(
        request=UsageSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        summary="Report usage on a usage-metered session (its vendor)",
        description=(
            "Each report counts once per eventId and is a sign of life of the session. A quantity above the "
            "service's maxEventQuantity is refused with a 400; a report that would take the session's cost "
            "past its cap (the user's maxCost, else the service's maxSessionCost) is refused with a 409 "
            "(code usage_over_cap), and one its payer cannot pay (beyond the session's hold and the wallet's free "
            "balance) with a 402 (code insufficient_funds). A refused report is not recorded and never charged; "
            "an accepted one is held in the payer's wallet until the next sweep charges it."
        ),
        # 403: the session's user (only its vendor reports)
        responses={
            201: UsageResponseSerializer,
            200: UsageResponseSerializer,
            **error_responses(403),
            **error_codes(USAGE_UNPAID, SESSION_ENDED, USAGE_OVER_CAP),
        },
    )
    @replays_first
    def post(self, request, session_id):
        session = selectors.session_get_for(request.user, session_id)
        if session.vendor_id != request.user.pk:
            if session.user_id == request.user.pk:
                raise exceptions.PermissionDenied("Only the service's vendor reports usage.")
            raise exceptions.NotFound("No such session.")
        data = UsageSerializer(data=request.data)
        data.is_valid(raise_exception=True)

        def execute(_) -> Response:
            event, counted = services.usage_report(session=session, **data.validated_data)
            return Response(
                {
                    "message": "Usage recorded; it is charged on the next sweep." if counted else "Already recorded.",
                    "counted": counted,
                    "event": {
                        "eventId": event.event_id,
                        "quantity": str(event.quantity),
                        "createdAt": instant(event.created_at),
                    },
                },
                status=status.HTTP_201_CREATED if counted else status.HTTP_200_OK,
            )

        # Usage is money (it is charged on the next sweep): under an Idempotency-Key, as every money POST.
        return idempotent(request, execute)
