"""/ws/streams/<sessionId>/: the live cost of a session, for its user, its vendor and staff.

Every second a `cost.tick` estimate, sent by the hub of the server process (streaming/hub.py: one
ticker for all of its sockets); after each sweep the authoritative `cost.charged`; then
`balance.low`, `session.stopped` and `metrics.updated` as they happen (streaming/live.py publishes
them on commit). The handshake reads the session in one query. The socket of the session's own
user, while open, is a sign of life (the hub records it), and so are its messages.

The vendor watches the session's own figures but not the payer's money: a vendor's socket gets
only the keys SESSION_VIEW names for each message (never the balance, or the runway and stop
instant that give it away), and no `balance.low`.
"""

from __future__ import annotations

import json

from django.utils import timezone

from paygo.api.instants import instant
from paygo.ws import AuthenticatedConsumer, handshake_read
from streaming import live, selectors
from streaming.hub import hub
from streaming.models import SessionStatus

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
    session: selectors.LiveSession | None = None
    sees_payer_funds = False
    is_payer = False
    watching = False

    async def authorize(self, user) -> bool:
        session_id = self.scope["url_route"]["kwargs"]["session_id"]
        self.session, self.sees_payer_funds = await handshake_read(_authorize)(user, session_id)
        return self.session is not None

    async def joined(self, user) -> None:
        self.is_payer = user.pk == self.session.user_id
        await self.join(live.group_name(self.session.session_id))
        if self.session.status == SessionStatus.ACTIVE:
            hub().watch(self, self.session)
            self.watching = True

    async def disconnect(self, code: int) -> None:
        if self.watching:
            hub().unwatch(self, self.session.id)
        await super().disconnect(code)

    async def receive_json(self, content, **kwargs) -> None:
        if self.is_payer and self.watching:
            hub().seen_now(self.session.id)
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "at": instant(timezone.now())})

    async def stream_event(self, event: dict) -> None:
        message = event["message"]
        await self.send_to_viewer(message)
        if not self.watching:
            return
        if message.get("type") == "session.stopped":
            hub().ended(self.session.id)
        elif message.get("type") == "cost.charged":
            hub().refresh_soon(self.session.id)

    def viewed(self, message: dict) -> dict | None:
        """Every message about the session goes out cut to what this socket's user may see (None:
        nothing of it)."""
        if self.sees_payer_funds:
            return message
        shown = SESSION_VIEW.get(message.get("type"))
        return None if shown is None else {key: value for key, value in message.items() if key in shown}

    async def send_to_viewer(self, message: dict) -> None:
        viewed = self.viewed(message)
        if viewed is not None:
            await self.send_json(viewed)

    async def send_shared(self, message: dict, encoded: dict[bool, str | None]) -> None:
        """A message many sockets get (the hub's tick): cut and encoded once per view, in `encoded`."""
        if self.sees_payer_funds not in encoded:
            viewed = self.viewed(message)
            encoded[self.sees_payer_funds] = None if viewed is None else json.dumps(viewed)
        text = encoded[self.sees_payer_funds]
        if text is not None:
            await self.send(text_data=text)


def _authorize(user, session_id) -> tuple[selectors.LiveSession | None, bool]:
    """The session `user` may watch (one query), and whether they may see its payer's money."""
    session = selectors.live_session_for(user, session_id)
    return session, bool(session and selectors.sees_payer_funds(user, session))
