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
