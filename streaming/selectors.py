"""Reads of metered sessions, permission-checked: someone else's session is a 404."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import F, Q, QuerySet
from rest_framework.exceptions import NotFound, PermissionDenied

from paygo.api.permissions import staff_has
from streaming.billing import idle_timeout
from streaming.models import SessionStatus, StreamingSession
from wallets.selectors import entry_sums_mismatched

# What staff need for someone else's session, as the admin asks: to see it (the API, its socket),
# to stop it, and to see what it tells of its payer's wallet.
VIEW_SESSION = "streaming.view_streamingsession"
CHANGE_SESSION = "streaming.change_streamingsession"
PAYER_FUNDS = (VIEW_SESSION, "wallets.view_account")


def _sessions() -> QuerySet[StreamingSession]:
    # Its hold and payer's wallet: a running session's funds tell when it ends (usage_seconds). The
    # wallets are read beside the rows, not joined: a seventh table took PostgreSQL 4.5-5 ms to plan
    # a page of a heavy user's sessions against 1.8 ms (as dashboards.selectors.sessions_with_money).
    return StreamingSession.objects.select_related("service", "asset", "user", "vendor", "hold").prefetch_related(
        "payer_account"
    )


def visible_to(user) -> QuerySet[StreamingSession]:
    """Sessions `user` may see: their own, those on their services, all of them for staff who may
    view sessions."""
    sessions = _sessions()
    if staff_has(user, VIEW_SESSION):
        return sessions
    return sessions.filter(Q(user=user) | Q(vendor=user))


def session_get_for(user, session_id) -> StreamingSession:
    try:
        key = uuid.UUID(str(session_id))
    except ValueError:
        raise NotFound("No such session.") from None
    session = visible_to(user).filter(session_id=key).first()
    if session is None:
        raise NotFound("No such session.")
    return session


def session_get_to_stop(user, session_id) -> StreamingSession:
    """A session `user` may stop: as its user, its vendor, or staff who may change sessions. Staff
    who may only view it get a 403; anyone else a 404."""
    session = session_get_for(user, session_id)
    if user.pk not in (session.user_id, session.vendor_id) and not staff_has(user, CHANGE_SESSION):
        raise PermissionDenied(f"Only its user, its vendor and staff with the {CHANGE_SESSION} permission can stop it.")
    return session


def running_at(now: datetime, *, through: str = "") -> Q:
    """A session still running at `now`: active, and not silent for longer than SESSION_IDLE_SECONDS
    (one silent longer ended when its timeout ran out, whoever stops and bills it later; a sign of
    life at the very instant the timeout runs out is in time). On sessions, or on rows that reach a
    session `through` a relation ("session__")."""
    return Q(
        **{
            f"{through}status": SessionStatus.ACTIVE,
            f"{through}last_heartbeat_at__gte": now - idle_timeout(),
        }
    )


def sees_payer_funds(user, session: StreamingSession) -> bool:
    """Whether `user` may see what a session tells of its payer's wallet (the balance, the runway,
    when the money runs out, the hold): the payer and staff who may view sessions and wallets, not
    the vendor."""
    return bool(user and (user.pk == session.user_id or staff_has(user, *PAYER_FUNDS)))


@dataclass(frozen=True)
class LiveSession:
    """What the live-cost socket needs of a session to tick it (streaming/hub.py keeps one per
    watched session in memory): its figures, its payer's funds, and who its user is; with what
    bounds a charge (its minimum charge, its maxCost, the usage reported so far), so that its tick
    (streaming/live.py) tells what a stop would charge without a query."""

    id: int
    session_id: str
    user_id: int
    status: str
    start_time: datetime
    unit: str
    rate: int
    free_seconds: int
    minimum_charge: int
    max_cost: int | None
    metered_cost: int
    total_cost: int
    usage_quantity: int
    decimals: int
    stop_at: datetime | None
    last_heartbeat_at: datetime  # with its funds, when it ends by itself (billing.session_ends_by_itself_at)
    funds: int  # what it may still spend: its hold plus the wallet's free balance


_LIVE_FIELDS = (
    "id",
    "session_id",
    "user_id",
    "status",
    "start_time",
    "unit",
    "rate",
    "free_seconds",
    "minimum_charge",
    "max_cost",
    "metered_cost",
    "total_cost",
    "usage_quantity",
    "stop_at",
    "last_heartbeat_at",
)


def _live(sessions: QuerySet[StreamingSession]) -> list[LiveSession]:
    rows = sessions.values(
        *_LIVE_FIELDS,
        decimals=F("asset__decimals"),
        funds=F("hold__amount") + F("payer_account__balance") - F("payer_account__held"),
    )
    # The balance columns are NUMERIC: their sum comes back a Decimal, of whole minor units.
    return [LiveSession(**{**row, "session_id": str(row["session_id"]), "funds": int(row["funds"])}) for row in rows]


def live_session_for(user, session_id) -> LiveSession | None:
    """A session `user` may watch, with what its socket shows, in one query (staff's permissions
    aside); None for someone else's, an unknown or a malformed id alike."""
    try:
        key = uuid.UUID(str(session_id))
    except ValueError:
        return None
    found = _live(visible_to(user).filter(session_id=key))
    return found[0] if found else None


def live_sessions(ids) -> dict[int, LiveSession]:
    """The live state of these sessions (already authorised by their sockets), in one query."""
    return {live.id: live for live in _live(StreamingSession.objects.filter(pk__in=list(ids)))}


def sessions_of(user, *, status: str | None = None) -> QuerySet[StreamingSession]:
    """The caller's own sessions (as the user who opened them), newest first."""
    sessions = _sessions().filter(user=user)
    if status:
        sessions = sessions.filter(status=status)
    return sessions.order_by("-start_time", "-id")


def active_sessions_for(user) -> QuerySet[StreamingSession]:
    sessions = _sessions().filter(status=SessionStatus.ACTIVE)
    if staff_has(user, VIEW_SESSION):
        return sessions.order_by("-start_time", "-id")
    if user.role == "vendor":
        return sessions.filter(vendor=user).order_by("-start_time", "-id")
    return sessions.filter(user=user).order_by("-start_time", "-id")


def charges_health() -> dict:
    """Every session's charges agree with the ledger and with the session: a charge (a ledger
    entry that carries a session) names a session that exists, debits that session's payer, and
    the charges of each session add up to its total cost. It reads every charge: the scheduled
    check is dashboards.health, which reads each one once."""
    found = {**charge_entries_health(), **session_totals_health()}
    return {"healthy": not any(found.values()), **found}


def charge_entries_health(*, after: int = 0, through: int | None = None) -> dict:
    """The checks of the charges themselves: each names a session that exists and debits its payer.
    With `through`, only the entries with ids in (after, through] (entries are append-only, and a
    session's payer never changes: what was checked stays true)."""
    charges, params = "e.session_id IS NOT NULL", []
    if through is not None:
        charges, params = f"{charges} AND e.id > %s AND e.id <= %s", [after, through]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FILTER (WHERE s.id IS NULL), "  # noqa: S608 (conditions of ours; values are parameters)
            "COUNT(*) FILTER (WHERE s.id IS NOT NULL AND e.account_id <> s.payer_account_id) "
            f"FROM wallets_entry e LEFT JOIN streaming_streamingsession s ON s.id = e.session_id WHERE {charges}",
            params,
        )
        dangling, off_payer = cursor.fetchone()
    return {"dangling_charges": dangling, "charges_off_payer": off_payer}


def session_totals_health(*, sums: str | None = None, through: int = 0) -> dict:
    """Each session's total cost equals its charges. With `sums`, a table of (session_id, total)
    that holds each session's charges up to entry id `through`, a total is compared with that plus
    the charges after it (one statement, one snapshot: a total grows with its charge)."""
    totals_off = entry_sums_mismatched(
        table="streaming_streamingsession",
        cached="total_cost",
        key="session_id",
        total="-SUM(amount)",
        where="session_id IS NOT NULL",
        sums=sums,
        through=through,
    )
    return {"sessions_whose_total_is_not_their_charges": totals_off}
