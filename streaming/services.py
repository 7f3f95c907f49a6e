"""The write paths of metered sessions: start, stop, heartbeats, metrics, usage reports."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import exceptions

from accounts.services import account_no_longer_active, users_locked_active
from marketplace.selectors import is_on_sale
from marketplace.services import service_locked_for_sale
from paygo.api.amounts import format_minor, minor_from_field
from paygo.api.errors import Conflict, PaymentRequired
from paygo.api.instants import instant
from streaming import live, pricing, selectors
from streaming.billing import bill_stop
from streaming.models import SessionKind, SessionStatus, StopReason, StreamingSession, UsageEvent
from wallets import ledger
from wallets.models import Asset, SystemAccount, TransactionKind


def _invalid(field: str, message: str, code: str = "invalid") -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [exceptions.ErrorDetail(message, code=code)]})


def unknown_service() -> exceptions.ValidationError:
    """The one refusal of a start on a service that does not exist or is off sale: the same body
    whichever, so that it tells nobody that a service exists."""
    return _invalid("service_id", "No such service.", code="unknown_service")


def first_period_cost(*, rate: int, unit: str, free_seconds: int) -> int:
    """What the first billing period can cost: held at start, so a session always starts funded."""
    if pricing.is_time_unit(unit):
        period_ms = settings.BILLING_SWEEP_SECONDS * 1000
        billable = max(0, period_ms - free_seconds * 1000)
        return pricing.period_cost(rate=rate, unit_ms=pricing.TIME_UNIT_MS[unit], period_ms=billable)
    if pricing.is_usage_unit(unit):
        return rate  # one unit of usage
    return 0


def payment_asset_of(service) -> Asset | None:
    """The asset sessions on `service` are paid in, or None while staff have deactivated its token:
    such a service takes no session, a consultation's call included."""
    return _payment_asset(service.token)


def _payment_asset(token: str) -> Asset | None:
    return Asset.objects.filter(code=token, is_active=True).first()


def session_start(
    *,
    user,
    service,
    device: dict | None = None,
    max_cost: Decimal | None = None,
    kind: str = SessionKind.STREAM,
    now: datetime | None = None,
    free_seconds: int | None = None,
    minimum_charge: int | None = None,
    price_version: int | None = None,
) -> StreamingSession:
    """Open a metered session: hold the first period (and the minimum charge), charge a
    per-session fee, or answer 402 with how much is needed.

    The session copies the service's terms as its row holds them under the start's lock (a change
    after that leaves the session alone); `price_version`, the one its user was shown, refuses the
    start (409 price_changed) when they changed since. It is billed by the service's free seconds
    and minimum charge; a consultation's call passes what its earlier calls left of them instead
    (free_seconds, minimum_charge: never more than the service's), and is billed by those.

    `max_cost`, the user's cap, is an amount of the token the locked terms name (the one the session
    is paid in), turned into its minor units only once they are known: read in the decimals of a
    copy of the terms from before a change of token, 0.01 ETH became 10^16 minor units of USDC."""
    if max_cost is not None and not isinstance(max_cost, Decimal):
        raise TypeError("max_cost is a Decimal amount of the session's token, not minor units.")
    now = now or timezone.now()
    # A service off sale (inactive, retired, its vendor's account or role gone) is unknown to the
    # user, as its page is (404): "not available" told him it exists, and whose it is.
    if not is_on_sale(service):
        raise unknown_service()
    if payment_asset_of(service) is None:
        raise _invalid("service_id", "This service is not available.", code="inactive_service")
    if service.vendor_id == user.pk:
        raise _invalid("service_id", "You cannot open a session on your own service.", code="own_service")

    session_id = uuid.uuid4()
    with transaction.atomic():  # a refusal (402) leaves no account opened for it
        # Both accounts and the service as they are now, locked against a deactivation, the
        # service's retirement or a change of its price until this commits: one that committed first
        # refuses the start (or is what it bills); one that comes after finds the session and stops
        # it (or leaves it on these terms).
        is_active = users_locked_active([user.pk, service.vendor_id])
        if not is_active.get(service.vendor_id):
            raise unknown_service()
        terms = service_locked_for_sale(service.pk, price_version=price_version)
        if terms is None:
            raise unknown_service()
        if not is_active.get(user.pk):
            raise account_no_longer_active()
        asset = _payment_asset(terms.token)  # the token the terms are in, which the copy may predate
        if asset is None:
            raise _invalid("service_id", "This service is not available.", code="inactive_service")
        # The user's cap in minor units of the session's token; 400 (maxCost) with more decimals than it has.
        cap = None if max_cost is None else minor_from_field("max_cost", max_cost, asset.decimals)
        rate, unit = terms.rate, terms.unit
        session_fee = rate if unit == "per_session" else 0
        # What a consultation's earlier calls left of the service's terms, if given: never more than them.
        free_seconds = terms.free_seconds if free_seconds is None else max(0, min(terms.free_seconds, free_seconds))
        minimum = terms.minimum_charge if minimum_charge is None else max(0, min(terms.minimum_charge, minimum_charge))
        # The rest of the minimum charge, beyond what the session fee pays of it, as billing holds it
        # (streaming_decide: the minimum less the session's cost so far).
        hold_amount = first_period_cost(rate=rate, unit=unit, free_seconds=free_seconds) + max(0, minimum - session_fee)
        if cap is not None and cap < session_fee:
            raise _invalid("max_cost", "maxCost is below this service's session fee.", code="max_cost_too_low")
        if cap is None and pricing.is_usage_unit(unit):
            # The vendor reports the usage: without the user's own cap, the one the service declares.
            cap = terms.max_session_cost
        if cap is not None:
            # Never more held than the session may ever charge, as every renewal of the hold is capped
            # (streaming_decide): held beyond maxCost, a user's money was tied up, or a start refused
            # (402) that maxCost would have kept within his funds.
            hold_amount = min(hold_amount, cap - session_fee)
        needed = hold_amount + session_fee
        budget = None if cap is None else cap - session_fee
        stop_at = _capped_before_first_sweep(rate=rate, unit=unit, free_seconds=free_seconds, budget=budget)

        payer = ledger.account_for_user(user, asset)
        payee = ledger.account_for_user(service.vendor, asset)
        revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, asset)
        locked = ledger.lock_accounts([payer.pk, payee.pk, revenue.pk])
        _, _, balance, held, _ = locked[payer.pk]
        if balance - held < needed:
            raise _short_of_funds("starting this session", needed=needed, available=balance - held, asset=asset)
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
            free_seconds=free_seconds,
            minimum_charge=minimum,
            session_fee=session_fee,
            max_cost=cap,
            max_event_quantity=terms.max_event_quantity if pricing.is_usage_unit(unit) else None,
            payer_account=payer,
            payee_account=payee,
            hold=hold,
            charged_until=now,
            stop_at=None if stop_at is None else now + stop_at,
            stop_at_reason=StopReason.MAX_COST if stop_at is not None else "",
            last_heartbeat_at=now,
            client_info=device or {},
            total_cost=session_fee,
            charge_count=1 if session_fee else 0,
        )
        entries, charges = [], []
        if session_fee:
            fee = pricing.platform_fee(session_fee, settings.PLATFORM_FEE_BPS)
            charges = [ledger.ChargeDebit(payer.pk, session_fee, session.pk, now, now, fee)]
            entries += [(payee.pk, session_fee - fee)] if session_fee - fee else []
            entries += [(revenue.pk, fee)] if fee else []
        hold_changes = [ledger.HoldChange(hold.pk, payer.pk, hold_amount)] if hold_amount else []
        if charges or hold_changes:
            ledger.post_batch(
                [
                    ledger.TxSpec(
                        kind=TransactionKind.CHARGE,
                        entries=entries,
                        charges=charges,
                        memo=f"{service.name} (session fee)"[:500] if charges else "",
                        metadata={"sessionId": str(session_id), "sessionFee": True} if charges else {},
                        hold_changes=hold_changes,
                    )
                ],
                now=now,
                locked=locked,
            )
        hold.refresh_from_db(fields=["amount"])
        transaction.on_commit(lambda: _notify_started(session), robust=True)
    return session


def _capped_before_first_sweep(*, rate: int, unit: str, free_seconds: int, budget: int | None) -> timedelta | None:
    """How long after its start a time-metered session reaches its maxCost (`budget`: what maxCost
    leaves after the session fee), when that comes before the first sweep could tell it: every
    sweep tells a session whose budget cannot cover the coming period when it will stop (stop_at,
    streaming_decide), and the start is that first telling. Told nothing, a session capped within
    its first minute ran on past its cap, shown an estimate above it, until the sweep stopped it."""
    if budget is None or not pricing.is_time_unit(unit) or rate <= 0:
        return None
    unit_ms = pricing.TIME_UNIT_MS[unit]
    if budget >= pricing.period_cost(rate=rate, unit_ms=unit_ms, period_ms=settings.BILLING_SWEEP_SECONDS * 1000):
        return None
    return timedelta(
        milliseconds=pricing.last_affordable_ms(rate=rate, unit_ms=unit_ms, free_ms=free_seconds * 1000, budget=budget)
    )


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
        bill_stop(session_ids=[session.pk], reason=reason, now=now)
    session.refresh_from_db()
    return session


def sessions_stop_of(*, user, now: datetime | None = None) -> int:
    """Stop every session (calls included) that `user` pays for or hosts, charged exactly up to
    now, as staff stop one: their account was deactivated, and a deactivated vendor must not go on
    earning, nor a deactivated payer go on paying. Returns how many were running."""
    return _stop_running(
        StreamingSession.objects.filter(models.Q(user=user) | models.Q(vendor=user)), reason=StopReason.STAFF, now=now
    )


def sessions_stop_on(*, service, reason: str, now: datetime | None = None) -> int:
    """Stop every session (calls included) on this service, charged exactly up to now, with
    `reason`: it was retired (marketplace.services.service_delete). Returns how many were running."""
    return _stop_running(StreamingSession.objects.filter(service=service), reason=reason, now=now)


def _stop_running(sessions: models.QuerySet[StreamingSession], *, reason: str, now: datetime | None) -> int:
    """Stop the running ones of these sessions in one stop (sessions, then accounts, locked in order)."""
    now = now or timezone.now()
    ids = list(sessions.filter(status=SessionStatus.ACTIVE).values_list("pk", flat=True))
    if ids:
        with transaction.atomic():
            bill_stop(session_ids=ids, reason=reason, now=now)
    return len(ids)


def stop_reason_for(session: StreamingSession, actor) -> str:
    if actor.pk == session.user_id:
        return StopReason.USER
    if actor.pk == session.vendor_id:
        return StopReason.VENDOR
    return StopReason.STAFF


def sessions_seen(*, session_ids: Sequence[int], now: datetime) -> int:
    """Signs of life (heartbeats, the user's open live socket, usage reports): each of these active
    sessions is seen at `now`, never earlier than it was. One statement for any number of
    sessions; returns how many moved. A session silent for SESSION_IDLE_SECONDS stopped when that
    timeout ran out, whoever bills it later: a sign of life after that instant does not revive it."""
    ids = list(session_ids)
    if not ids:
        return 0
    due = _running_at(now).filter(pk__in=ids, last_heartbeat_at__lt=now)
    # Their rows locked in id order, as every stop and biller takes sessions (streaming_bill): a
    # plain UPDATE locks them in the order its plan visits them (the table's, for a seq or bitmap
    # scan), and the live hub's, holding one while it waited for another, met a stop of many
    # sessions (a retirement, a deactivation) in a cycle that PostgreSQL ended as a deadlock.
    # Still one statement; no savepoint, so that a caller's transaction costs no more queries.
    with transaction.atomic(savepoint=False):
        return due.filter(pk__in=due.select_for_update(no_key=True).order_by("pk").values("pk")).update(
            last_heartbeat_at=now
        )


def _running_at(now: datetime):
    """Sessions still running at `now` (selectors.running_at)."""
    return StreamingSession.objects.filter(selectors.running_at(now))


def session_heartbeat(*, session_id: int, now: datetime | None = None) -> bool:
    """The user's heartbeat (an API call or a message on the live socket)."""
    return bool(sessions_seen(session_ids=[session_id], now=now or timezone.now()))


def session_metrics_record(*, session: StreamingSession, sample: dict, now: datetime | None = None) -> StreamingSession:
    """Keep the newest SESSION_METRICS_KEPT quality samples; counts as a heartbeat. Once committed,
    the sample goes out on the session's socket (metrics.updated)."""
    now = now or timezone.now()
    recorded = {**sample, "at": instant(now)}
    with transaction.atomic():
        locked = StreamingSession.objects.select_for_update().get(pk=session.pk)
        # Ended, or silent past its idle timeout (which ended it then, whoever stops it later).
        if not _running_at(now).filter(pk=locked.pk).exists():
            raise Conflict({"message": "This session has ended.", "code": "session_ended"})
        locked.quality_metrics = [*locked.quality_metrics, recorded][-settings.SESSION_METRICS_KEPT :]
        locked.save(update_fields=["quality_metrics", "updated_at"])
        if sessions_seen(session_ids=[locked.pk], now=now):
            locked.last_heartbeat_at = now
        # robust: the sample is recorded whether or not the channel layer takes the message.
        transaction.on_commit(partial(live.publish_metrics, locked.session_id, recorded), robust=True)
    return locked


def usage_report(
    *, session: StreamingSession, event_id: str, quantity: int, now: datetime | None = None
) -> tuple[UsageEvent, bool]:
    """Record a vendor's usage event; each event id counts once, and counts as a sign of life.
    Billed on the next sweep, and held until then: the session's hold grows to cover what its
    usage owes. A report larger than the service's largest quantity per event, one that would take
    the session's cost past its cap or past what its payer can pay (its hold and free balance:
    402), or one on a session that has ended (stopped, or silent past its idle timeout, which
    ended it then) is refused and counts nothing."""
    now = now or timezone.now()
    if not pricing.is_usage_unit(session.unit):
        raise _invalid(
            "quantity",
            f"This session is billed {session.unit.replace('_', ' ')}, not by usage.",
            code="not_usage_metered",
        )
    # A report sent again (its answer lost) is answered as counted, whatever came since (the session
    # ended): "ended" would tell the vendor that usage counted and charged was not.
    counted = UsageEvent.objects.filter(session=session, event_id=event_id).first()
    if counted is not None:
        return counted, False
    if session.max_event_quantity is not None and quantity > session.max_event_quantity:
        raise _invalid(
            "quantity",
            f"A usage report on this service carries at most {session.max_event_quantity}.",
            code="invalid",
        )
    if session.status != SessionStatus.ACTIVE:
        raise Conflict({"message": "This session has ended.", "code": "session_ended"})
    counted_sessions = _running_at(now).filter(pk=session.pk)
    if session.max_cost is not None:
        # The cap, as a quantity: checked by the counting update itself, so two racing reports
        # cannot pass it together.
        allowed = pricing.last_affordable_quantity(
            rate=session.rate,
            unit_quantity=pricing.USAGE_UNIT_QUANTITY[session.unit],
            budget=session.max_cost - session.session_fee,
        )
        counted_sessions = counted_sessions.filter(usage_quantity__lte=allowed - quantity)
    with transaction.atomic():
        try:
            with transaction.atomic():  # only the event's own insert says "counted already"
                event = UsageEvent.objects.create(session=session, event_id=event_id, quantity=quantity, created_at=now)
        except IntegrityError:
            return UsageEvent.objects.get(session=session, event_id=event_id), False
        if not counted_sessions.update(usage_quantity=F("usage_quantity") + quantity):
            _refuse_uncounted(session, now)
        _hold_what_usage_owes(session)
        sessions_seen(session_ids=[session.pk], now=now)
    return event, True


def _hold_what_usage_owes(session: StreamingSession) -> None:
    """Grow the session's hold to what its counted usage owes beyond what was charged, or refuse
    (402) when its payer cannot pay it. Locks as billing does: the session (the counting update
    above took it), then its payer's wallet. Accepted and never held, a report the wallet could not
    pay was charged only what was left at the sweep: the vendor lost the rest."""
    counted = StreamingSession.objects.values_list("usage_quantity", "metered_cost").get(pk=session.pk)
    owed = pricing.usage_due(
        rate=int(session.rate), unit_quantity=pricing.USAGE_UNIT_QUANTITY[session.unit], quantity=int(counted[0])
    ) - int(counted[1])
    locked = ledger.lock_accounts([session.payer_account_id])
    _, _, balance, held, _ = locked[session.payer_account_id]
    hold = ledger.hold_amounts([session.hold_id])[session.hold_id]
    if owed <= hold:
        return
    if owed - hold > balance - held:
        # The vendor reports: he learns that the payer cannot pay it, never how much the payer has.
        raise PaymentRequired(
            {
                "message": "Insufficient funds: the payer cannot pay the usage reported; this report is not counted.",
                "code": "insufficient_funds",
            }
        )
    grow = ledger.HoldChange(session.hold_id, session.payer_account_id, owed - hold)
    ledger.post_batch([ledger.TxSpec(kind=TransactionKind.CHARGE, entries=[], hold_changes=[grow])], locked=locked)


def _short_of_funds(what: str, *, needed: int, available: int, asset) -> PaymentRequired:
    """The 402 of a payer who lacks the money for `what`: how much it needs, how much is there."""
    need, have = format_minor(needed, asset.decimals), format_minor(available, asset.decimals)
    return PaymentRequired(
        {
            "message": f"Insufficient funds: {what} needs {need} {asset.code}; {have} is available.",
            "code": "insufficient_funds",
            "needed": need,
            "available": have,
            "token": asset.code,
        }
    )


def _refuse_uncounted(session: StreamingSession, now: datetime) -> None:
    """Why a usage report's count was refused: the session ended, or the report passes its cap."""
    if not _running_at(now).filter(pk=session.pk).exists():
        raise Conflict({"message": "This session has ended.", "code": "session_ended"})
    cap = format_minor(session.max_cost, session.asset.decimals)
    raise Conflict(
        {
            "message": f"This report would take the session past its spending cap of {cap} {session.asset.code}; "
            "it is not counted.",
            "code": "usage_over_cap",
        }
    )
