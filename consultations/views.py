"""The consultations API (paths as the seed has them, plus a call's start and stop and the list of calls).

Call start and stop honour Idempotency-Key: they move money.
"""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from consultations import selectors, services
from consultations.models import ConsultationStatus
from consultations.serializers import (
    CallListResponseSerializer,
    CallResponseSerializer,
    CallSerializer,
    CallStartSerializer,
    ConsultationChangedResponseSerializer,
    ConsultationCreatedResponseSerializer,
    ConsultationCreateSerializer,
    ConsultationDetailResponseSerializer,
    ConsultationDetailSerializer,
    ConsultationListQuerySerializer,
    ConsultationListResponseSerializer,
    ConsultationSerializer,
    MessageCreateSerializer,
    MessageSentResponseSerializer,
    MessageSerializer,
    StatusChangeSerializer,
)
from marketplace.serializers import PRICE_CHANGED
from paygo.api.filters import query_filters
from paygo.api.pagination import Pagination
from paygo.api.permissions import IsUserRole, IsVendor
from paygo.api.ratelimits import MONEY
from paygo.api.schema import ErrorCode, error_codes, error_responses
from streaming.serializers import SHORT_OF_FUNDS_TO_START, SessionSerializer
from wallets.idempotency import SCHEMA_PARAMETER as IDEMPOTENCY_PARAMETER
from wallets.idempotency import idempotent, replays_first

LIST_PARAMETERS = [
    OpenApiParameter("status", str, enum=ConsultationStatus.values),
    *Pagination.parameters(),
]

# What a consultation's participants do: staff who may see it are refused (403).
_PARTICIPANTS_ONLY = error_responses(403)

# The refusals of consultations' services, as the schema tells them; `status` is the consultation's.
_STATUS = {"status": serializers.CharField(help_text="The consultation's status now.")}
CLOSED = ErrorCode(409, "closed", "the consultation is closed (rejected, completed or cancelled); nothing was sent.")
INVALID_TRANSITION = ErrorCode(
    409,
    "invalid_transition",
    "the consultation cannot take that status from the one it has (`status`), or not from this participant.",
    fields=_STATUS,
)
CALL_RUNNING = ErrorCode(409, "call_running", "a call is already running.")
NOT_ACCEPTED = ErrorCode(
    409, "not_accepted", "a call needs an accepted consultation; `status` is this one's.", fields=_STATUS
)
SERVICE_UNAVAILABLE = ErrorCode(409, "service_unavailable", "the consultation's service is no longer offered.")
NO_CALL_RUNNING = ErrorCode(409, "no_call_running", "no call is running.")
CONSULTATION_OPEN = ErrorCode(
    409,
    "consultation_open",
    "the caller has an open consultation (pending, accepted or active) about this service, "
    "`consultationId`: write in it instead; nothing was sent.",
    fields={"consultationId": serializers.IntegerField(help_text="The caller's open consultation about the service.")},
)

_STATUS_MESSAGES = {
    ConsultationStatus.ACCEPTED: "Consultation accepted.",
    ConsultationStatus.REJECTED: "Consultation rejected.",
    ConsultationStatus.CANCELLED: "Consultation cancelled.",
    ConsultationStatus.COMPLETED: "Consultation completed.",
}


def _detail(user, consultation_id: int) -> dict:
    return _detail_of(selectors.consultation_get_for(user, consultation_id))


def _detail_of(consultation) -> dict:
    consultation.calls_summary = selectors.calls_summary_of(consultation)
    return ConsultationDetailSerializer(consultation).data


class _ConsultationPageMixin:
    results_key = "consultations"

    def _page(self, consultations) -> Response:
        page = selectors.attach_last_messages(self.paginate_queryset(consultations))
        return self.paginator.get_paginated_response(ConsultationSerializer(page, many=True).data)

    def _status_filter(self, request) -> str | None:
        query = ConsultationListQuerySerializer(data=query_filters(request))
        query.is_valid(raise_exception=True)
        return query.validated_data.get("status") or None


class ConsultationListView(_ConsultationPageMixin, GenericAPIView):
    """GET: the caller's consultations (as user or vendor). POST (users): ask a vendor for one."""

    serializer_class = ConsultationSerializer

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsUserRole()]
        return [IsAuthenticated()]

    @extend_schema(
        operation_id="consultations_list",
        summary="The caller's consultations, as user or as vendor, newest activity first",
        parameters=LIST_PARAMETERS,
        responses={200: ConsultationListResponseSerializer},
    )
    def get(self, request):
        status_filter = self._status_filter(request)
        return self._page(selectors.consultation_list_for(request.user, status=status_filter))

    @extend_schema(
        summary="Ask a vendor for a consultation about one of their active services",
        request=ConsultationCreateSerializer,
        responses={201: ConsultationCreatedResponseSerializer, **error_codes(CONSULTATION_OPEN)},
    )
    def post(self, request):
        data = ConsultationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        consultation, _ = services.consultation_create(user=request.user, **data.validated_data)
        (summary,) = selectors.attach_last_messages(
            selectors.consultation_list_for(request.user).filter(pk=consultation.pk)
        )
        return Response(
            {"message": "Consultation requested.", "consultation": ConsultationSerializer(summary).data},
            status=status.HTTP_201_CREATED,
        )


class VendorInboxView(_ConsultationPageMixin, GenericAPIView):
    permission_classes = [IsVendor]
    serializer_class = ConsultationSerializer

    @extend_schema(
        summary="Vendors: their consultations, pending first, then by latest message",
        parameters=LIST_PARAMETERS,
        responses={200: ConsultationListResponseSerializer},
    )
    def get(self, request):
        status_filter = self._status_filter(request)
        return self._page(selectors.vendor_inbox_for(request.user, status=status_filter))


class ConsultationDetailView(GenericAPIView):
    serializer_class = MessageSerializer
    results_key = "messages"

    @extend_schema(
        summary="One consultation with its latest calls and its messages (participants and staff); "
        "a participant opening it reads the other side's messages",
        parameters=Pagination.parameters(),
        responses={200: ConsultationDetailResponseSerializer},
    )
    def get(self, request, consultation_id: int):
        consultation = selectors.consultation_get_for(request.user, consultation_id)
        self.paginator.check_query(request)  # a refused page marks nothing read
        # Marked before the page is read (it shows them read), undone when the page turns out not to
        # exist (past the last one: a 404).
        with transaction.atomic():
            services.messages_mark_read(consultation=consultation, reader=request.user)
            page = self.paginate_queryset(selectors.message_list_for(consultation))
        return self.paginator.get_paginated_response(
            MessageSerializer(page, many=True).data, consultation=_detail_of(consultation)
        )


class CallListView(GenericAPIView):
    serializer_class = CallSerializer
    results_key = "calls"

    @extend_schema(
        operation_id="consultations_calls_list",
        summary="A consultation's calls, newest first (participants and staff, as the consultation)",
        parameters=Pagination.parameters(),
        responses={200: CallListResponseSerializer},
    )
    def get(self, request, consultation_id: int):
        consultation = selectors.consultation_get_for(request.user, consultation_id)
        page = self.paginate_queryset(selectors.call_list_for(consultation))
        return self.paginator.get_paginated_response(CallSerializer(page, many=True).data)


class MessageView(APIView):
    @extend_schema(
        summary="Write in a consultation (its user or vendor); not in a closed one",
        request=MessageCreateSerializer,
        responses={201: MessageSentResponseSerializer, **_PARTICIPANTS_ONLY, **error_codes(CLOSED)},
    )
    def post(self, request, consultation_id: int):
        consultation = selectors.consultation_get_for_participant(request.user, consultation_id)
        data = MessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data["message"]
        message = services.message_send(consultation=consultation, sender=request.user, body=body)
        return Response(
            {"message": "Message sent.", "sent_message": MessageSerializer(message).data},
            status=status.HTTP_201_CREATED,
        )


class StatusView(APIView):
    @extend_schema(
        summary="The vendor accepts, rejects or completes; the user cancels",
        request=StatusChangeSerializer,
        responses={200: ConsultationChangedResponseSerializer, **_PARTICIPANTS_ONLY, **error_codes(INVALID_TRANSITION)},
    )
    def patch(self, request, consultation_id: int):
        consultation = selectors.consultation_get_for_participant(request.user, consultation_id)
        data = StatusChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        new_status = data.validated_data["status"]
        services.consultation_status_change(consultation=consultation, actor=request.user, status=new_status)
        return Response(
            {"message": _STATUS_MESSAGES[new_status], "consultation": _detail(request.user, consultation.pk)}
        )


class CallStartView(APIView):
    rate_budget = MONEY  # paygo.api.ratelimits: a money write

    @extend_schema(
        summary="The consultation's user starts its paid call: a metered session on its service",
        request=CallStartSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            201: CallResponseSerializer,
            **_PARTICIPANTS_ONLY,
            **error_codes(SHORT_OF_FUNDS_TO_START, CALL_RUNNING, NOT_ACCEPTED, SERVICE_UNAVAILABLE, PRICE_CHANGED),
        },
    )
    @replays_first
    def post(self, request, consultation_id: int):
        consultation = selectors.consultation_get_for_participant(request.user, consultation_id)
        data = CallStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data

        def execute(_) -> Response:
            session = services.consultation_call_start(
                consultation=consultation,
                actor=request.user,
                device=values.get("device"),
                max_cost=values.get("max_cost"),  # in the token of the terms the call locks
                price_version=values.get("price_version"),
            )
            return Response(
                {
                    "message": "Call started.",
                    "session": SessionSerializer(session, context={"request": request}).data,
                    "consultation": _detail(request.user, consultation.pk),
                },
                status=status.HTTP_201_CREATED,
            )

        return idempotent(request, execute)


class CallStopView(APIView):
    rate_budget = MONEY  # paygo.api.ratelimits: a money write

    @extend_schema(
        summary="Either participant stops the running call; it is charged up to now",
        request=None,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: CallResponseSerializer, **_PARTICIPANTS_ONLY, **error_codes(NO_CALL_RUNNING)},
    )
    @replays_first
    def post(self, request, consultation_id: int):
        consultation = selectors.consultation_get_for_participant(request.user, consultation_id)

        def execute(_) -> Response:
            session = services.consultation_call_stop(consultation=consultation, actor=request.user)
            return Response(
                {
                    "message": "Call stopped.",
                    "session": SessionSerializer(session, context={"request": request}).data,
                    "consultation": _detail(request.user, consultation.pk),
                }
            )

        return idempotent(request, execute)
