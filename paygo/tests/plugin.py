"""pytest plugin (pytest.ini loads it with -p): the services a test run uses, chosen before
Django's settings are read.

- The database: TEST_DATABASE_URL when set (made on its server if missing; else DATABASE_URL when
  set); otherwise the run starts
  its own embedded PostgreSQL (paygo/embedded_db) in a temporary folder, tuned for throwaway data,
  and points DATABASE_URL at it; the process that started it (under pytest-xdist the controller,
  whose workers inherit the URL) stops it and deletes the folder when it exits. pytest-django gives
  each worker its own database on it.
- Redis: REDIS_URL as given. Each xdist worker gets its own cache KEY_PREFIX and channel-layer
  prefix, so that workers sharing one Redis database neither see nor clear each other's keys.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import quote

import psycopg
import psycopg.conninfo
import psycopg.sql
import pytest

# Durability is worth nothing for data deleted at the end of the run; these are reloadable.
THROWAWAY = ("fsync = off", "synchronous_commit = off", "full_page_writes = off")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    os.environ["CACHE_KEY_PREFIX"] = f"paygo-test-{worker}" if worker else "paygo-test"
    os.environ["CHANNEL_LAYER_PREFIX"] = f"{os.environ['CACHE_KEY_PREFIX']}:asgi"
    if os.environ.get("TEST_DATABASE_URL"):
        os.environ["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
        if not worker:
            _create_database(os.environ["DATABASE_URL"])
    if os.environ.get("DATABASE_URL") or worker:
        return  # a worker inherits the controller's choice
    # The server's Unix socket, written in the path as django-environ reads a socket folder; every
    # process of the run (workers, servers that tests start) connects to it as to any PostgreSQL.
    os.environ["DATABASE_URL"] = f"postgres://postgres@/{quote(_start_embedded_postgres(), safe='')}/paygo"


def _create_database(url: str) -> None:
    """The database TEST_DATABASE_URL names, made when the server has none of that name: tests that
    start production processes connect to it (pytest-django's own test_ databases are made anyway)."""
    try:
        psycopg.connect(url).close()
        return  # there already (the usual case, and a server where we may not create one)
    except psycopg.OperationalError:
        pass
    params = psycopg.conninfo.conninfo_to_dict(url)
    name = params.pop("dbname", None) or params.get("user")
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


def _start_embedded_postgres() -> str:
    """Start the run's own server; return the folder of its socket."""
    from paygo import embedded_db

    socket_dir = embedded_db.socket_dir(Path(tempfile.mkdtemp(prefix="paygo-test-pg-")), cleanup_mode="delete")
    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as connection:
        for setting in THROWAWAY:
            connection.execute(f"ALTER SYSTEM SET {setting}")
        connection.execute("SELECT pg_reload_conf()")
    return socket_dir
