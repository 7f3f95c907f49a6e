"""Shared by the benchmarks: a PostgreSQL database of their own, migrated, and Django set up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres:postgres@127.0.0.1:5432/paygo_bench"


def database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)


def setup_django(*, migrate: bool = False) -> None:
    """Point Django at the benchmark database (created if missing) and set it up."""
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = database_url()
    os.environ.setdefault("DEBUG", "1")  # a developer's tool, like `make`: the settings default to production
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/5")
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paygo.settings")
    if migrate:
        url = urlparse(database_url())
        name = url.path.lstrip("/")
        exists = subprocess.run(
            [
                "psql",
                "-h",
                url.hostname,
                "-U",
                url.username,
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname='{name}'",
                "postgres",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PGPASSWORD": url.password or ""},
        ).stdout.strip()
        if exists != "1":
            subprocess.run(
                ["createdb", "-h", url.hostname, "-U", url.username, name],
                check=True,
                env={**os.environ, "PGPASSWORD": url.password or ""},
            )
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def pg_env() -> dict[str, str]:
    url = urlparse(database_url())
    return {
        **os.environ,
        "PGHOST": url.hostname or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "postgres",
        "PGPASSWORD": url.password or "",
        "PGDATABASE": url.path.lstrip("/"),
    }


def production_like(database: str) -> None:
    """Production settings for a benchmark (set before Django or a server reads them): DEBUG off (no
    query log), secrets made for this run, the Chipi sandbox for demo money, plain http, and the
    benchmark's own database (BENCH_DATABASE_URL, default `database` on the local server)."""
    import secrets

    os.environ.setdefault("BENCH_DATABASE_URL", f"postgres://postgres:postgres@127.0.0.1:5432/{database}")
    os.environ.setdefault("DEBUG", "0")
    for name in ("SECRET_KEY", "JWT_SECRET", "CHIPI_SECRET_KEY", "CHIPI_WEBHOOK_SECRET", "CHIPI_KEY_ENCRYPTION_KEY"):
        os.environ.setdefault(name, secrets.token_urlsafe(50))
    os.environ.setdefault("CHIPI_SANDBOX", "1")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")  # production names no host by default


def served_like_production() -> None:
    """On top of production_like, for a benchmark that starts servers: a Redis database, real Celery
    workers, collected static files kept between runs, and no API, sign-in or socket handshake budget
    per client address (the load, and the load test's hundreds of sign-ins, come from this one
    address)."""
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/5")
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("STATIC_ROOT", str(ROOT / "var" / "bench-static"))
    for budget in ("READS", "WRITES", "MONEY", "USAGE", "LOGIN", "SOCKETS"):
        os.environ.setdefault(f"RATELIMIT_{budget}_PER_IP", "100000000/m")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ConnectionCounter:
    """The benchmark database's connections (pg_stat_activity), sampled every `every` seconds in a
    thread between start() and stop(): `samples`, and the most seen."""

    def __init__(self, every: float = 1.0) -> None:
        import threading

        self.every, self.samples = every, []
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ConnectionCounter:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._running = False
        self._thread.join()
        return self.most

    @property
    def most(self) -> int:
        return max(self.samples, default=0)

    def _run(self) -> None:
        import time

        env = pg_env()
        sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{env['PGDATABASE']}'"
        while self._running:
            out = subprocess.run(["psql", "-tAc", sql], capture_output=True, text=True, env=env).stdout.strip()
            if out.isdigit():
                self.samples.append(int(out))
            time.sleep(self.every)


def close_connections_before_fork() -> None:
    """Close this process's database connections, its pool's included, before forking workers.

    connections.close_all() only hands a pooled connection back to the pool, whose sockets stay
    open: children forked after it inherit them and would speak on the same sockets at once (the
    server answers "lost synchronization"). Each child opens connections of its own."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()
