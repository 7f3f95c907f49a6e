"""Reads of consultations, permission-checked: someone else's consultation is a 404.

A consultation's status as the API shows it is `current_status`: the stored status, except that an
accepted consultation with a running call is `active`. A call runs while its metered session does
(streaming.selectors.running_at): one silent for SESSION_IDLE_SECONDS ended then, though its session
stays active until the sweep (or the consultation's next change) bills it up to that instant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from rest_framework.exceptions import NotFound, PermissionDenied

from consultations.models import Consultation, ConsultationCall, ConsultationStatus, Message
from paygo.api.permissions import staff_has
from streaming.models import SessionStatus, StreamingSession
from streaming.selectors import running_at

# The latest calls a consultation's detail shows; GET /consultations/<id>/calls pages through them all.
CALLS_SHOWN = 20

# What staff need to read someone else's consultation: it comes with its messages and its calls,
# which the admin shows (as inlines) only to those who may view them too.
VIEW_CONSULTATION = (
    "consultations.view_consultation",
    "consultations.view_message",
    "consultations.view_consultationcall",
)


def _running_calls(now: datetime) -> QuerySet[ConsultationCall]:
    return ConsultationCall.objects.filter(running_at(now, through="session__"), consultation=OuterRef("pk"))


def with_current_status(consultations: QuerySet[Consultation]) -> QuerySet[Consultation]:
    """`current_status` as of now (the queryset's creation)."""
    return consultations.annotate(
        current_status=Case(
            When(
                Q(status=ConsultationStatus.ACCEPTED) & Exists(_running_calls(timezone.now())),
                then=Value(ConsultationStatus.ACTIVE),
            ),
            default=F("status"),
        )
    )


def _consultations() -> QuerySet[Consultation]:
    return with_current_status(Consultation.objects.select_related("user", "vendor", "service"))


def visible_to(user) -> QuerySet[Consultation]:
    """Its participants see a consultation; staff who may view consultations see them all."""
    consultations = _consultations()
    if staff_has(user, *VIEW_CONSULTATION):
        return consultations
    return consultations.filter(Q(user=user) | Q(vendor=user))


def consultation_get_for(user, consultation_id: int) -> Consultation:
    """A consultation `user` may read (a participant, or staff who may view it); anyone else's is a 404."""
    consultation = visible_to(user).filter(pk=consultation_id).first()
    if consultation is None:
        raise NotFound("No such consultation.")
    return consultation


def consultation_get_for_participant(user, consultation_id: int) -> Consultation:
    """A consultation `user` takes part in; staff who may only read it get a 403, anyone else a 404."""
    consultation = consultation_get_for(user, consultation_id)
    if consultation.participant_side(user) is None:
        raise PermissionDenied("Only the consultation's user and vendor can do this.")
    return consultation


def _with_thread_summary(consultations: QuerySet[Consultation], viewer) -> QuerySet[Consultation]:
    """The newest message's id and how many of the other side's messages the viewer has not read,
    each as one subquery of the list's single statement."""
    newest = Message.objects.filter(consultation=OuterRef("pk")).order_by("-created_at", "-id").values("pk")[:1]
    unread = (
        Message.objects.filter(consultation=OuterRef("pk"), read_at__isnull=True)
        .exclude(sender=viewer)
        .order_by()
        .values("consultation")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return consultations.annotate(
        last_message_id=Subquery(newest),
        unread_count=Coalesce(Subquery(unread, output_field=IntegerField()), 0),
    )


def consultation_list_for(user, *, status: str | None = None) -> QuerySet[Consultation]:
    """The consultations `user` takes part in (as the user or as the vendor), newest activity first."""
    consultations = _with_thread_summary(_consultations().filter(Q(user=user) | Q(vendor=user)), user)
    if status:
        consultations = consultations.filter(current_status=status)
    return consultations.order_by("-last_message_at", "-id")


def vendor_inbox_for(vendor, *, status: str | None = None) -> QuerySet[Consultation]:
    """A vendor's consultations: the pending ones (waiting for an answer) first, then by latest message."""
    consultations = _with_thread_summary(_consultations().filter(vendor=vendor), vendor)
    if status:
        consultations = consultations.filter(current_status=status)
    waiting_first = Case(When(status=ConsultationStatus.PENDING, then=Value(0)), default=Value(1))
    return consultations.order_by(waiting_first, "-last_message_at", "-id")


def attach_last_messages(consultations: Iterable[Consultation]) -> list[Consultation]:
    """Set `.last_message` on consultations annotated by _with_thread_summary: one query for a page."""
    consultations = list(consultations)
    ids = [c.last_message_id for c in consultations if c.last_message_id]
    messages = Message.objects.in_bulk(ids) if ids else {}
    for consultation in consultations:
        consultation.last_message = messages.get(consultation.last_message_id)
    return consultations


def message_list_for(consultation: Consultation) -> QuerySet[Message]:
    """A consultation's messages, newest first (page 1 is the latest)."""
    return Message.objects.filter(consultation=consultation).order_by("-created_at", "-id")


def call_list_for(consultation: Consultation) -> QuerySet[StreamingSession]:
    """The sessions of a consultation's calls, newest first (with what a running one's end is read
    from: its hold and its payer's wallet)."""
    return (
        StreamingSession.objects.select_related("asset", "hold", "payer_account")
        .filter(consultation_call__consultation=consultation)
        .order_by("-start_time", "-id")
    )


@dataclass(frozen=True)
class CallsSummary:
    """What a consultation's detail says of its calls: the latest ones, and how many and what all
    of them cost."""

    latest: list[StreamingSession]  # newest first, at most CALLS_SHOWN
    count: int
    totals: dict[str, tuple[int, int]]  # token -> (what its calls cost, in its minor unit; its decimals)


def calls_summary_of(consultation: Consultation) -> CallsSummary:
    """Two queries however many calls the consultation had: a user calling back for months makes a
    longer list to page through (call_list_for), not a longer detail."""
    latest = list(call_list_for(consultation)[:CALLS_SHOWN])
    per_token = (
        call_list_for(consultation)
        .order_by("asset__code")
        .values_list("asset__code", "asset__decimals")
        .annotate(cost=Sum("total_cost"), count=Count("pk"))
    )
    totals, count = {}, 0
    for code, decimals, cost, calls in per_token:
        totals[code] = (int(cost), decimals)
        count += calls
    return CallsSummary(latest=latest, count=count, totals=totals)


def calls_billed_of(consultation: Consultation, *, token: str) -> tuple[timedelta, int]:
    """How long a consultation's calls were billed for (each from its start up to where it was
    charged), and what those paid in `token` were charged in all (its minor unit): one query."""
    billed = (
        StreamingSession.objects.filter(consultation_call__consultation=consultation)
        .order_by()
        .aggregate(
            time=Sum(F("charged_until") - F("start_time")),
            charged=Sum("total_cost", filter=Q(asset__code=token)),
        )
    )
    return billed["time"] or timedelta(0), int(billed["charged"] or 0)


def running_call_of(consultation: Consultation, *, now: datetime | None = None) -> StreamingSession | None:
    """The consultation's call whose session is active, with `ended_by_silence`: whether it had no
    sign of life for SESSION_IDLE_SECONDS by `now` (then it ended at that timeout, and only waits to
    be billed up to it)."""
    return (
        StreamingSession.objects.filter(consultation_call__consultation=consultation, status=SessionStatus.ACTIVE)
        .annotate(ended_by_silence=ExpressionWrapper(~running_at(now or timezone.now()), output_field=BooleanField()))
        .order_by("-start_time", "-id")
        .first()
    )
