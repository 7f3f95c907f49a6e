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
