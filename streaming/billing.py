"""Charging sessions: the one write path for a session's money, shared by the sweep and by stop.

What is due, what to hold, when a session stops, and the writes (ONE ledger transaction per
batch: a debit per charged session, which is its charge record; a credit per vendor account; a
fee credit per asset; the holds; the sessions) are decided and done in PostgreSQL by
streaming_bill(), whose text is whole in streaming/sql/sweep_batch.sql (its arithmetic in
streaming/sql/metering.sql, checked against streaming/pricing.py by a property test). Python keeps
the orchestration: which batch, the settings, and publishing and notifying what happened once it
is committed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from django.conf import settings
from django.db import transaction

from paygo.db import execute_bound
from streaming import pricing

ALERT_THRESHOLDS_MS = (300_000, 60_000)  # runway under 5 minutes, then under 1 minute (sweep_batch.sql)


class Billed(NamedTuple):
    """What billing did to one session (a row streaming_bill() returns)."""

    id: int
    session_id: str
    user_id: int
    vendor_id: int
    service_name: str
    asset_id: int
    total_cost_before: int
    charge: int
    until: datetime
    new_hold: int
    # What its payer has left after this billing: the wallet's free balance and the holds of the
    # payer's sessions billed with it (for a payer's one session: its funds less the charge).
    remaining: int
    stop_reason: str | None
    stop_time: datetime | None
    stop_at: datetime | None
    runway_ms: int | None  # how long `remaining` lasts at the rate of the payer's running sessions billed with it
    alert_crossed: bool

    @property
    def stops(self) -> bool:
        return bool(self.stop_reason)

    @property
    def total_cost(self) -> int:
        return self.total_cost_before + self.charge


_BILL = (
    "SELECT * FROM streaming_bill(%(now)b::timestamptz, %(ids)b::bigint[], %(reason)b::varchar, %(after)b::bigint, "
    "%(limit)b::integer, %(shard)b::integer, %(shards)b::integer, "
    "%(period_ms)b::bigint, %(idle_ms)b::bigint, %(fee_bps)b::integer)"
)
_MONEY = (6, 7, 9, 10, 14)  # NUMERIC columns: whole numbers of minor units


def bill_batch(*, now: datetime, after_id: int, shard: int, shards: int, limit: int) -> list[Billed]:
    """The sweep's next batch: claim up to `limit` active sessions after `after_id` (skipping rows
    others hold), bill them up to `now`. Call inside transaction.atomic()."""
    return _bill(now=now, ids=None, reason=None, after=after_id, limit=limit, shard=shard, shards=shards)


def unbilled(*, now: datetime, shard: int, shards: int) -> list[int]:
    """The active sessions of this shard, started by `now`, that nobody has billed up to it, in id
    order: what a sweep's walk skipped (rows held by anyone, signs of life included). The sweep
    bills them with bill_stop(reason=None), waiting for their rows."""
    rows = execute_bound(
        "SELECT * FROM streaming_unbilled(%(now)b::timestamptz, %(shard)b::integer, %(shards)b::integer)",
        {"now": now, "shard": shard, "shards": shards},
    )
    return [row[0] for row in rows]


def bill_stop(*, session_ids: list[int], reason: str | None, now: datetime) -> list[Billed]:
    """Stop these sessions (waiting for their row locks), billed up to `now` or to when their money
    ran out. Sessions that have ended are left as they are. Call inside transaction.atomic().

    With no reason, bill them up to `now` as a sweep would, stopping only those whose money (or
    maxCost) or silence ended them: the live hub's call at the instant a session was told its money
    would run out, which goes on if it was topped up since."""
    return _bill(now=now, ids=session_ids, reason=reason, after=0, limit=len(session_ids), shard=0, shards=1)


def idle_timeout() -> timedelta:
    """How long a session may go without a sign of life (SESSION_IDLE_SECONDS): silent longer, it
    ended when this ran out after its last one, whoever bills it later (billing is given it)."""
    return timedelta(seconds=settings.SESSION_IDLE_SECONDS)


class RunningSession(Protocol):
    """What a running session's own end is decided from: a selectors.LiveSession, or a
    StreamingSession (its `funds` read from its hold and its payer's wallet)."""

    start_time: datetime
    last_heartbeat_at: datetime
    unit: str
    rate: int
    free_seconds: int
    metered_cost: int
    total_cost: int
    max_cost: int | None
    funds: int  # what it may still spend: its hold plus its wallet's free balance


def spendable(session: RunningSession) -> int:
    """What a running session may still spend beyond what it was charged: its funds, within what its
    maxCost leaves."""
    if session.max_cost is None:
        return session.funds
    return min(session.funds, max(0, session.max_cost - session.total_cost))


def session_ends_by_itself_at(session: RunningSession) -> datetime:
    """The instant a running session ends with nobody stopping it, as billing decides it
    (streaming_decide, which a sweep or stop applies whenever it comes): when its idle timeout
    runs out after its last sign of life (idle_at), or before that, for a time-metered session,
    when its funds or maxCost run out (the last instant they pay for, which it is charged up to).
    Its use and its cost go no further, though it reads active until billing records the stop.

    Its funds are its own here: a payer's sessions billed together share the wallet's free
    balance, so with two running this may come later than billing's."""
    ends = session.last_heartbeat_at + idle_timeout()
    unit_ms = pricing.TIME_UNIT_MS.get(session.unit)
    if unit_ms is None or session.rate <= 0:
        return ends  # usage is bounded per report, a session fee at the start: only silence ends it
    last_ms = pricing.last_affordable_ms(
        rate=session.rate,
        unit_ms=unit_ms,
        free_ms=session.free_seconds * 1000,
        budget=session.metered_cost + spendable(session),
    )
    if last_ms >= pricing.elapsed_ms(session.start_time, ends):
        return ends  # (and a wealthy wallet's instant could lie past what a datetime holds)
    return session.start_time + timedelta(milliseconds=last_ms)


def _bill(**params) -> list[Billed]:
    params.update(
        period_ms=settings.BILLING_SWEEP_SECONDS * 1000,
        idle_ms=idle_timeout() // timedelta(milliseconds=1),
        fee_bps=settings.PLATFORM_FEE_BPS,
    )
    billed = [Billed(*_whole(row)) for row in execute_bound(_BILL, params, binary=True)]
    if billed:
        transaction.on_commit(lambda: _after_commit(billed), robust=True)
    return billed


def _whole(row: tuple) -> list:
    values = list(row)
    for i in _MONEY:
        if values[i] is not None:
            values[i] = int(values[i])
    return values


def _after_commit(billed: list[Billed]) -> None:
    from streaming import live

    live.publish_outcomes(billed)
