"""The write paths of consultations: opening one, messages, status changes, and their paid calls.

Every change locks the consultation's row first, so that a message, a status change and a call
start on the same consultation happen one after the other, and reads the clock only then, so that
the times they record (a message's, updated_at, closed_at, a call's start and end) follow that
order. A call's money is streaming's: a call is a metered session (kind consultation) started and
stopped through streaming.services and charged by the same sweep. Notifications are stored in
the same transaction as the change they announce; notify() pushes and sends them only after it
commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework import exceptions

from accounts.services import account_no_longer_active, users_locked_active
from consultations import selectors
from consultations.models import (
    CLOSED_STATUSES,
    MESSAGE_MAX_LENGTH,
    ONE_OPEN_PER_USER_SERVICE,
    OPEN_STATUSES,
    Consultation,
    ConsultationCall,
    ConsultationStatus,
    Message,
)
from marketplace.selectors import is_on_sale
from marketplace.services import PriceTerms, service_locked_for_sale
from paygo.api.errors import Conflict
from paygo.api.text import INVISIBLE_MESSAGE, InvisibleCharacters, visible_text
from paygo.db import constraint_of
from streaming import services as streaming
from streaming.models import SessionKind, StopReason, StreamingSession

NOTIFICATION_PREVIEW_LENGTH = 200

# (from, to) -> the side allowed to make it. accepted <-> active happen through calls, not here.
TRANSITIONS: dict[tuple[str, str], str] = {
    (ConsultationStatus.PENDING, ConsultationStatus.ACCEPTED): "vendor",
    (ConsultationStatus.PENDING, ConsultationStatus.REJECTED): "vendor",
    (ConsultationStatus.PENDING, ConsultationStatus.CANCELLED): "user",
    (ConsultationStatus.ACCEPTED, ConsultationStatus.COMPLETED): "vendor",
    (ConsultationStatus.ACCEPTED, ConsultationStatus.CANCELLED): "user",
    (ConsultationStatus.ACTIVE, ConsultationStatus.COMPLETED): "vendor",  # stops the running call first
}

_DONE = {
    ConsultationStatus.ACCEPTED: "accepted",
    ConsultationStatus.REJECTED: "declined",
    ConsultationStatus.CANCELLED: "cancelled",
    ConsultationStatus.COMPLETED: "marked completed",
}


def _invalid(field: str, message: str, code: str = "invalid") -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [exceptions.ErrorDetail(message, code=code)]})


def _clean_body(body: str, field: str = "message") -> str:
    """A message body as the visible text it must be, whoever calls (paygo.api.text.visible_text, its
    lines kept: what the API's MessageBodyField checks), not escaped; or a 400."""
    if not isinstance(body, str):
        raise _invalid(field, "A message cannot be empty.", code="blank")
    try:
        body = visible_text(body, multiline=True)
    except InvisibleCharacters:
        raise _invalid(field, INVISIBLE_MESSAGE, code="invisible") from None
    if not body:
        raise _invalid(field, "A message cannot be empty.", code="blank")
    if len(body) > MESSAGE_MAX_LENGTH:
        raise _invalid(field, f"A message has at most {MESSAGE_MAX_LENGTH:,} characters.", code="max_length")
    return body


def _lock(
    consultation: Consultation, *, now: datetime | None = None, with_call: bool = True
) -> tuple[Consultation, datetime]:
    """The consultation's row, locked (inside transaction.atomic), and the time of the change (`now`,
    or the clock read once the row is ours); with its running call and current status at that time.
    Calls start only under this lock, so none starts while the caller holds it; one may end
    meanwhile (the sweep), which only ever makes an `active` consultation `accepted` again.

    A call silent for SESSION_IDLE_SECONDS ended at that timeout, though no sweep has billed it yet:
    it is no longer the running call (the consultation is `accepted`, as reads show it) but
    `ended_call`, which a change stops first (_stop_ended_call), billed up to that end."""
    locked = Consultation.objects.select_for_update().get(pk=consultation.pk)
    now = now or timezone.now()
    if with_call:
        call = selectors.running_call_of(locked, now=now)
        ended = call is not None and call.ended_by_silence
        locked.running_call = None if ended else call
        locked.ended_call = call if ended else None
        locked.current_status = ConsultationStatus.ACTIVE if locked.running_call else locked.status
    return locked, now


def _stop_ended_call(locked: Consultation, *, now: datetime) -> None:
    """Stop the call that ended by silence (on a row _lock() holds), as the sweep and the live hub stop
    it: idle, charged exactly up to its timeout (streaming's one stop). It locks the call's session
    and then its payer's accounts: callers do so where their order of locks has sessions."""
    if locked.ended_call is not None:
        streaming.session_stop(session=locked.ended_call, reason=StopReason.IDLE, now=now)
        locked.ended_call = None


def _preview(body: str) -> str:
    text = " ".join(body.split())
    return text if len(text) <= NOTIFICATION_PREVIEW_LENGTH else text[: NOTIFICATION_PREVIEW_LENGTH - 1] + "…"


def _thread(consultation: Consultation) -> str:
    """The consultation's notifications are one conversation (notifications' thread)."""
    return f"consultation:{consultation.pk}"


def _notify(
    user_id: int, title: str, message: str, consultation: Consultation, *, coalesce: bool = False, **data
) -> None:
    """Tell a participant. With `coalesce` (a request or a message), email and SMS go out only while
    they have no unread notification of this consultation: one "you have new messages" until they
    read it, not an email with the sender's text for each of 40 messages. A status change is news
    of its own, always sent. Two at once on one consultation cannot both be emailed: they take the
    consultation's row in turn (and notifications locks the thread besides)."""
    from notifications import notify

    notify(
        user_id,
        "consultation",
        title,
        message,
        {"consultationId": consultation.pk, **data},
        thread=_thread(consultation),
        coalesce=coalesce,
    )


def _refuse_unless_service_takes_calls(locked: Consultation) -> None:
    """A 409 (service_unavailable) when no call can start on the consultation's service: off sale, or
    its token deactivated by staff (as session_start decides). A conflict, not a field's error, since
    neither an accept's body nor a call start's names a service."""
    if not is_on_sale(locked.service) or streaming.payment_asset_of(locked.service) is None:
        raise _service_unavailable()


def _service_unavailable() -> Conflict:
    return Conflict({"message": "This consultation's service is no longer offered.", "code": "service_unavailable"})


# --- Opening a consultation and talking ------------------------------------------------------------


def consultation_create(
    *, user, vendor_id: int, service_id: int, initial_message: str, now: datetime | None = None
) -> tuple[Consultation, Message]:
    """A user asks a vendor for a consultation about one of the vendor's active services; while one of
    theirs about it is open (pending, accepted or active), a 409 that names it, and nothing written."""
    from marketplace.models import Service

    if user.role != "user":
        raise exceptions.PermissionDenied("Only users (not vendors or admins) can ask for a consultation.")
    body = _clean_body(initial_message, field="initial_message")
    vendor = get_user_model().objects.filter(pk=vendor_id, role="vendor", is_active=True).first()
    if vendor is None:
        raise _invalid("vendor_id", "No such vendor.", code="unknown_vendor")
    service = Service.objects.select_related("vendor").filter(pk=service_id).first()
    # Off sale (inactive, retired), a service is unknown to the user, as its page is (404): the
    # answers that told it apart said it existed, and whose it was.
    if service is None or not is_on_sale(service):
        raise _invalid("service_id", "No such service.", code="unknown_service")
    if service.vendor_id != vendor.pk:
        raise _invalid("service_id", "This service is not offered by this vendor.", code="other_vendors_service")
    if streaming.payment_asset_of(service) is None:
        # Its token deactivated by staff, it takes no call (and its vendor could not accept it), as
        # a session start answers.
        raise _invalid("service_id", "This service is not available.", code="inactive_service")

    now = now or timezone.now()
    with transaction.atomic():
        # Both accounts take turns with a deactivation (which writes the row) up to the commit: one
        # that committed first is seen here, and one that comes after sees this consultation and
        # cancels it (consultations_cancel_of). Unlocked, one asked for while the vendor was being
        # deactivated was left open, with nobody to answer it.
        is_active = users_locked_active([user.pk, vendor.pk])
        if not is_active[vendor.pk]:
            raise _invalid("vendor_id", "No such vendor.", code="unknown_vendor")
        if not is_active[user.pk]:
            raise account_no_longer_active()
        consultation = _open_one(user=user, vendor=vendor, service=service, now=now)
        message = Message.objects.create(consultation=consultation, sender=user, body=body, created_at=now)
        _notify(
            vendor.pk,
            "New consultation request",
            f"{user.name} asks for a consultation about {service.name}: {_preview(body)}",
            consultation,
            coalesce=True,
            messageId=message.pk,
            status=consultation.status,
        )
    return consultation, message


def _open_one(*, user, vendor, service, now: datetime) -> Consultation:
    """A new pending consultation of `user` about `service` (inside transaction.atomic), or a 409
    (consultation_open) naming the one already open: asked twice (a double tap, a client retrying
    without an Idempotency-Key), the vendor had the same request twice to accept or decline.

    The partial unique index decides between two asks at once: the one that cannot see the other's
    uncommitted row inserts too, waits for the other's commit and is refused, then finds the winner
    (a new statement sees it). Should that one have closed in between, this asks again."""
    while True:
        open_id = (
            Consultation.objects.filter(user=user, service=service, status__in=OPEN_STATUSES)
            .values_list("pk", flat=True)
            .first()
        )
        if open_id is not None:
            raise Conflict(
                {
                    "message": "You already have an open consultation about this service; write in it instead. "
                    "Nothing was sent.",
                    "code": "consultation_open",
                },
                extra={"consultationId": open_id},
            )
        try:
            with transaction.atomic():  # a savepoint: the refused row leaves the transaction usable
                return Consultation.objects.create(
                    user=user, vendor=vendor, service=service, created_at=now, updated_at=now, last_message_at=now
                )
        except IntegrityError as exc:
            if constraint_of(exc) != ONE_OPEN_PER_USER_SERVICE:
                raise


def message_send(*, consultation: Consultation, sender, body: str, now: datetime | None = None) -> Message:
    """A participant writes in an open consultation (anything but completed, cancelled, rejected)."""
    side = consultation.participant_side(sender)
    if side is None:
        raise exceptions.PermissionDenied("Only the consultation's user and vendor can write in it.")
    body = _clean_body(body)
    with transaction.atomic():
        locked, now = _lock(consultation, now=now, with_call=False)
        if locked.status in CLOSED_STATUSES:
            raise Conflict(
                {"message": f"This consultation is {locked.status}; it takes no more messages.", "code": "closed"}
            )
        message = Message.objects.create(consultation=locked, sender=sender, body=body, created_at=now)
        locked.last_message_at = locked.updated_at = now
        locked.save(update_fields=["last_message_at", "updated_at"])
        _notify(
            locked.other_participant_id(sender),
            f"New message from {sender.name}",
            _preview(body),
            locked,
            coalesce=True,
            messageId=message.pk,
        )
    return message


def messages_mark_read(*, consultation: Consultation, reader, now: datetime | None = None) -> int:
    """The other side's unread messages, read by `reader` (a participant) now, and the reader's
    notifications of the consultation with them (the next message emails again); how many messages
    changed."""
    from notifications.services import notifications_read_in

    if consultation.participant_side(reader) is None:
        return 0
    notifications_read_in(user=reader, thread=_thread(consultation))
    return (
        Message.objects.filter(consultation=consultation, read_at__isnull=True)
        .exclude(sender=reader)
        .update(read_at=now or timezone.now())
    )


# --- Status -----------------------------------------------------------------------------------------


def consultation_status_change(*, consultation: Consultation, actor, status: str, now: datetime | None = None):
    """The vendor accepts, rejects or completes; the user cancels. Any other change is a 409 and
    changes nothing, and so is accepting a consultation whose service no call can start on.
    Completing a consultation with a running call stops the call first."""
    if status not in ConsultationStatus.values:
        raise _invalid("status", f"Choose one of {', '.join(ConsultationStatus.values)}.", code="invalid_choice")
    side = consultation.participant_side(actor)
    if side is None:
        raise exceptions.PermissionDenied("Only the consultation's user and vendor can change its status.")
    with transaction.atomic():
        locked, now = _lock(consultation, now=now)
        current = locked.current_status
        allowed_side = TRANSITIONS.get((current, status))
        if allowed_side is None:
            raise Conflict(
                {
                    "message": f"A consultation that is {current} cannot become {status}.",
                    "code": "invalid_transition",
                    "status": current,
                }
            )
        if allowed_side != side:
            raise Conflict(
                {
                    "message": f"Only the consultation's {allowed_side} can make it {status}.",
                    "code": "invalid_transition",
                    "status": current,
                }
            )
        if status == ConsultationStatus.ACCEPTED:
            # Accepted, a consultation is there to be called on: one whose service no call can start
            # on would leave its user waiting on a consultation he can only cancel.
            _refuse_unless_service_takes_calls(locked)
        call = locked.running_call
        stop_reason = streaming.stop_reason_for(call, actor) if call else None
        _status_set(locked, status=status, now=now, stop_reason=stop_reason)
        _notify(
            locked.other_participant_id(actor),
            f"Consultation {status}",
            f"{actor.name} {_DONE[status]} the consultation about {locked.service.name}.",
            locked,
            status=status,
        )
    return locked


def _status_set(locked: Consultation, *, status: str, now: datetime, stop_reason: str | None) -> None:
    """The one write of a consultation's status, on a row _lock() holds: a running call is stopped
    first (charged exactly up to then, as any session's stop), and one that ended by silence up to
    its timeout, since no call runs on a consultation that is not accepted."""
    if locked.running_call is not None:
        streaming.session_stop(session=locked.running_call, reason=stop_reason, now=now)
    _stop_ended_call(locked, now=now)
    locked.status = status
    locked.updated_at = now
    fields = ["status", "updated_at"]
    if status == ConsultationStatus.ACCEPTED:
        locked.accepted_at = now
        fields.append("accepted_at")
    if status in CLOSED_STATUSES:
        locked.closed_at = now
        fields.append("closed_at")
    locked.save(update_fields=fields)


@dataclass(frozen=True)
class HeldConsultation:
    """An open consultation a deactivation holds locked, and whether a call was running on it."""

    pk: int
    had_call: bool


def consultations_lock_open_of(*, user, now: datetime) -> list[HeldConsultation]:
    """Lock (inside transaction.atomic, in id order) every open consultation `user` takes part in,
    as the user or as the vendor, for consultations_cancel_of once their sessions have stopped.

    Consultations are locked after users' rows and before sessions and ledger accounts, as a call's
    start and a status change lock them: a call starting meanwhile is either stopped by the
    deactivation or refused after it. A call that ended by silence before `now` is not stopped here
    (one stop at a time would take accounts before the next session): the deactivation's one stop
    of every session bills it up to its timeout, as the sweep would."""
    ids = list(
        Consultation.objects.select_for_update()
        .filter(Q(user=user) | Q(vendor=user), status__in=OPEN_STATUSES)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return [
        HeldConsultation(pk=pk, had_call=_lock(Consultation(pk=pk), now=now)[0].running_call is not None) for pk in ids
    ]


def consultations_cancel_of(*, user, held: list[HeldConsultation], now: datetime) -> int:
    """Cancel the open consultations of a deactivated account (accounts.services.user_deactivate),
    locked by consultations_lock_open_of and whose calls have stopped since (with every session of
    the account, in one stop): the other side must not keep writing to, waiting on or paying someone
    who cannot answer, and is told why. Returns how many were cancelled."""
    for consultation in held:
        locked, _ = _lock(Consultation(pk=consultation.pk), now=now)
        # No call runs any more (a start waits for the account's row, which the deactivation holds):
        # the reason is for one that would.
        _status_set(locked, status=ConsultationStatus.CANCELLED, now=now, stop_reason=StopReason.STAFF)
        role = "take consultations" if user.pk == locked.vendor_id else "take part"
        _notify(
            locked.other_participant_id(user),
            "Consultation cancelled",
            f"{user.name} can no longer {role} (the account is no longer active): the consultation about "
            f"{locked.service.name} is cancelled."
            + (" Its call was stopped and charged up to then." if consultation.had_call else ""),
            locked,
            status=ConsultationStatus.CANCELLED,
            reason="account_deactivated",
        )
    return len(held)


# --- Calls --------------------------------------------------------------------------------------------


def consultation_call_start(
    *,
    consultation: Consultation,
    actor,
    device: dict | None = None,
    max_cost: Decimal | None = None,
    price_version: int | None = None,
) -> StreamingSession:
    """The consultation's user (who pays) starts a paid call on an accepted consultation: a metered
    session on its service, with what the consultation's earlier calls left of the service's free
    seconds and minimum charge. 402 without funds for the first period, and 409 (price_changed) on a
    price_version the service's price has moved on from, like any session; `max_cost` is an amount
    of the token of the terms the call locks, as session_start reads it."""
    side = consultation.participant_side(actor)
    if side != "user":
        raise exceptions.PermissionDenied("Only the consultation's user starts a call: they pay for it.")
    with transaction.atomic():
        # The participants' accounts before the consultation, as a deactivation takes them (and as
        # session_start below checks them again): in the other order, the two could deadlock.
        users_locked_active([consultation.user_id, consultation.vendor_id])
        locked, now = _lock(consultation)
        if locked.current_status == ConsultationStatus.ACTIVE:
            raise Conflict({"message": "A call is already running.", "code": "call_running"})
        if locked.current_status != ConsultationStatus.ACCEPTED:
            raise Conflict(
                {
                    "message": f"A call needs an accepted consultation; this one is {locked.current_status}.",
                    "code": "not_accepted",
                    "status": locked.current_status,
                }
            )
        _refuse_unless_service_takes_calls(locked)
        # The service's terms as the call will copy them: locked now (session_start locks the same
        # row again and decides the price version there), so what is left of them is reckoned from
        # the terms the call is billed by, not from a copy read before a change of price.
        terms = service_locked_for_sale(locked.service_id)
        if terms is None:
            raise _service_unavailable()
        # A call that ended by silence stops only now: its session after the service's row, as a
        # retirement locks them, and before what is left of the free seconds and minimum charge is
        # reckoned, which that call used up to its end.
        _stop_ended_call(locked, now=now)
        free_seconds, minimum_charge = _call_terms_left(locked, terms)
        session = streaming.session_start(
            user=locked.user,
            service=locked.service,
            device=device,
            max_cost=max_cost,
            kind=SessionKind.CONSULTATION,
            free_seconds=free_seconds,
            minimum_charge=minimum_charge,
            price_version=price_version,
        )
        ConsultationCall.objects.create(consultation=locked, session=session, created_at=session.start_time)
        locked.updated_at = session.start_time
        locked.save(update_fields=["updated_at"])
    return session


def _call_terms_left(locked: Consultation, terms: PriceTerms) -> tuple[int, int]:
    """The free seconds and the minimum charge of a consultation's next call, on a row _lock() holds
    (no call runs): what its earlier calls left of its service's. A consultation is one metered
    relationship split into calls: when each call renewed them, a user who hung up and called back
    before his free seconds ran out talked to the vendor for free for as long as he liked.

    Free time is used up by the time the earlier calls were billed for; a part of a second left
    counts as a whole one (in the payer's favour, as costs are rounded). The minimum charge is
    paid off by everything they were charged in the service's token (`terms`, the service's as the
    call copies them)."""
    billed, charged = selectors.calls_billed_of(locked, token=terms.token)
    left_us = terms.free_seconds * 1_000_000 - billed // timedelta(microseconds=1)
    free_seconds = max(0, -(-left_us // 1_000_000))
    minimum_charge = max(0, terms.minimum_charge - charged)
    return free_seconds, minimum_charge


def consultation_call_stop(*, consultation: Consultation, actor) -> StreamingSession:
    """Either participant hangs up: the call is charged exactly up to now, like any session."""
    if consultation.participant_side(actor) is None:
        raise exceptions.PermissionDenied("Only the consultation's user and vendor can stop its call.")
    with transaction.atomic():
        locked, now = _lock(consultation)
        # A call that ended by silence is stopped all the same, up to its timeout (idle, as billing decides).
        call = locked.running_call or locked.ended_call
        if call is None:
            raise Conflict({"message": "No call is running.", "code": "no_call_running"})
        session = streaming.session_stop(session=call, reason=streaming.stop_reason_for(call, actor), now=now)
        locked.updated_at = now
        locked.save(update_fields=["updated_at"])
    return session
