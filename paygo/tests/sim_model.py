"""The simulation's model of PayGo's money (paygo/tests/test_simulation.py): plain Python, no Django.

It keeps what every account should hold, what every hold should reserve, and every session's
billing state, derived from the rules of ../shared/DESIGN.md (Money, Metering) written out again
here in integers: cumulative due(t) = floor(rate * billable_ms / unit_ms), a fee of
floor(charge * fee_bps / 10000), holds renewed for the coming period, stops at the exact instant
their rule says. The simulation compares the real database with it after every step.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

TIME_UNIT_MS = {"per_second": 1_000, "per_minute": 60_000, "per_hour": 3_600_000}
USAGE_UNIT_QUANTITY = {"per_gb": 1_000_000_000, "per_request": 1, "per_transaction": 1}

# The stops that are the user's side, which owe the rest of the session's minimum charge.
USERS_SIDE = frozenset({"user", "idle", "insufficient_funds", "max_cost"})

# System accounts, as the model names them (asset, name).
REVENUE, CUSTODY, IN_FLIGHT, LIQUIDITY = "platform_revenue", "custody", "withdrawals_in_flight", "swap_liquidity"


def ms_between(since: datetime, until: datetime) -> int:
    return int((until - since) / timedelta(milliseconds=1))


def floor_div(a: int, b: int) -> int:
    return a // b


@dataclass
class Session:
    """A session as the model expects it."""

    pk: int
    user: str
    vendor: str
    asset: str
    rate: int
    unit: str
    free_ms: int
    minimum: int
    session_fee: int
    max_cost: int | None
    max_event_quantity: int | None
    start: datetime
    charged_until: datetime
    last_seen: datetime
    hold: int
    metered: int = 0
    total: int = 0
    usage: int = 0
    stop_at: datetime | None = None
    stop_at_reason: str = ""
    status: str = "active"
    stop_reason: str = ""
    end: datetime | None = None
    charges: int = 0  # how many charge records

    @property
    def active(self) -> bool:
        return self.status == "active"

    def due(self, until: datetime) -> int:
        """What the session has cost in all for its metering by `until` (fees and minimums aside)."""
        if self.unit in TIME_UNIT_MS:
            billable = max(0, ms_between(self.start, until) - self.free_ms)
            return self.rate * billable // TIME_UNIT_MS[self.unit]
        if self.unit in USAGE_UNIT_QUANTITY:
            return self.rate * self.usage // USAGE_UNIT_QUANTITY[self.unit]
        return 0

    def last_affordable(self, budget: int) -> datetime:
        """The last instant whose due() is at most `budget` (time units)."""
        unit_ms = TIME_UNIT_MS[self.unit]
        return self.start + timedelta(milliseconds=self.free_ms + ((budget + 1) * unit_ms - 1) // self.rate)


@dataclass
class Outcome:
    """What billing did to one session."""

    charge: int
    fee: int
    stopped: bool


@dataclass
class Model:
    fee_bps: int
    period_ms: int
    idle_ms: int
    # (owner, asset) -> [balance, held]; owners are user keys, or system account names.
    accounts: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    sessions: dict[int, Session] = field(default_factory=dict)
    # Money paid on chain into PayGo's wallets and not credited yet (a deposit whose credit failed).
    uncredited: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    paid: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # each user's charges, in all
    earned: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # each vendor's share, in all

    # --- Plain ledger moves -------------------------------------------------------------------------

    def move(self, debit: tuple[str, str], credit: tuple[str, str], amount: int) -> None:
        assert debit[1] == credit[1], "a move stays in one asset"
        self.accounts[debit][0] -= amount
        self.accounts[credit][0] += amount

    def available(self, owner: str, asset: str) -> int:
        balance, held = self.accounts[(owner, asset)]
        return balance - held

    def deposit(self, user: str, asset: str, amount: int) -> None:
        self.move((CUSTODY, asset), (user, asset), amount)

    def transfer(self, sender: str, recipient: str, asset: str, amount: int) -> None:
        self.move((sender, asset), (recipient, asset), amount)

    def withdraw(self, user: str, asset: str, amount: int) -> None:
        self.move((user, asset), (IN_FLIGHT, asset), amount)

    def withdrawal_sent(self, asset: str, amount: int) -> None:
        self.move((IN_FLIGHT, asset), (CUSTODY, asset), amount)

    def withdrawal_refunded(self, user: str, asset: str, amount: int) -> None:
        self.move((IN_FLIGHT, asset), (user, asset), amount)

    def liquidity(self, asset: str) -> int:
        """What PayGo holds of `asset` to sell in swaps (never below zero)."""
        return self.accounts[(LIQUIDITY, asset)][0]

    def liquidity_put_in(self, asset: str, amount: int) -> None:
        """Staff's adjustment: platform revenue into the swap liquidity."""
        self.move((REVENUE, asset), (LIQUIDITY, asset), amount)

    def swap(self, user: str, from_asset: str, to_asset: str, amount: int, received: int) -> None:
        self.move((user, from_asset), (LIQUIDITY, from_asset), amount)
        self.move((LIQUIDITY, to_asset), (user, to_asset), received)

    def custody(self, asset: str) -> int:
        """What PayGo's wallets on chain should hold: everything deposited and not sent back out."""
        return -self.accounts[(CUSTODY, asset)][0]

    # --- Sessions -----------------------------------------------------------------------------------

    def first_period_cost(self, rate: int, unit: str, free_ms: int) -> int:
        if unit in TIME_UNIT_MS:
            billable = max(0, self.period_ms - free_ms)
            return -(-rate * billable // TIME_UNIT_MS[unit])
        if unit in USAGE_UNIT_QUANTITY:
            return rate
        return 0

    def start_needs(self, *, rate: int, unit: str, free_ms: int, minimum: int, max_cost: int | None) -> tuple[int, int]:
        """(what is held at start, never more than maxCost lets the session charge; the session fee
        charged at start)."""
        fee = rate if unit == "per_session" else 0
        hold = self.first_period_cost(rate, unit, free_ms) + max(0, minimum - fee)  # the fee pays towards it
        return (hold if max_cost is None else max(0, min(hold, max_cost - fee))), fee

    def session_start(self, session: Session) -> None:
        payer = (session.user, session.asset)
        self.accounts[payer][1] += session.hold
        if session.max_cost is not None and session.unit in TIME_UNIT_MS:
            # A cap that cannot cover a whole period is told at the start, as a sweep tells it.
            budget = session.max_cost - session.session_fee
            if budget < -(-session.rate * self.period_ms // TIME_UNIT_MS[session.unit]):
                session.stop_at, session.stop_at_reason = session.last_affordable(budget), "max_cost"
        if session.session_fee:
            self._charge(session, session.session_fee)
            session.total += session.session_fee
            session.charges += 1
        self.sessions[session.pk] = session

    def running(self, session: Session, now: datetime) -> bool:
        """Active and its idle timeout not run out (at the very instant it runs out, still running):
        one silent longer ended then, sweep or not."""
        return session.active and now <= session.last_seen + timedelta(milliseconds=self.idle_ms)

    def seen(self, pk: int, now: datetime) -> None:
        """A sign of life: it counts while the session runs (one after its idle timeout ran out does
        not revive it)."""
        session = self.sessions[pk]
        if self.running(session, now) and session.last_seen < now:
            session.last_seen = now

    def usage_count(self, session: Session, quantity: int) -> bool:
        """Count a usage report if its payer can pay what the session's usage then owes beyond what
        was charged (its hold and free balance), growing its hold to that; False: refused (402)."""
        payer = self.accounts[(session.user, session.asset)]
        owed = session.rate * (session.usage + quantity) // USAGE_UNIT_QUANTITY[session.unit] - session.metered
        if owed > session.hold and owed - session.hold > payer[0] - payer[1]:
            return False
        session.usage += quantity
        if owed > session.hold:
            payer[1] += owed - session.hold
            session.hold = owed
        return True

    def usage_cap(self, session: Session) -> int | None:
        """The largest usage quantity the session's cap allows."""
        if session.max_cost is None:
            return None
        budget = session.max_cost - session.session_fee
        return ((budget + 1) * USAGE_UNIT_QUANTITY[session.unit] - 1) // session.rate

    def _charge(self, session: Session, amount: int) -> int:
        fee = amount * self.fee_bps // 10_000
        self.accounts[(session.user, session.asset)][0] -= amount
        self.accounts[(session.vendor, session.asset)][0] += amount - fee
        self.accounts[(REVENUE, session.asset)][0] += fee
        self.paid[session.user] += amount
        self.earned[session.vendor] += amount - fee
        return fee

    def bill(self, pk: int, now: datetime, stop_reason: str | None = None) -> Outcome:
        """Bill one session up to `now` (a sweep), or stop it there (`stop_reason`): DESIGN.md's
        Metering, in the order its rules apply."""
        s = self.sessions[pk]
        payer = self.accounts[(s.user, s.asset)]
        free = payer[0] - payer[1]
        if stop_reason:
            now = max(now, s.charged_until)
        # When it ends, if it does: at the earliest of the instant its money (or maxCost) ran out,
        # the instant its idle timeout ran out and now if a stop is asked for; an end that came
        # before is where it ended, whoever asks later. On a tie: money, then idle, then the stop.
        # The money's instant holds while it has no more than its hold to spend (not topped up).
        idle_at = s.last_seen + timedelta(milliseconds=self.idle_ms)
        funds = s.hold + free
        money_stop = s.stop_at_reason == "max_cost" or funds <= s.hold
        if s.stop_at is not None and s.stop_at <= min(now, idle_at) and money_stop:
            reason, stop_time = s.stop_at_reason or "insufficient_funds", s.stop_at
        elif idle_at <= now:
            reason, stop_time = "idle", idle_at
        else:
            reason, stop_time = (stop_reason, now) if stop_reason else (None, None)
        until = max(s.charged_until, stop_time or now)
        if stop_time is not None:
            stop_time = until
        metered = max(0, s.due(until) - s.metered)
        cap = None if s.max_cost is None else max(0, s.max_cost - s.total)
        limit = funds if cap is None else min(funds, cap)
        if metered > limit:
            ran_out_reason = "max_cost" if cap is not None and cap <= funds else "insufficient_funds"
            if s.unit in TIME_UNIT_MS:
                ran_out = min(max(s.last_affordable(s.metered + limit), s.charged_until), until)
                metered = s.due(ran_out) - s.metered
                until = ran_out
            else:
                metered = limit
            if stop_time is None or until <= stop_time:
                reason, stop_time = ran_out_reason, until
        charge = metered
        s.stop_at, s.stop_at_reason = None, ""
        if reason:
            # The minimum charge is what a user owes for ending a session early: collected when the
            # stop is the user's side, not when the vendor or staff end it (the time used only).
            shortfall = s.minimum - (s.total + metered) if reason in USERS_SIDE else 0
            if shortfall > 0:
                room = funds - metered if cap is None else min(funds - metered, cap - metered)
                charge += max(0, min(shortfall, room))
            new_hold = 0
        else:
            remaining = funds - metered
            need = (
                -(-s.rate * self.period_ms // TIME_UNIT_MS[s.unit])
                if s.unit in TIME_UNIT_MS
                else s.rate
                if s.unit in USAGE_UNIT_QUANTITY
                else 0
            )
            cap_left = None if s.max_cost is None else s.max_cost - (s.total + metered)
            keep = need + max(0, s.minimum - (s.total + metered))  # and the rest of its minimum charge
            new_hold = min(keep, remaining) if cap_left is None else min(keep, remaining, cap_left)
            if s.unit in TIME_UNIT_MS:
                budget, why = remaining, "insufficient_funds"
                if cap_left is not None and cap_left <= remaining:
                    budget, why = cap_left, "max_cost"
                if budget < need:
                    s.stop_at, s.stop_at_reason = s.last_affordable(s.metered + metered + budget), why
                    new_hold = budget
        fee = self._charge(s, charge) if charge else 0
        if charge:
            s.charges += 1
        payer[1] += new_hold - s.hold
        s.hold = new_hold
        s.charged_until = until
        s.metered += metered
        s.total += charge
        if reason:
            s.status = "completed" if reason == "user" else "stopped"
            s.stop_reason, s.end = reason, stop_time
        return Outcome(charge, fee, bool(reason))

    def sweep(self, now: datetime, only: list[int] | None = None) -> list[Outcome]:
        """Bill every active session started by `now` (or the first `only` of them), in id order."""
        pks = sorted(pk for pk, s in self.sessions.items() if s.active and s.start <= now)
        if only is not None:
            pks = [pk for pk in pks if pk in only]
        return [self.bill(pk, now) for pk in pks]

    def sweep_depends_on_order(self, now: datetime) -> bool:
        """Whether two sweeps at once could bill differently from one sweep in id order: only when a
        payer with two sessions or more might not cover all of their charges and next holds (each
        session then takes what is left in the order the sweeps reach it)."""
        sessions: dict[tuple[str, str], list[Session]] = defaultdict(list)
        for s in self.sessions.values():
            if s.active and s.start <= now:
                sessions[(s.user, s.asset)].append(s)
        for payer, running in sessions.items():
            if len(running) < 2:
                continue
            if any(s.stop_at is not None or s.minimum for s in running):
                return True
            wanted = sum(s.due(now) - s.metered + self.first_period_cost(s.rate, s.unit, 0) + s.rate for s in running)
            if self.available(*payer) + self._held(payer) < wanted or any(
                s.max_cost is not None and s.max_cost - s.total < s.due(now) - s.metered + 2 * s.rate for s in running
            ):
                return True
        return False

    def _held(self, payer: tuple[str, str]) -> int:
        return self.accounts[payer][1]
