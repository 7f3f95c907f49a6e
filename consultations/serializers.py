"""Shapes of the consultations API (camelCase on the wire). Message bodies go out as stored (visible
text, see MessageBodyField), JSON-encoded like every other string."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from consultations.models import MESSAGE_MAX_LENGTH, ConsultationStatus, Message
from consultations.selectors import CALLS_SHOWN
from paygo.api.amounts import format_minor
from paygo.api.text import VisibleTextField
from paygo.api.validators import WholeNumberField
from paygo.tokens import decimals_of
from streaming.serializers import SessionOptionsSerializer, SessionSerializer


class MessageBodyField(VisibleTextField):
    """A message: a JSON string (not a number coerced to one) of visible text, its lines kept, as a
    transfer's memo and a notification's message are (paygo.api.text.visible_text: nothing in it
    hides or reorders what follows, in one form), not escaped, 1 to MESSAGE_MAX_LENGTH characters
    as stored."""

    default_error_messages = {"invalid": "Write the message as text."}

    def __init__(self, **kwargs):
        super().__init__(multiline=True, max_length=MESSAGE_MAX_LENGTH, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "enum": ConsultationStatus.values}, component_name="ConsultationStatus")
class ConsultationStatusField(serializers.ChoiceField):
    """One of the six statuses (its own enum in the schema, apart from the sessions' statuses)."""

    def __init__(self, **kwargs):
        super().__init__(choices=ConsultationStatus.values, **kwargs)


# --- Input ------------------------------------------------------------------------------------------


class ConsultationCreateSerializer(serializers.Serializer):
    vendor_id = WholeNumberField(min_value=1, max_value=2**63 - 1)
    service_id = WholeNumberField(min_value=1, max_value=2**63 - 1)
    initial_message = MessageBodyField()


class MessageCreateSerializer(serializers.Serializer):
    message = MessageBodyField()


class StatusChangeSerializer(serializers.Serializer):
    status = ConsultationStatusField()


class ConsultationListQuerySerializer(serializers.Serializer):
    status = ConsultationStatusField(required=False, allow_blank=True)


class CallStartSerializer(SessionOptionsSerializer):
    """A call is a metered session: the same options as any session's start."""


# --- Output -----------------------------------------------------------------------------------------


class ParticipantSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class ServiceBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    unit = serializers.CharField()
    token = serializers.CharField()
    rate = serializers.SerializerMethodField()
    price_version = serializers.IntegerField(
        help_text="The service's price as shown here: send it with the call's start (priceVersion)."
    )

    def get_rate(self, service) -> str:
        return format_minor(int(service.rate), decimals_of(service.token))


class MessageSerializer(serializers.ModelSerializer):
    consultation_id = serializers.IntegerField()
    sender_id = serializers.IntegerField()

    class Meta:
        model = Message
        fields = ["id", "consultation_id", "sender_id", "body", "created_at", "read_at"]
        read_only_fields = fields


class ConsultationSerializer(serializers.Serializer):
    """A consultation as lists show it. `date` is its latest activity (its newest message)."""

    id = serializers.IntegerField()
    user = ParticipantSerializer()
    vendor = ParticipantSerializer()
    service = ServiceBriefSerializer()
    status = ConsultationStatusField(source="current_status")
    date = serializers.DateTimeField(source="last_message_at")
    created_at = serializers.DateTimeField()
    last_message = MessageSerializer(allow_null=True)
    unread_count = serializers.IntegerField(help_text="Messages from the other participant not read yet.")


class CallSerializer(serializers.Serializer):
    session_id = serializers.UUIDField()
    status = serializers.CharField()
    stop_reason = serializers.CharField()
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField(allow_null=True)
    total_cost = serializers.SerializerMethodField()
    token = serializers.CharField(source="asset.code")
    total_usage_seconds = serializers.SerializerMethodField(
        help_text="How long the call ran, in seconds: to its end, or to now while it runs."
    )

    def get_total_cost(self, session) -> str:
        return format_minor(session.total_cost, session.asset.decimals)

    def get_total_usage_seconds(self, session) -> int:
        return session.usage_seconds


class ConsultationDetailSerializer(serializers.Serializer):
    """One consultation with its latest calls (selectors.calls_summary_of, set as `calls_summary`);
    its messages come beside it, paginated."""

    id = serializers.IntegerField()
    user = ParticipantSerializer()
    vendor = ParticipantSerializer()
    service = ServiceBriefSerializer()
    status = ConsultationStatusField(source="current_status")
    date = serializers.DateTimeField(source="last_message_at")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    calls = CallSerializer(
        source="calls_summary.latest",
        many=True,
        help_text=f"Its latest {CALLS_SHOWN} calls, newest first; GET /api/v1/consultations/{{id}}/calls "
        "pages through all of them.",
    )
    call_count = serializers.IntegerField(source="calls_summary.count", help_text="How many calls it has had.")
    total_call_cost = serializers.SerializerMethodField(
        help_text="Everything its calls cost so far, in `callToken`; null if its calls were paid in "
        "several tokens (see each call's token)."
    )
    call_token = serializers.SerializerMethodField()

    def _totals(self, consultation) -> dict[str, tuple[int, int]]:
        return consultation.calls_summary.totals

    def get_call_token(self, consultation) -> str | None:
        totals = self._totals(consultation)
        if not totals:
            return consultation.service.token
        return next(iter(totals)) if len(totals) == 1 else None

    def get_total_call_cost(self, consultation) -> str | None:
        totals = self._totals(consultation)
        if not totals:
            return format_minor(0, decimals_of(consultation.service.token))
        if len(totals) > 1:
            return None
        amount, decimals = next(iter(totals.values()))
        return format_minor(amount, decimals)


# --- Response shapes, for the schema ------------------------------------------------------------------


class _PageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    total_pages = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class ConsultationListResponseSerializer(_PageSerializer):
    consultations = ConsultationSerializer(many=True)


class ConsultationDetailResponseSerializer(_PageSerializer):
    consultation = ConsultationDetailSerializer()
    messages = MessageSerializer(many=True, help_text="Newest first; page 1 holds the latest.")


class CallListResponseSerializer(_PageSerializer):
    calls = CallSerializer(many=True, help_text="Newest first.")


class ConsultationCreatedResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    consultation = ConsultationSerializer()


class MessageSentResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    sent_message = MessageSerializer()


class ConsultationChangedResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    consultation = ConsultationDetailSerializer()


class CallResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    session = SessionSerializer(help_text="The call's metered session: its sessionId opens /ws/streams/<sessionId>/.")
    consultation = ConsultationDetailSerializer()
