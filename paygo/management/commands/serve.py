"""`python manage.py serve`: API, admin, docs and WebSockets on one port through Daphne (ASGI),
as paygo/server.py runs it (request bodies bounded while they are read).

In the embedded default (no REDIS_URL) it also runs the periodic tasks on a timer thread.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve PayGo (HTTP + WebSocket) with Daphne; embedded mode also runs the periodic tasks."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--fd", type=int, help="serve on this listening socket instead (inherited)")

    def handle(self, *args, host: str, port: int, fd: int | None = None, **options):
        from paygo.server import CommandLineInterface

        if settings.EMBEDDED:
            from paygo.embedded import EmbeddedBeat

            EmbeddedBeat().start()
            mode = "embedded (in-memory channel layer, eager Celery, in-process timer)"
        else:
            mode = "production services (Redis channel layer and cache; run a Celery worker and beat)"
        where = f"the socket of file descriptor {fd}" if fd is not None else f"http://{host}:{port}/"
        self.stdout.write(f"PayGo on {where}  —  API /api/v1/, docs /api/v1/docs/, live cost /live/, admin /admin/")
        self.stdout.write(f"Mode: {mode}")
        database = settings.DATABASES["default"]
        if database["ENGINE"] == "paygo.embedded_db":
            self.stdout.write(f"Database: embedded PostgreSQL, its data in {database['HOST']}")
        endpoint = ["--fd", str(fd)] if fd is not None else ["--bind", host, "--port", str(port)]
        # No --proxy-headers: Daphne would believe anyone's X-Forwarded-For. PayGo believes only
        # TRUSTED_PROXIES (paygo/api/forwarded.py).
        CommandLineInterface().run([*endpoint, "paygo.asgi:application"])
