"""`python manage.py serve`: API, admin, docs and WebSockets on one port through Daphne (ASGI),
as paygo/server.py runs it (request bodies bounded while they are read).

In the embedded default (no REDIS_URL) it also runs the periodic tasks on a timer thread.

Where it listens comes from its command line only (127.0.0.1:8000 unless told): HOST and PORT are
in many shells' and tools' environments, and HOST=0.0.0.0 put a development server, DEBUG on and the
demo accounts' password published, on every interface.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.management.base import BaseCommand


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name as --host takes it) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may well resolve to an address others reach


class Command(BaseCommand):
    help = "Serve PayGo (HTTP + WebSocket) with Daphne; embedded mode also runs the periodic tasks."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="the port to listen on (default 8000)")
        parser.add_argument("--fd", type=int, help="serve on this listening socket instead (inherited)")

    def handle(self, *args, host: str, port: int, fd: int | None = None, **options):
        from paygo.server import CommandLineInterface

        if settings.DEBUG and fd is None and not is_loopback(host):
            self.stderr.write(
                f"Warning: serving on {host} with DEBUG on: other machines can reach this development server, "
                "its debug pages and the demo accounts (their password is published; any client can send "
                "Host: localhost). Serve on 127.0.0.1 (the default), or with DEBUG off for others to use.",
                self.style.WARNING,
            )
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
