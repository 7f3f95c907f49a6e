"""Bounded connections: each process draws its database connections from Django's pool, sized from
the environment; when the pool is exhausted a request waits DATABASE_POOL_TIMEOUT for a connection
and is then answered 503 with Retry-After (in the API's error format under /api/), never a 500."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from psycopg_pool import ConnectionPool

from conftest import client_for, database_url, money_db
from wallets.tests.conftest import balance_of


@pytest.fixture
def pool_of_one() -> Iterator[ConnectionPool]:
    """This process's pool replaced by one of a single connection, waited for 0.2 s at most."""
    options = connection.settings_dict["OPTIONS"]
    saved = options["pool"]
    connection.close()
    connection.close_pool()
    options["pool"] = {"min_size": 1, "max_size": 1, "timeout": 0.2}
    try:
        yield connection.pool
    finally:
        connection.close()
        connection.close_pool()
        options["pool"] = saved


@contextmanager
def held_by_another_thread() -> Iterator[None]:
    """The pool's one connection, checked out by another thread until the block ends."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            connection.ensure_connection()
            taken.set()
            release.wait(30)
        finally:
            connection.close()  # back to the pool

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(10), "the other thread never got the connection"
    try:
        yield
    finally:
        release.set()
        thread.join(10)
        assert not thread.is_alive(), "the other thread never gave the connection back"


@money_db
def test_an_api_request_that_finds_the_pool_exhausted_is_a_503_with_retry_after(alice, pool_of_one):
    client = client_for(alice)
    connection.close()  # the test's own connection goes back: the other thread takes the only one
    with held_by_another_thread():
        response = client.get("/api/v1/wallet/balance")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json() == {
        "message": "The service is busy: no database connection was free. Nothing was done; try again shortly.",
        "statusCode": 503,
        "code": "database_busy",
    }
    # Once the connection is back, the same request is served.
    assert client.get("/api/v1/wallet/balance").status_code == 200


@money_db
def test_a_page_that_finds_the_pool_exhausted_is_a_503_too(olga, pool_of_one):
    client = Client(raise_request_exception=False)
    client.force_login(olga)
    connection.close()
    with held_by_another_thread():
        response = client.get("/admin/")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert b"try again" in response.content


@money_db
def test_a_request_refused_for_the_pool_writes_nothing(alice, bob, fund, pool_of_one):
    fund(alice, 10_000_000)
    client = client_for(alice)
    connection.close()
    with held_by_another_thread():
        response = client.post(
            "/api/v1/wallet/transfer",
            {"recipientId": bob.id, "amount": "1"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="pool-busy-1",
        )
    assert response.status_code == 503
    assert balance_of(alice) == 10_000_000
    assert balance_of(bob) == 0


def test_the_pool_is_sized_from_the_environment():
    shown = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "--verbosity=0",
            "-c",
            "from django.db import connection; p = connection.pool; print(p.min_size, p.max_size, p.timeout)",
        ],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DATABASE_URL": database_url(),
            "DATABASE_POOL_MIN_SIZE": "2",
            "DATABASE_POOL_MAX_SIZE": "7",
            "DATABASE_POOL_TIMEOUT": "1.5",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.split() == ["2", "7", "1.5"]


@pytest.mark.parametrize(
    "variables",
    [
        {"DATABASE_POOL_MIN_SIZE": "5", "DATABASE_POOL_MAX_SIZE": "4"},
        {"DATABASE_POOL_MAX_SIZE": "0"},
        {"DATABASE_POOL_TIMEOUT": "0"},
    ],
)
def test_a_pool_that_cannot_work_stops_the_app_at_start(variables):
    started = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DATABASE_URL": database_url(), **variables},
        capture_output=True,
        text=True,
    )
    assert started.returncode != 0
    assert "DATABASE_POOL_" in started.stderr


async def _handshake_threads_hold_no_connection() -> None:
    """Every handshake thread gives its connection back (an earlier test's socket may have left
    one on a thread of that long-lived pool, which a handshake would then read through)."""
    import asyncio

    from paygo.ws import HANDSHAKE_THREADS, handshake_read

    all_there = threading.Barrier(HANDSHAKE_THREADS, timeout=10)

    def close() -> None:
        all_there.wait()  # one call on each thread
        connection.close()

    await asyncio.gather(*(handshake_read(close)() for _ in range(HANDSHAKE_THREADS)))


async def _socket_closed_with(path: str) -> int:
    from channels.testing import WebsocketCommunicator

    from paygo.asgi import application

    communicator = WebsocketCommunicator(application, path)
    connected, _ = await communicator.connect(timeout=10)
    assert connected  # accepted, so that the client sees why it is closed
    closed = await communicator.receive_output(timeout=10)
    assert closed["type"] == "websocket.close"
    return closed["code"]


@money_db
async def test_a_socket_whose_handshake_finds_the_pool_exhausted_is_closed_try_again_later(alice, pool_of_one):
    """Issue 16: a handshake that found every connection busy raised inside Daphne (a dropped socket
    and a logged traceback). Its token cannot be read: it is closed with 1013, "try again later"."""
    from channels.db import database_sync_to_async

    from accounts.services import token_pair_for
    from paygo.ws import CLOSE_TRY_AGAIN_LATER

    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()
    await database_sync_to_async(lambda: connection.close())()
    await _handshake_threads_hold_no_connection()
    with held_by_another_thread():
        code = await _socket_closed_with(f"/ws/notifications/?token={token}")
    assert code == CLOSE_TRY_AGAIN_LATER


@money_db
async def test_a_socket_whose_session_read_finds_the_pool_exhausted_is_closed_try_again_later(
    alice, victor, pool_of_one, monkeypatch
):
    """The pool runs out between the token's read and the session's: the same 1013, no traceback.
    (The token's read is the one above; here it is answered without the database.)"""
    from channels.db import database_sync_to_async

    from accounts.services import token_pair_for
    from marketplace.models import Category
    from marketplace.services import service_create
    from paygo import ws
    from streaming import services
    from wallets.tests.conftest import fund_wallet

    def start():
        fund_wallet(alice, 10_000_000)
        category = Category.objects.filter(parent__isnull=True).first()
        service = service_create(vendor=victor, name="Busy stream", category=category, rate=1_000, unit="per_minute")
        return token_pair_for(alice).access, services.session_start(user=alice, service=service).session_id

    token, session_id = await database_sync_to_async(start)()
    await database_sync_to_async(lambda: connection.close())()

    async def token_user(raw, address):
        return ws.TokenHolder(alice)

    monkeypatch.setattr(ws, "_user_for_token", token_user)
    await _handshake_threads_hold_no_connection()
    with held_by_another_thread():
        code = await _socket_closed_with(f"/ws/streams/{session_id}/?token={token}")
    assert code == ws.CLOSE_TRY_AGAIN_LATER
