"""The live-cost hub: one ticker per process for all of its sockets (issue 16).

What a socket costs the server must not grow with the number of sockets: the database and Redis
round trips of a tick are counted here (never timed), with one socket and with several; and a
socket's handshake must not wait behind the ticker's database work.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from contextlib import contextmanager

import psycopg
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection, connections
from django.db.backends.utils import CursorWrapper
from django.test import override_settings
from redis.connection import AbstractConnection

from accounts.services import token_pair_for, user_create
from conftest import money_db
from paygo.asgi import application
from streaming import services
from streaming.tests.conftest import USDC
from wallets.tests.conftest import fund_wallet

pytestmark = [money_db(), pytest.mark.timeout(90)]

_emails = itertools.count(1)


@contextmanager
def round_trips():
    """Counts every SQL statement this process sends (any thread, any connection) and every
    round trip of the synchronous Redis client (the cache's; a pipeline is one)."""
    counts = Counter()
    execute, execute_many = CursorWrapper._execute, CursorWrapper._executemany
    send = AbstractConnection.send_packed_command

    def counted(kind, real):
        def wrapper(*args, **kwargs):
            counts[kind] += 1
            return real(*args, **kwargs)

        return wrapper

    CursorWrapper._execute = counted("sql", execute)
    CursorWrapper._executemany = counted("sql", execute_many)
    AbstractConnection.send_packed_command = counted("redis", send)
    try:
        yield counts
    finally:
        CursorWrapper._execute, CursorWrapper._executemany = execute, execute_many
        AbstractConnection.send_packed_command = send


@database_sync_to_async
def _watcher(make_service) -> tuple[str, str]:
    """A new user with an active session: (their access token, the session's id)."""
    user = user_create(email=f"watcher-{next(_emails)}@example.com", password=None, name="Watcher", role="user")
    fund_wallet(user, 10 * USDC)
    session = services.session_start(user=user, service=make_service("per_minute", rate=USDC))
    return token_pair_for(user).access, str(session.session_id)


async def _open(token: str, session_id: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"/ws/streams/{session_id}/?token={token}")
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def _next_tick(communicator) -> dict:
    while True:
        message = await communicator.receive_json_from(timeout=10)
        if message["type"] == "cost.tick":
            return message


async def _round_trips_over(communicator, ticks: int) -> int:
    """Database and Redis round trips while `communicator` gets `ticks` more ticks."""
    await _next_tick(communicator)
    with round_trips() as counts:
        for _ in range(ticks):
            await _next_tick(communicator)
    return counts["sql"] + counts["redis"]


@override_settings(STREAM_TICK_SECONDS=0.05)
async def test_the_round_trips_of_a_tick_do_not_grow_with_the_sockets(make_service):
    """Issue 16: each socket ran its own ticker, wrote its Redis key every tick and re-read its
    session and account every fifth: the server's round trips grew with every socket opened."""
    ticks = 20
    first = await _open(*await _watcher(make_service))
    alone = await _round_trips_over(first, ticks)

    others = [await _open(*await _watcher(make_service)) for _ in range(4)]
    for other in others:
        await _next_tick(other)  # every handshake is done before the count starts
    with_five = await _round_trips_over(first, ticks)

    # A tick's boundary may fall either side of the window: a few round trips either way.
    assert with_five <= alone + 4, (alone, with_five)
    for communicator in (first, *others):
        await communicator.disconnect()


async def _lock_accounts(conninfo: dict) -> psycopg.AsyncConnection:
    """Another client holds every wallet account locked: reads of them wait."""
    locker = await psycopg.AsyncConnection.connect(**conninfo)
    await locker.execute("LOCK TABLE wallets_account IN ACCESS EXCLUSIVE MODE")
    return locker


async def _until_a_query_waits_on_a_lock(locker: psycopg.AsyncConnection) -> None:
    for _ in range(400):
        # The locker's transaction would otherwise see one snapshot of the activity throughout.
        await locker.execute("SELECT pg_stat_clear_snapshot()")
        cursor = await locker.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if (await cursor.fetchone())[0]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no query ever waited on the lock")


@override_settings(STREAM_TICK_SECONDS=0.05)
async def test_a_handshake_does_not_wait_behind_the_tickers_database_work(make_service):
    """Issue 16: 500 sockets opening at once all failed, each handshake waiting for the database
    behind every other socket's refresh. Here the ticker's refresh is held up by a lock on the
    wallet accounts: a new socket still gets its handshake, and its ticks once the lock is gone."""
    first = await _open(*await _watcher(make_service))
    await _next_tick(first)
    second_watcher = await _watcher(make_service)
    params = connection.get_connection_params()
    conninfo = {key: params[key] for key in ("dbname", "user", "host", "port", "password") if params.get(key)}
    locker = await _lock_accounts(conninfo)
    try:
        await _until_a_query_waits_on_a_lock(locker)  # the ticker's refresh reads the payer's account

        second = await _open(*second_watcher)
    finally:
        await locker.rollback()
        await locker.close()

    tick = await _next_tick(second)
    assert tick["sessionId"] == second_watcher[1]
    for communicator in (first, second):
        await communicator.disconnect()


class _Socket:
    """A socket as the hub sees it: whether it is the payer's, and what it was sent."""

    def __init__(self, is_payer: bool) -> None:
        self.is_payer = is_payer
        self.sent: list[dict] = []

    async def send_shared(self, message: dict, encoded: dict) -> None:
        self.sent.append(message)


@database_sync_to_async
def _live_sessions(make_service, n: int):
    from streaming.selectors import live_sessions

    ids = []
    for _ in range(n):
        user = user_create(email=f"watcher-{next(_emails)}@example.com", password=None, name="Watcher", role="user")
        fund_wallet(user, 10 * USDC)
        ids.append(services.session_start(user=user, service=make_service("per_minute", rate=USDC)).pk)
    return list(live_sessions(ids).values())


@pytest.mark.parametrize("sockets", [1, 12])
async def test_a_tick_is_one_redis_round_trip_and_a_refresh_two_queries_whatever_the_sockets(make_service, sockets):
    """Each of `sockets` sessions watched by its payer and by its vendor."""
    from concurrent.futures import ThreadPoolExecutor

    from streaming.hub import Hub

    hub = Hub()
    watched = {}
    for session in await _live_sessions(make_service, sockets):
        watched[session.id] = (_Socket(True), _Socket(False))
        hub.sessions[session.id] = session
        hub.watchers[session.id] = set(watched[session.id])
    executor = ThreadPoolExecutor(max_workers=1)
    try:
        await hub.tick(executor, periodic=False)  # its thread connects to Redis (a few commands, once)
        with round_trips() as refresh:
            await hub.tick(executor, periodic=True)
        with round_trips() as plain:
            await hub.tick(executor, periodic=False)
        hub.refresh_soon(next(iter(watched)))
        with round_trips() as charged:
            await hub.tick(executor, periodic=False)
    finally:
        executor.submit(connections.close_all).result()
        executor.shutdown()

    assert (refresh["sql"], refresh["redis"]) == (2, 1)  # the sessions read, their users' signs of life
    assert (plain["sql"], plain["redis"]) == (0, 1)
    assert (charged["sql"], charged["redis"]) == (1, 1)
    for payer, vendor in watched.values():
        assert [m["type"] for m in payer.sent] == [m["type"] for m in vendor.sent] == ["cost.tick"] * 4


async def test_a_periods_ticks_go_out_in_groups_spread_over_it(make_service):
    """2,000 sockets ticked in one burst: the last waited behind every other's write (p99 364 ms,
    issue 16). Spread, each group's tick is computed and sent at its own moment of the period,
    every session still gets one tick a period, and a session's group does not change."""
    from concurrent.futures import ThreadPoolExecutor

    from streaming.hub import SLICES, Hub

    hub = Hub()
    sockets = {}
    for session in await _live_sessions(make_service, SLICES + 2):
        sockets[session.id] = _Socket(True)
        hub.sessions[session.id] = session
        hub.watchers[session.id] = {sockets[session.id]}
    executor = ThreadPoolExecutor(max_workers=1)
    try:
        for _ in range(2):
            await hub.tick(executor, periodic=False, spread=0.1)
    finally:
        executor.submit(connections.close_all).result()
        executor.shutdown()

    for socket in sockets.values():
        assert [m["type"] for m in socket.sent] == ["cost.tick"] * 2
    for period in range(2):
        moments = {}
        for pk, socket in sockets.items():
            moments.setdefault(pk % SLICES, set()).add(socket.sent[period]["at"])
        assert all(len(at) == 1 for at in moments.values())  # a group's sessions share a moment
        ordered = [next(iter(moments[group])) for group in sorted(moments)]
        assert ordered == sorted(ordered) and len(set(ordered)) == SLICES  # one after the other
    assert max(s.sent[0]["at"] for s in sockets.values()) < min(s.sent[1]["at"] for s in sockets.values())
