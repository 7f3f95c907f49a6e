"""gunicorn as PayGo runs it: its sync worker, with its own refusals in the API's error format and a
request's unread body read before the connection closes; and its log in the settings' format.

    gunicorn paygo.wsgi:application -c python:paygo.gunicorn --worker-class paygo.gunicorn.SyncWorker ...

- `-c python:paygo.gunicorn` reads `logconfig_dict` below: gunicorn's own log (its start, workers
  booting, exiting and timing out, a request that failed before or outside the application, with
  its traceback) goes through the settings' LOGGING, one JSON object a line in production as the
  application's. gunicorn wrote plain lines of its own format to stderr, beside the JSON of its
  workers.

- gunicorn refuses some requests before the application sees them (a header value with a control
  byte, a Content-Type sent twice, ...) and answered each with an HTML page: nginx passes those
  headers on, so the page reached API clients. Its status stays gunicorn's; its body is the API's.
- The application may answer before it reads the body (a 413 from the declared length, a 401 on an
  upload without a token). gunicorn then closed the connection with the body unread, past the 64 KiB
  its close drains: the kernel reset it, nginx still writing the body got a broken pipe, and the
  client a 502 "its outcome is unknown". The rest of the body is read (and dropped) first, up to the
  largest body PayGo takes and for a few seconds at most.
"""

from __future__ import annotations

import os
import socket
import time

from django.conf import settings
from gunicorn.http.errors import ParseException
from gunicorn.workers.sync import SyncWorker as GunicornSyncWorker

# gunicorn reads its configuration in its master, before any worker loads the application (which
# names the settings module too: paygo.wsgi).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paygo.settings")

# The settings' LOGGING with gunicorn's two loggers in it (gunicorn merges it over its defaults and
# applies it in the master; the workers inherit it). gunicorn.error: gunicorn's handler goes, its
# records go to the root logger's. gunicorn.access stays silent, as without a logging configuration
# (no --access-logfile: nginx keeps no access log either); gunicorn turns it on once one is given.
logconfig_dict = {
    **settings.LOGGING,
    "loggers": {
        **settings.LOGGING["loggers"],
        "gunicorn.error": {"propagate": True},
        "gunicorn.access": {"level": "WARNING"},
    },
}

# The longest a worker spends reading a body its answer did not need: behind nginx the body is in
# nginx's buffers already and comes at once; a client sending it slowly is cut off.
UNREAD_BODY_SECONDS = 5.0


class SyncWorker(GunicornSyncWorker):
    def handle_request(self, listener, req, client, addr) -> None:
        try:
            super().handle_request(listener, req, client, addr)
        finally:
            read_unread_body(req, client)

    def handle_error(self, req, client, addr, exc) -> None:
        # gunicorn decides the status (and logs); its page is rewritten as it is written.
        super().handle_error(req, _ApiErrorPage(client), addr, exc)


def read_unread_body(req, client: socket.socket) -> None:
    """Reads what is left of `req`'s body off `client`, dropping it: at most the largest body PayGo
    takes (API_MAX_UPLOAD_BYTES, which nginx holds every body to), for UNREAD_BODY_SECONDS at most."""
    deadline = time.monotonic() + UNREAD_BODY_SECONDS
    left = settings.API_MAX_UPLOAD_BYTES
    try:
        while left > 0 and (remaining := deadline - time.monotonic()) > 0:
            client.settimeout(remaining)
            chunk = req.body.read(min(left, 65536))
            if not chunk:
                return
            left -= len(chunk)
    except (OSError, ParseException):  # gone, too slow, or a malformed chunk: the close will do
        return


class _ApiErrorPage:
    """The client's socket as gunicorn's handle_error writes its HTML error page to it: the page is
    sent as the API's error body, with gunicorn's status line."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def __getattr__(self, name: str):
        return getattr(self._sock, name)

    def sendall(self, data: bytes) -> None:
        # Imported here: gunicorn's master loads this module before the application sets Django up.
        from paygo.api.bodies import error_json, malformed_body, raw_error_response

        status_line = data.split(b"\r\n", 1)[0]  # b"HTTP/1.1 400 Bad Request"
        status = int(status_line.split()[1])
        self._sock.sendall(raw_error_response(status_line, malformed_body() if status == 400 else error_json(status)))
