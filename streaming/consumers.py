"""/ws/streams/<sessionId>/: the live cost of a session, for its user, its vendor and staff.

Every second a `cost.tick` estimate; after each sweep the authoritative `cost.charged`; then
`balance.low`, `session.stopped` and `metrics.updated` as they happen (streaming/live.py publishes
them on commit).
The session's user's open socket and messages count as heartbeats (services.sessions_seen).

The vendor watches the session's own figures but not the payer's money: a vendor's socket gets
only the keys SESSION_VIEW names for each message (never the balance, or the runway and stop
instant that give it away), and no `balance.low`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from paygo.api.amounts import format_minor
from paygo.ws import AuthenticatedConsumer
from streaming import live, pricing, selectors, services
from streaming.models import SessionStatus, StopReason, StreamingSession
from wallets.models import Account

HEARTBEAT_EVERY = timedelta(seconds=5)  # socket messages refresh the heartbeat at most this often
REFRESH_EVERY = 5  # ticks between two reads of the session's state

# What a watcher who may not see the payer's wallet (the vendor) is told: the session's own
# figures, named per message. Anything else (the balance, the runway, when the money runs out,
# balance.low, and any key or message added later) stays with the payer and staff.
SESSION_VIEW = {
    "cost.tick": frozenset({"type", "sessionId", "elapsedSeconds", "estimatedCost", "charged", "at"}),
    "cost.charged": frozenset({"type", "sessionId", "charged", "amount", "chargedUntil", "at"}),
    "session.stopped": frozenset({"type", "sessionId", "reason", "totalCost", "endTime", "at"}),
    "metrics.updated": frozenset({"type", "sessionId", "metrics", "at"}),  # the session's quality, no money
}


class StreamConsumer(AuthenticatedConsumer):
    session: StreamingSession | None = None
    ticker: asyncio.Task | None = None
    sees_payer_funds = False

    async def authorize(self, user) -> bool:
        session_id = self.scope["url_route"]["kwargs"]["session_id"]
        self.session = await database_sync_to_async(_visible_session)(user, session_id)
        return self.session is not None

    async def joined(self, user) -> None:
        self.user = user
        # It may read the staff member's permissions: a query, so off the event loop.
        self.sees_payer_funds = await database_sync_to_async(selectors.sees_payer_funds)(user, self.session)
        self.last_heartbeat = timezone.now() - HEARTBEAT_EVERY
        self.funds = await database_sync_to_async(_funds)(self.session)
        await self.join(live.group_name(self.session.session_id))
        if self.session.status == SessionStatus.ACTIVE:
            self.ticker = asyncio.create_task(self._tick_forever())

    async def disconnect(self, code: int) -> None:
        if self.ticker:
            self.ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.ticker
        await super().disconnect(code)

    async def receive_json(self, content, **kwargs) -> None:
        now = timezone.now()
        if self.session and self.user.pk == self.session.user_id and now - self.last_heartbeat >= HEARTBEAT_EVERY:
            self.last_heartbeat = now
            await database_sync_to_async(services.session_heartbeat)(session_id=self.session.pk, now=now)
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "at": now.isoformat()})

    async def stream_event(self, event: dict) -> None:
        message = event["message"]
        await self.send_to_viewer(message)
        if message.get("type") in ("cost.charged", "session.stopped"):
            await self._refresh()
        if message.get("type") == "session.stopped" and self.ticker:
            self.ticker.cancel()

    async def send_to_viewer(self, message: dict) -> None:
        """Every message about the session goes out here, cut to what this socket's user may see."""
        if not self.sees_payer_funds:
            shown = SESSION_VIEW.get(message.get("type"))
            if shown is None:
                return
            message = {key: value for key, value in message.items() if key in shown}
        await self.send_json(message)

    async def _refresh(self) -> None:
        self.session = await database_sync_to_async(StreamingSession.objects.select_related("asset", "hold").get)(
            pk=self.session.pk
        )
        self.funds = await database_sync_to_async(_funds)(self.session)

    async def _tick_forever(self) -> None:
        ticks = 0
        while self.session.status == SessionStatus.ACTIVE:
            if ticks and ticks % REFRESH_EVERY == 0:
                await self._refresh()
                if self.user.pk == self.session.user_id:
                    # The user's open socket is a sign of life, whether or not they send anything.
                    await database_sync_to_async(services.session_heartbeat)(session_id=self.session.pk)
            now = timezone.now()
            if self.session.stop_at and now >= self.session.stop_at:
                # Its money ran out: end it at that instant rather than at the next sweep.
                await database_sync_to_async(services.session_stop)(
                    session=self.session, reason=StopReason.INSUFFICIENT_FUNDS, now=now
                )
                await self._refresh()
                break
            await live.mark_watched(self.session.session_id)
            await self.send_to_viewer(tick(self.session, self.funds, now))
            ticks += 1
            await asyncio.sleep(settings.STREAM_TICK_SECONDS)


def _visible_session(user, session_id) -> StreamingSession | None:
    try:
        session = selectors.session_get_for(user, session_id)
    except Exception:  # NotFound, a malformed id: the socket is refused the same way
        return None
    return StreamingSession.objects.select_related("asset", "hold").get(pk=session.pk)


def _funds(session: StreamingSession) -> int:
    """What the session may still spend: its hold plus the wallet's free balance."""
    account = Account.objects.get(pk=session.payer_account_id)
    return session.hold.amount + account.available


def tick(session: StreamingSession, funds: int, now) -> dict:
    """The per-second estimate: what the session will have cost if billed now."""
    decimals = session.asset.decimals
    elapsed = max(0, int((now - session.start_time).total_seconds()))
    pending = 0
    runway = None
    if pricing.is_time_unit(session.unit):
        unit_ms = pricing.TIME_UNIT_MS[session.unit]
        due = pricing.time_due(
            rate=session.rate,
            unit_ms=unit_ms,
            elapsed_ms=pricing.elapsed_ms(session.start_time, now),
            free_ms=session.free_seconds * 1000,
        )
        pending = max(0, due - session.metered_cost)
        if session.rate:
            runway = max(0, pricing.runway_ms(rate=session.rate, unit_ms=unit_ms, funds=funds - pending) // 1000)
    return {
        "type": "cost.tick",
        "sessionId": str(session.session_id),
        "elapsedSeconds": elapsed,
        "estimatedCost": format_minor(session.total_cost + pending, decimals),
        "charged": format_minor(session.total_cost, decimals),
        "balance": format_minor(max(0, funds - pending), decimals),
        "runwaySeconds": runway,
        "at": now.isoformat(),
    }
