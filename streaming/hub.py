"""The live-cost hub: one ticker per server process for all of its /ws/streams/ sockets.

A socket's handshake reads its session once (streaming.selectors.live_session_for) and hands it to
the hub of its process, which keeps every watched session in memory. Each tick (every
STREAM_TICK_SECONDS) the hub, whatever the number of sockets:

- marks every watched session as watched in the cache: one Redis round trip (streaming/live.py);
- every REFRESH_EVERY ticks records the open sockets of their users as signs of life in one
  UPDATE (services.sessions_seen), and re-reads all of them in one query; a session whose socket
  got a `cost.charged` or `session.stopped` is re-read at the next tick, in the same one query;
- sends each socket its tick, computed once per session. The sends are spread over the period in
  SLICES groups (a session's group is its id modulo SLICES, so each socket still gets one tick a
  period, at the same phase): a tick of thousands of sockets is not one burst of writes that the
  last socket waits behind, and each group's estimate is computed when it goes out.

Its database and Redis work runs on a thread of its own, never on the thread that runs the
consumers' synchronous code (database_sync_to_async): a handshake never waits behind a tick.
The ticks go out from the event loop, which is let go every YIELD_EVERY sends so that handshakes
and other sockets' messages interleave with a tick of thousands of sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from streaming import billing, live, selectors, services
from streaming.models import SessionStatus

logger = logging.getLogger("paygo.streaming")

REFRESH_EVERY = 5  # ticks between two reads of every watched session
YIELD_EVERY = 100  # sends between two turns given back to the event loop
SLICES = 10  # groups of sessions whose ticks go out at evenly spaced moments of a period


class Watcher(Protocol):
    """A socket the hub ticks (streaming.consumers.StreamConsumer)."""

    is_payer: bool  # the session's own user: an open socket is a sign of life

    async def send_shared(self, message: dict, encoded: dict) -> None:
        """Send `message` as this socket's user may see it, encoded once per view in `encoded`."""


class Hub:
    def __init__(self) -> None:
        self.sessions: dict[int, selectors.LiveSession] = {}
        self.watchers: dict[int, set[Watcher]] = {}
        self.stale: set[int] = set()  # re-read at the next tick
        self.seen: set[int] = set()  # signs of life to record at the next tick
        self.stopping: set[int] = set()
        self.task: asyncio.Task | None = None
        self.wake = asyncio.Event()

    # --- what sockets tell the hub -------------------------------------------------------------

    def watch(self, watcher: Watcher, session: selectors.LiveSession) -> None:
        """Tick `watcher` with `session` (as its handshake just read it) from the next tick on."""
        known = self.sessions.get(session.id)
        if known is None or known.status == SessionStatus.ACTIVE:
            self.sessions[session.id] = session
        self.watchers.setdefault(session.id, set()).add(watcher)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def unwatch(self, watcher: Watcher, session_id: int) -> None:
        watchers = self.watchers.get(session_id)
        if watchers is None:
            return
        watchers.discard(watcher)
        if not watchers:
            del self.watchers[session_id]
            self.sessions.pop(session_id, None)
        if not self.watchers:
            self.wake.set()  # the ticker ends now, rather than after its sleep

    def refresh_soon(self, session_id: int) -> None:
        """A committed charge or stop: the session is re-read at the next tick."""
        if session_id in self.watchers:
            self.stale.add(session_id)

    def ended(self, session_id: int) -> None:
        """The session stopped: no tick goes out for it from now on."""
        session = self.sessions.get(session_id)
        if session is not None and session.status == SessionStatus.ACTIVE:
            # Completed or stopped: which one does not matter here, only that it no longer ticks.
            self.sessions[session_id] = replace(session, status=SessionStatus.STOPPED)

    def seen_now(self, session_id: int) -> None:
        """A message from the session's user: a sign of life, recorded at the next tick."""
        if session_id in self.watchers:
            self.seen.add(session_id)

    # --- the ticker --------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-hub")
        ticks = 0
        try:
            while self.watchers:
                began = loop.time()
                try:
                    period = settings.STREAM_TICK_SECONDS
                    await self.tick(executor, periodic=ticks % REFRESH_EVERY == 0, spread=period)
                except Exception:  # one bad tick must not end every socket's ticks
                    logger.exception("A live-cost tick failed.")
                ticks += 1
                self.wake.clear()
                delay = began + period - loop.time()
                if delay > 0 and self.watchers:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), delay)
        finally:
            # The hub's thread gives its connection back (persistent or pooled) before it goes.
            executor.submit(connections.close_all).result()
            executor.shutdown(wait=False)

    async def tick(self, executor: ThreadPoolExecutor, *, periodic: bool, spread: float = 0.0) -> None:
        """One period: the database and Redis work, then every active session's tick, its groups
        sent `spread` / SLICES seconds apart (all at once when `spread` is 0)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        active = [pk for pk in self.watchers if self._is_active(pk)]
        if periodic:
            refresh = active
            self.seen |= {pk for pk in active if any(w.is_payer for w in self.watchers.get(pk, ()))}
        else:
            refresh = [pk for pk in self.stale if pk in self.watchers]
        self.stale.difference_update(refresh)
        seen, self.seen = self.seen, set()
        step = partial(
            _tick_step,
            refresh=refresh,
            watched=[self.sessions[pk].session_id for pk in active],
            seen=seen,
            now=timezone.now(),
        )
        try:
            fresh = await loop.run_in_executor(executor, step)
        except Exception:
            logger.exception("The live-cost hub could not refresh its sessions; it ticks from what it had.")
            fresh = {}
        for pk, session in fresh.items():
            if self._is_active(pk):  # a stop it was told of is never undone by an older read
                self.sessions[pk] = session
        slices = SLICES if spread > 0 else 1
        groups: list[list[int]] = [[] for _ in range(slices)]
        for pk in active:
            groups[pk % slices].append(pk)
        for index, group in enumerate(groups):
            wait = began + index * spread / slices - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._send_ticks(group, timezone.now())

    async def _send_ticks(self, pks: list[int], now: datetime) -> None:
        sent = 0
        for pk in pks:
            session = self.sessions.get(pk)
            if session is None or session.status != SessionStatus.ACTIVE:
                continue
            # It ended by itself (silent past its idle timeout, its funds or maxCost run out), or
            # billing told it its money runs out now (stop_at: its own funds overstate what a
            # payer's sessions share): billed now, it stops there, unless a sign of life or a
            # top-up since keeps it going (billing decides).
            ends = billing.session_ends_by_itself_at(session)
            if now >= (ends if session.stop_at is None else min(ends, session.stop_at)):
                self._stop(pk, now)
                continue
            message, encoded = live.tick(session, now), {}
            for watcher in list(self.watchers.get(pk, ())):
                await watcher.send_shared(message, encoded)
                sent += 1
                if sent % YIELD_EVERY == 0:
                    await asyncio.sleep(0)

    def _is_active(self, pk: int) -> bool:
        session = self.sessions.get(pk)
        return session is not None and session.status == SessionStatus.ACTIVE

    def _stop(self, pk: int, now: datetime) -> None:
        """It was to end now: bill it at that instant rather than at the next sweep, which ends it
        unless it was topped up or heard from since (rare: on the consumers' thread, as any stop;
        its session.stopped reaches the sockets through the layer)."""
        if pk in self.stopping:
            return
        self.stopping.add(pk)

        async def stop() -> None:
            try:
                await database_sync_to_async(_stop_session)(pk, now)
            except Exception:
                logger.exception("The live-cost hub could not stop session %s whose money ran out.", pk)
            finally:
                self.stopping.discard(pk)
                self.refresh_soon(pk)

        asyncio.get_running_loop().create_task(stop())


def _tick_step(*, refresh: list[int], watched: list[str], seen: set[int], now: datetime):
    """A tick's database and Redis work, on the hub's thread: at most one query, one UPDATE and
    one Redis round trip, whatever the number of sockets."""
    close_old_connections()
    try:
        # The signs of life first: the sessions read then carry them, and their ticks end no
        # earlier than their idle timeout allows.
        if seen:
            services.sessions_seen(session_ids=seen, now=now)
        fresh = selectors.live_sessions(refresh) if refresh else {}
        live.mark_watched(watched)
        return fresh
    finally:
        close_old_connections()


def _stop_session(pk: int, now: datetime) -> None:
    """Bill it now: it stops where it ended unless it was topped up or heard from since (billing decides)."""
    with transaction.atomic():
        billing.bill_stop(session_ids=[pk], reason=None, now=now)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """The hub of the running event loop (a server process runs one)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found
