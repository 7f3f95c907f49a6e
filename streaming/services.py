"""The write paths of metered sessions: start, stop, heartbeats, metrics, usage reports."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import exceptions

from paygo.api.amounts import format_minor
from paygo.api.errors import Conflict, PaymentRequired
from streaming import live, pricing
from streaming.billing import ROW_FIELDS, Row, bill
from streaming.models import SessionCharge, SessionKind, SessionStatus, StopReason, StreamingSession, UsageEvent
from wallets import ledger
from wallets.models import SystemAccount, TransactionKind


def _invalid(field: str, message: str, code: str = "invalid") -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [exceptions.ErrorDetail(message, code=code)]})


def first_period_cost(*, rate: int, unit: str, free_seconds: int) -> int:
    """What the first billing period can cost: held at start, so a session always starts funded."""
    if pricing.is_time_unit(unit):
        period_ms = settings.BILLING_SWEEP_SECONDS * 1000
        billable = max(0, period_ms - free_seconds * 1000)
        return pricing.period_cost(rate=rate, unit_ms=pricing.TIME_UNIT_MS[unit], period_ms=billable)
    if pricing.is_usage_unit(unit):
        return rate  # one unit of usage
    return 0


def session_start(
    *,
    user,
    service,
    device: dict | None = None,
    max_cost: int | None = None,
    kind: str = SessionKind.STREAM,
    now: datetime | None = None,
) -> StreamingSession:
    """Open a metered session: hold the first period (and the minimum charge), charge a
    per-session fee, or answer 402 with how much is needed."""
    now = now or timezone.now()
    if not service.is_active or getattr(service, "deleted_at", None) or not service.vendor.is_active:
        raise _invalid("service_id", "This service is not available.", code="inactive_service")
    if service.vendor_id == user.pk:
        raise _invalid("service_id", "You cannot open a session on your own service.", code="own_service")
    asset = ledger.asset_get(service.token)
    rate, unit = int(service.rate), service.unit
    session_fee = rate if unit == "per_session" else 0
    minimum = int(service.minimum_charge or 0)
    hold_amount = first_period_cost(rate=rate, unit=unit, free_seconds=service.free_seconds) + minimum
    needed = hold_amount + session_fee
    if max_cost is not None and max_cost < session_fee:
        raise _invalid("max_cost", "maxCost is below this service's session fee.", code="max_cost_too_low")

    payer = ledger.account_for_user(user, asset)
    payee = ledger.account_for_user(service.vendor, asset)
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, asset)
    session_id = uuid.uuid4()
    with transaction.atomic():
        locked = ledger.lock_accounts([payer.pk, payee.pk, revenue.pk])
        _, _, balance, held, _ = locked[payer.pk]
        if balance - held < needed:
            need, have = format_minor(needed, asset.decimals), format_minor(balance - held, asset.decimals)
            raise PaymentRequired(
                {
                    "message": f"Insufficient funds: starting this session needs {need} {asset.code}; "
                    f"{have} is available.",
                    "code": "insufficient_funds",
                    "needed": format_minor(needed, asset.decimals),
                    "available": format_minor(balance - held, asset.decimals),
                    "token": asset.code,
                }
            )
        hold = ledger.hold_open(account=payer, reference=f"session:{session_id}")
        session = StreamingSession.objects.create(
            session_id=session_id,
            user=user,
            vendor=service.vendor,
            service=service,
            kind=kind,
            start_time=now,
            asset=asset,
            rate=rate,
            unit=unit,
            free_seconds=service.free_seconds,
            minimum_charge=minimum,
            session_fee=session_fee,
            max_cost=max_cost,
            payer_account=payer,
            payee_account=payee,
            hold=hold,
            charged_until=now,
            last_heartbeat_at=now,
            client_info=device or {},
            total_cost=session_fee,
            charge_count=1 if session_fee else 0,
        )
        entries = []
        if session_fee:
            fee = pricing.platform_fee(session_fee, settings.PLATFORM_FEE_BPS)
            entries = [(payer.pk, -session_fee)]
            entries += [(payee.pk, session_fee - fee)] if session_fee - fee else []
            entries += [(revenue.pk, fee)] if fee else []
        hold_changes = [ledger.HoldChange(hold.pk, payer.pk, hold_amount)] if hold_amount else []
        if entries or hold_changes:
            (tx_id,) = ledger.post_batch(
                [
                    ledger.TxSpec(
                        kind=TransactionKind.CHARGE,
                        entries=entries,
                        reference=f"charge:{session_id}:1" if entries else None,
                        memo=f"{service.name} (session fee)"[:500],
                        metadata={
                            "sessionId": str(session_id),
                            "serviceId": service.pk,
                            "serviceName": service.name,
                            "vendorId": service.vendor_id,
                            "userId": user.pk,
                            "kind": kind,
                            "sessionFee": True,
                        },
                        hold_changes=hold_changes,
                    )
                ],
                now=now,
                locked=locked,
            )
            if tx_id:
                SessionCharge.objects.create(
                    session=session, ledger_transaction_id=tx_id, amount=session_fee, metered_until=now, created_at=now
                )
        hold.refresh_from_db(fields=["amount"])
        transaction.on_commit(lambda: _notify_started(session))
    return session


def _notify_started(session: StreamingSession) -> None:
    from notifications import notify

    data = {"sessionId": str(session.session_id), "serviceId": session.service_id}
    notify(session.user_id, "session", "Session started", f"Your session on {session.service.name} started.", data)
    notify(
        session.vendor_id,
        "session",
        "New session",
        f"{session.user.name} started a session on {session.service.name}.",
        data,
    )


def session_stop(*, session: StreamingSession, reason: str, now: datetime | None = None) -> StreamingSession:
    """Charge exactly up to now (or to when its money ran out) and release the hold. Stopping a
    session that has ended changes and charges nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        values = list(
            StreamingSession.objects.select_for_update(of=("self",))
            .filter(pk=session.pk, status=SessionStatus.ACTIVE)
            .values(*ROW_FIELDS)
        )
        if values:
            row = Row.from_values(values[0])
            bill([row], now=max(now, row.charged_until), requested_stops={row.id: reason})
    session.refresh_from_db()
    return session


def stop_reason_for(session: StreamingSession, actor) -> str:
    if actor.pk == session.user_id:
        return StopReason.USER
    if actor.pk == session.vendor_id:
        return StopReason.VENDOR
    return StopReason.STAFF


def session_heartbeat(*, session_id: int, now: datetime | None = None) -> bool:
    """A sign of life (a metrics report or a WebSocket message): billing runs up to it."""
    now = now or timezone.now()
    return bool(
        StreamingSession.objects.filter(pk=session_id, status=SessionStatus.ACTIVE, last_heartbeat_at__lt=now).update(
            last_heartbeat_at=now
        )
    )


def sessions_seen(*, session_ids, now: datetime) -> int:
    """Signs of life for many sessions at once (their users' open live sockets): one UPDATE that
    moves each active session's last heartbeat forward to `now`, never back. Returns how many moved."""
    ids = list(session_ids)
    if not ids:
        return 0
    return StreamingSession.objects.filter(pk__in=ids, status=SessionStatus.ACTIVE, last_heartbeat_at__lt=now).update(
        last_heartbeat_at=now
    )


def session_metrics_record(*, session: StreamingSession, sample: dict, now: datetime | None = None) -> StreamingSession:
    """Keep the newest SESSION_METRICS_KEPT quality samples; counts as a heartbeat. Once committed,
    the sample goes out on the session's socket (metrics.updated)."""
    now = now or timezone.now()
    recorded = {**sample, "at": now.isoformat()}
    with transaction.atomic():
        locked = StreamingSession.objects.select_for_update().get(pk=session.pk)
        if locked.status != SessionStatus.ACTIVE:
            raise Conflict({"message": "This session has ended.", "code": "session_ended"})
        locked.quality_metrics = [*locked.quality_metrics, recorded][-settings.SESSION_METRICS_KEPT :]
        locked.last_heartbeat_at = max(locked.last_heartbeat_at, now)
        locked.save(update_fields=["quality_metrics", "last_heartbeat_at", "updated_at"])
        # robust: the sample is recorded whether or not the channel layer takes the message.
        transaction.on_commit(partial(live.publish_metrics, locked.session_id, recorded), robust=True)
    return locked


def usage_report(*, session: StreamingSession, event_id: str, quantity: int) -> tuple[UsageEvent, bool]:
    """Record a vendor's usage event; each event id counts once. Billed on the next sweep."""
    if not pricing.is_usage_unit(session.unit):
        raise _invalid(
            "quantity",
            f"This session is billed {session.unit.replace('_', ' ')}, not by usage.",
            code="not_usage_metered",
        )
    if session.status != SessionStatus.ACTIVE:
        raise Conflict({"message": "This session has ended.", "code": "session_ended"})
    try:
        with transaction.atomic():
            event = UsageEvent.objects.create(session=session, event_id=event_id, quantity=quantity)
            counted = StreamingSession.objects.filter(pk=session.pk, status=SessionStatus.ACTIVE).update(
                usage_quantity=F("usage_quantity") + quantity
            )
            if not counted:
                raise Conflict({"message": "This session has ended.", "code": "session_ended"})
    except IntegrityError:
        return UsageEvent.objects.get(session=session, event_id=event_id), False
    return event, True
