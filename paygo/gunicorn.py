"""gunicorn's sync worker as PayGo runs it: its own refusals in the API's error format.

    gunicorn paygo.wsgi:application --worker-class paygo.gunicorn.SyncWorker ...

gunicorn refuses some requests before the application sees them (a header value with a control
byte, a Content-Type sent twice, ...) and answered each with an HTML page: nginx passes those
headers on, so the page reached API clients. Its status stays gunicorn's; its body is the API's.
"""

from __future__ import annotations

import socket

from gunicorn.workers.sync import SyncWorker as GunicornSyncWorker


class SyncWorker(GunicornSyncWorker):
    def handle_error(self, req, client, addr, exc) -> None:
        # gunicorn decides the status (and logs); its page is rewritten as it is written.
        super().handle_error(req, _ApiErrorPage(client), addr, exc)


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
