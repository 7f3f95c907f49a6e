"""Charging sessions: the one write path for a session's money, shared by the sweep and by stop.

`bill(rows, ...)` takes sessions whose rows the caller locked, decides for each what is due up to
now (or up to its stop), what to hold for the next period, whether it must stop and when, and
writes all of it in a constant number of statements: ONE ledger transaction for the batch (a
debit per charged session, which is its charge record; a credit per vendor account; a fee credit
per asset) and one update of the sessions. What happened is published and notified on commit.

Rules (../shared/DESIGN.md, Metering):
- due(t) = floor(rate * billable_ms(t) / unit_ms); a charge takes due(until) - metered_cost.
- A session is billed until it stops. One with no sign of life (services.sessions_seen) for
  SESSION_IDLE_SECONDS is stopped as idle at the instant that timeout ran out, billed up to it:
  silence costs at most the timeout.
- The funds a session may use are its hold plus the wallet's free balance; when they (or
  maxCost) cannot cover the coming period, the instant they run out is computed and the session
  stops there, charged exactly up to it, never below zero.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from paygo.db import execute_bound
from streaming import pricing
from streaming.models import SessionStatus, StopReason
from wallets import ledger
from wallets.models import HoldStatus, SystemAccount, TransactionKind

ALERT_THRESHOLDS_MS = (300_000, 60_000)
METERING_MEMO = "Metered sessions"  # runway under 5 minutes, then under 1 minute

# What the sweep and stop read of a session, in one query (joined with its hold and service).
ROW_FIELDS = (
    "id",
    "session_id",
    "user_id",
    "vendor_id",
    "service_id",
    "service__name",
    "asset_id",
    "unit",
    "rate",
    "free_seconds",
    "minimum_charge",
    "max_cost",
    "start_time",
    "charged_until",
    "metered_cost",
    "total_cost",
    "charge_count",
    "usage_quantity",
    "stop_at",
    "stop_at_reason",
    "last_heartbeat_at",
    "alert_level",
    "payer_account_id",
    "payee_account_id",
    "hold_id",
    "hold__amount",
    "kind",
)


@dataclass
class Row:
    id: int
    session_id: str  # the UUID as text: it is only ever written into references, keys and messages
    user_id: int
    vendor_id: int
    service_id: int
    service_name: str
    asset_id: int
    unit: str
    rate: int
    free_seconds: int
    minimum_charge: int
    max_cost: int | None
    start_time: datetime
    charged_until: datetime
    metered_cost: int
    total_cost: int
    charge_count: int
    usage_quantity: int
    stop_at: datetime | None
    stop_at_reason: str
    last_heartbeat_at: datetime
    alert_level: int
    payer_account_id: int
    payee_account_id: int
    hold_id: int
    hold_amount: int
    kind: str

    @classmethod
    def from_values(cls, values: dict) -> Row:
        row = cls.from_tuple(tuple(values[name] for name in ROW_FIELDS))
        row.session_id = str(row.session_id)
        return row

    @classmethod
    def from_tuple(cls, values: tuple) -> Row:
        row = cls(*values)
        for name in _MONEY_FIELDS:  # NUMERIC columns read as Decimal from raw SQL
            value = getattr(row, name)
            if value is not None and not isinstance(value, int):
                setattr(row, name, int(value))
        return row


_MONEY_FIELDS = ("rate", "minimum_charge", "max_cost", "metered_cost", "total_cost", "usage_quantity", "hold_amount")


@dataclass
class Outcome:
    """What billing decided for one session."""

    row: Row
    until: datetime
    charge: int = 0
    metered_charge: int = 0
    new_hold: int = 0
    stop_reason: str = ""
    stop_time: datetime | None = None
    stop_at: datetime | None = None
    stop_at_reason: str = ""
    alert_level: int = 0
    alert_crossed: bool = False
    runway_ms: int | None = None
    remaining: int = 0

    @property
    def stops(self) -> bool:
        return bool(self.stop_reason)


def _ms(delta: timedelta) -> int:
    return int(delta / timedelta(milliseconds=1))


def _due(row: Row, until: datetime) -> int:
    if pricing.is_time_unit(row.unit):
        return pricing.time_due(
            rate=row.rate,
            unit_ms=pricing.TIME_UNIT_MS[row.unit],
            elapsed_ms=_ms(until - row.start_time),
            free_ms=row.free_seconds * 1000,
        )
    if pricing.is_usage_unit(row.unit):
        return pricing.usage_due(
            rate=row.rate, unit_quantity=pricing.USAGE_UNIT_QUANTITY[row.unit], quantity=row.usage_quantity
        )
    return 0  # per_session: the fee was charged at start


def _affordable_until(row: Row, budget: int) -> datetime:
    """The instant a time-metered session's metered cost reaches `budget`."""
    unit_ms = pricing.TIME_UNIT_MS[row.unit]
    elapsed = pricing.last_affordable_ms(rate=row.rate, unit_ms=unit_ms, free_ms=row.free_seconds * 1000, budget=budget)
    return row.start_time + timedelta(milliseconds=elapsed)


def next_period_need(row: Row, period_ms: int) -> int:
    """What to hold for the coming period: its whole cost for time units, one unit for usage."""
    if pricing.is_time_unit(row.unit):
        return pricing.period_cost(rate=row.rate, unit_ms=pricing.TIME_UNIT_MS[row.unit], period_ms=period_ms)
    if pricing.is_usage_unit(row.unit):
        return row.rate
    return 0


def decide(
    row: Row,
    free: int,
    *,
    now: datetime,
    requested_stop: str | None,
    period_ms: int,
    idle_ms: int,
) -> Outcome:
    """Charge, hold and stop for one session, given the wallet's free (unheld) balance."""
    stop_reason, stop_time = "", None
    if requested_stop:
        stop_reason, stop_time = requested_stop, now
    if row.stop_at and row.stop_at <= (stop_time or now):
        # Its money (or maxCost) ran out before: it ends there, whoever asks later.
        stop_reason, stop_time = row.stop_at_reason or StopReason.INSUFFICIENT_FUNDS, row.stop_at
    idle_at = row.last_heartbeat_at + timedelta(milliseconds=idle_ms)
    if not stop_reason and idle_at <= now:
        # Silent for the whole timeout: it stops the moment the timeout ran out, billed up to there.
        stop_reason, stop_time = StopReason.IDLE, idle_at
    if stop_time is None:
        until = max(row.charged_until, now)
    else:
        until = max(row.charged_until, stop_time)
        stop_time = until

    due = _due(row, until)
    metered = max(0, due - row.metered_cost)
    funds = row.hold_amount + free
    cap = None if row.max_cost is None else max(0, row.max_cost - row.total_cost)
    limit = funds if cap is None else min(funds, cap)
    if metered > limit:
        reason = StopReason.MAX_COST if cap is not None and cap <= funds else StopReason.INSUFFICIENT_FUNDS
        if pricing.is_time_unit(row.unit):
            ran_out = min(max(_affordable_until(row, row.metered_cost + limit), row.charged_until), until)
            metered = _due(row, ran_out) - row.metered_cost
            until = ran_out
        else:
            metered = limit
        if not stop_time or until <= stop_time:
            stop_reason, stop_time = reason, until

    outcome = Outcome(row=row, until=until, metered_charge=metered, charge=metered)
    total_after = row.total_cost + metered
    if stop_reason:
        # The minimum charge is due at the end, out of what is there and within maxCost.
        shortfall = row.minimum_charge - total_after
        if shortfall > 0:
            room = funds - metered if cap is None else min(funds - metered, cap - metered)
            outcome.charge += max(0, min(shortfall, room))
        outcome.stop_reason, outcome.stop_time = stop_reason, stop_time
        outcome.new_hold = 0
        outcome.remaining = funds - outcome.charge
        return outcome

    remaining = funds - metered
    need = next_period_need(row, period_ms)
    cap_left = None if row.max_cost is None else row.max_cost - total_after
    outcome.remaining = remaining
    outcome.new_hold = min(need, remaining) if cap_left is None else min(need, remaining, cap_left)
    if pricing.is_time_unit(row.unit):
        budget, reason = remaining, StopReason.INSUFFICIENT_FUNDS
        if cap_left is not None and cap_left <= remaining:
            budget, reason = cap_left, StopReason.MAX_COST
        if budget < need:
            # The coming period cannot be covered in full: stop when the money runs out, and keep
            # all of it for this session until then.
            outcome.stop_at = _affordable_until(row, row.metered_cost + metered + budget)
            outcome.stop_at_reason = reason
            outcome.new_hold = budget
        unit_ms = pricing.TIME_UNIT_MS[row.unit]
        outcome.runway_ms = pricing.runway_ms(rate=row.rate, unit_ms=unit_ms, funds=budget) if row.rate else None
        if outcome.runway_ms is not None:
            level = sum(1 for threshold in ALERT_THRESHOLDS_MS if outcome.runway_ms < threshold)
            outcome.alert_level = level
            outcome.alert_crossed = level > row.alert_level
    return outcome


def bill(
    rows: Sequence[Row],
    *,
    now: datetime,
    requested_stops: dict[int, str] | None = None,
) -> list[Outcome]:
    """Bill locked sessions: charges, holds, stops, in a constant number of statements.

    Call inside transaction.atomic() with the sessions' rows locked (FOR UPDATE).
    """
    if not rows:
        return []
    requested_stops = requested_stops or {}
    period_ms = settings.BILLING_SWEEP_SECONDS * 1000
    idle_ms = settings.SESSION_IDLE_SECONDS * 1000
    fee_bps = settings.PLATFORM_FEE_BPS
    revenue_ids = {
        asset_id: ledger.system_account(SystemAccount.PLATFORM_REVENUE, asset_id).pk
        for asset_id in {row.asset_id for row in rows}
    }
    locked = ledger.lock_accounts(
        [row.payer_account_id for row in rows] + [row.payee_account_id for row in rows] + list(revenue_ids.values())
    )
    free = {aid: balance - held for aid, (_, _, balance, held, _) in locked.items()}
    # The sessions' rows are locked, but a locking read that had to wait for another biller (a
    # sweep, a stop) gets the locked row as that one left it and the joined hold as it was
    # before: its amount is read again here, now that no one else can change it.
    holds = ledger.hold_amounts(row.hold_id for row in rows)
    for row in rows:
        row.hold_amount = holds[row.hold_id]

    outcomes = []
    for row in rows:
        outcome = decide(
            row,
            free[row.payer_account_id],
            now=now,
            requested_stop=requested_stops.get(row.id),
            period_ms=period_ms,
            idle_ms=idle_ms,
        )
        free[row.payer_account_id] += row.hold_amount - outcome.charge - outcome.new_hold
        outcomes.append(outcome)

    spec = _batch_spec(outcomes, revenue_ids, fee_bps)
    if spec:
        ledger.post_batch([spec], now=now, locked=locked)
    _write_sessions(outcomes, now)
    transaction.on_commit(lambda: _after_commit(outcomes))
    return outcomes


def _batch_spec(outcomes: list[Outcome], revenue_ids: dict[int, int], fee_bps: int) -> ledger.TxSpec | None:
    """The batch's ONE ledger transaction: a debit per charged session (its charge record, with
    the interval it bills and the fee), a credit per vendor account, a fee credit per asset, and
    every session's hold change."""
    charges, hold_changes = [], []
    credits: dict[int, int] = defaultdict(int)
    for outcome in outcomes:
        row = outcome.row
        hold_delta = outcome.new_hold - row.hold_amount
        close = HoldStatus.RELEASED if outcome.stops else None
        if hold_delta or close:
            hold_changes.append(ledger.HoldChange(row.hold_id, row.payer_account_id, hold_delta, close))
        if outcome.charge:
            fee = outcome.charge * fee_bps // 10_000  # pricing.platform_fee, inlined on the sweep's hot path
            charges.append(
                ledger.ChargeDebit(row.payer_account_id, outcome.charge, row.id, row.charged_until, outcome.until, fee)
            )
            credits[row.payee_account_id] += outcome.charge - fee
            credits[revenue_ids[row.asset_id]] += fee
    if not charges and not hold_changes:
        return None
    return ledger.TxSpec(
        kind=TransactionKind.CHARGE,
        entries=[(account_id, amount) for account_id, amount in sorted(credits.items()) if amount],
        charges=charges,
        # Shared by everyone in the batch, so it names no one: each charge carries its own session.
        memo=METERING_MEMO,
        metadata_json="{}",
        hold_changes=hold_changes,
    )


_WRITE = """
UPDATE streaming_streamingsession AS s SET
    charged_until = v.charged_until, metered_cost = s.metered_cost + v.metered,
    total_cost = s.total_cost + v.charge, charge_count = s.charge_count + (v.charge > 0)::int,
    stop_at = v.stop_at, stop_at_reason = v.stop_at_reason, alert_level = v.alert_level, updated_at = %(now)b,
    status = COALESCE(v.status, s.status), stop_reason = COALESCE(v.stop_reason, s.stop_reason),
    end_time = COALESCE(v.end_time, s.end_time),
    total_usage_seconds = COALESCE(v.usage_seconds, s.total_usage_seconds)
FROM (
    SELECT (r->>0)::bigint AS id, (r->>1)::timestamptz AS charged_until, (r->>2)::numeric AS metered,
           (r->>3)::numeric AS charge, (r->>4)::timestamptz AS stop_at,
           r->>5 AS stop_at_reason, (r->>6)::int AS alert_level, r->>7 AS status, r->>8 AS stop_reason,
           (r->>9)::timestamptz AS end_time, (r->>10)::int AS usage_seconds
    FROM jsonb_array_elements(%(rows)s::jsonb) AS r
) AS v
WHERE s.id = v.id
"""


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _final_status(outcome: Outcome) -> str:
    return SessionStatus.COMPLETED if outcome.stop_reason == StopReason.USER else SessionStatus.STOPPED


def _usage_seconds(outcome: Outcome) -> int:
    return int((outcome.stop_time - outcome.row.start_time).total_seconds())


def _write_sessions(outcomes: list[Outcome], now: datetime) -> None:
    """The sessions' new state, in one statement."""
    # One jsonb document, a row per session (json.dumps encodes it in C; psycopg's arrays
    # would be dumped element by element in Python).
    rows = [
        [
            o.row.id,
            o.until.isoformat(),
            o.metered_charge,
            o.charge,
            _iso(o.stop_at),
            o.stop_at_reason,
            o.alert_level,
            _final_status(o) if o.stops else None,
            o.stop_reason or None,
            _iso(o.stop_time) if o.stops else None,
            _usage_seconds(o) if o.stops else None,
        ]
        for o in outcomes
    ]
    execute_bound(_WRITE, {"now": now, "rows": json.dumps(rows)})


def _after_commit(outcomes: list[Outcome]) -> None:
    from streaming import live

    live.publish_outcomes(outcomes)
