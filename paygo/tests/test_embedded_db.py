"""The embedded database: one server per data folder, shared by the processes that use it, stopped
by the last of them to exit, its data kept for the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

# A process that uses the server until its standard input is closed, as `serve` or `shell` would.
USER = """
import sys
from paygo import embedded_db
print(embedded_db.socket_dir(sys.argv[1]), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def pgdata(tmp_path):
    """A data folder of the test's own; a server a failing test left running there is stopped."""
    folder = tmp_path / "postgres"
    yield folder
    pid = server_pid(folder)
    if pid is not None:
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown


def start_user(pgdata: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", USER, str(pgdata)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=settings.BASE_DIR,
    )
    return process, process.stdout.readline().strip()


def stop_user(process: subprocess.Popen) -> None:
    process.stdin.close()
    assert process.wait(timeout=60) == 0


def server_pid(pgdata: Path) -> int | None:
    """The postmaster's pid while the server of `pgdata` runs, else None."""
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def query(socket: str, sql: str) -> list[tuple]:
    with psycopg.connect(host=socket, user="postgres", dbname="paygo", autocommit=True) as connection:
        cursor = connection.execute(sql)
        return cursor.fetchall() if cursor.description else []


def test_processes_share_one_server_the_last_stops_it_and_the_data_stays(pgdata):
    first, socket = start_user(pgdata)
    second, same_socket = start_user(pgdata)
    assert same_socket == socket
    pid = server_pid(pgdata)
    assert pid is not None
    query(socket, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")

    stop_user(first)
    assert server_pid(pgdata) == pid  # the second still uses it

    stop_user(second)
    assert server_pid(pgdata) is None

    third, socket = start_user(pgdata)
    try:
        assert query(socket, "SELECT n FROM kept") == [(42,)]
    finally:
        stop_user(third)
    assert server_pid(pgdata) is None


def test_a_killed_process_does_not_keep_the_server_running(pgdata):
    survivor, _ = start_user(pgdata)
    killed, _ = start_user(pgdata)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)

    stop_user(survivor)

    assert server_pid(pgdata) is None


def test_manage_py_without_a_database_url_runs_on_the_embedded_server(pgdata):
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    environment["EMBEDDED_PGDATA"] = str(pgdata)
    probe = (
        "from django.db import connection; cursor = connection.cursor(); "
        "print(connection.settings_dict['ENGINE'], cursor.execute('SELECT current_database()').fetchone()[0], "
        "connection.connection._pool is connection.pool)"  # drawn from the process's pool, as on a DATABASE_URL
    )

    shell = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", probe],
        env=environment,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert shell.stdout.split() == ["paygo.embedded_db", "paygo", "True"]
    assert server_pid(pgdata) is None  # stopped when the command ended


def test_a_database_url_that_is_not_postgresql_is_refused():
    environment = {**os.environ, "DATABASE_URL": "sqlite:///db.sqlite3"}

    check = subprocess.run(
        [sys.executable, "manage.py", "check"], env=environment, cwd=settings.BASE_DIR, capture_output=True, text=True
    )

    assert check.returncode != 0
    assert "PayGo runs on PostgreSQL only" in check.stderr
