"""pytest plugin (pytest.ini loads it with -p): the services a test run uses, chosen before
Django's settings are read.

- The database: TEST_DATABASE_URL when set (else DATABASE_URL when set); otherwise the run starts
  its own embedded PostgreSQL (paygo/embedded_db) in a temporary folder, tuned for throwaway data,
  which its last process to exit stops and deletes. Under pytest-xdist the controller starts it
  and the workers join it; pytest-django gives each worker its own database on it.
- Redis: REDIS_URL as given. Each xdist worker gets its own cache KEY_PREFIX and channel-layer
  prefix, so that workers sharing one Redis database neither see nor clear each other's keys.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psycopg
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
    if os.environ.get("DATABASE_URL") or worker:
        return  # a worker inherits the controller's choice, EMBEDDED_PGDATA included
    os.environ["EMBEDDED_PGDATA"] = str(_start_embedded_postgres())
    os.environ["DATABASE_URL"] = ""  # set, and empty: a .env file's DATABASE_URL does not apply


def _start_embedded_postgres() -> Path:
    from paygo import embedded_db

    pgdata = Path(tempfile.mkdtemp(prefix="paygo-test-pg-"))
    socket_dir = embedded_db.socket_dir(pgdata, cleanup_mode="delete")
    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as connection:
        for setting in THROWAWAY:
            connection.execute(f"ALTER SYSTEM SET {setting}")
        connection.execute("SELECT pg_reload_conf()")
    return pgdata
