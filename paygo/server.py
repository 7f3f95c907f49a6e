"""Daphne as PayGo runs it: request bodies are bounded while they are read off the socket.

Stock Daphne hands a request to the application only once twisted has read its whole body (to a
temporary file), then queues all of it in memory for the application at once: a 315 MB chunked
body was read whole before anything could refuse it. Here a request stops being read at its
body's limit (paygo.api.bodies), whether the limit is passed by a declared Content-Length or by
the chunks as they arrive: the client gets the 413 in the API's error format, the connection
reads nothing more and is closed shortly after. A request twisted cannot parse (a header line with
a NUL or without a colon, a chunk size that is not a number, ...) gets the API's 400 too, where
twisted writes a bare status line; so does a WebSocket handshake autobahn refuses (an unknown
version, no key, ...), where it wrote the status line alone. A socket the application closes with a
close code the WebSocket registry defines for an endpoint to send (PayGo's 1003 and 1013) is closed
with it, where autobahn refused it; and the close carries the application's reason (a 4401's
`token_expired`, ...), which Daphne dropped.

It logs through Django's LOGGING (one JSON object a line in production, as every PayGo process):
Daphne's command line set up plain lines of its own on the root logger, which logged whatever came
before the application's settings, and its access log wrote NCSA lines straight to stdout; here
the settings' logging is set up first, and each access line is a record of logger `daphne.access`.

Every way PayGo serves uses it: `manage.py serve`, and in production
`python -m paygo.server -b 0.0.0.0 -p 8000 paygo.asgi:application`, which takes Daphne's own
options (but `--log-fmt`: the settings' LOGGING decides the format). (Another server can run
paygo.asgi:application: its BodyLimitMiddleware bounds what that server streams to it, not what it
buffers first.)
"""

from __future__ import annotations

import io
import logging
import os
import sys

# daphne.server installs the asyncio reactor twisted must use: it goes first.
import daphne.server  # isort: skip
from autobahn.util import encode_truncate
from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface as DaphneCommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet import reactor

from paygo.api.bodies import body_limit, error_json, malformed_body, raw_error_response, too_large_body

# Connections the kernel queues for the server to accept (twisted's default is 50, and a
# thousand sockets reconnecting at once after a deploy were refused); the kernel caps it at
# net.core.somaxconn.
LISTEN_BACKLOG = 1024

# After the 413, how long a refused connection stays open (reading nothing) so that the client can
# read the answer, before it is closed.
LINGER_SECONDS = 5.0


class BoundedRequest(WebRequest):
    """Daphne's request, which stops reading its body at the limit of its Content-Type."""

    limit = 0
    received = 0
    refused = False
    _linger = None

    def __init__(self, *args, **kwargs) -> None:
        # Twisted would parse form bodies into request.args, which Daphne never reads, and answer a
        # malformed multipart body itself with a bare 400: the application reads every body.
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)

    def gotLength(self, length: int | None) -> None:
        # Called once the headers are in, before any byte of the body; `length` is None if chunked.
        self.limit = body_limit(self.requestHeaders.getRawHeaders(b"content-type", [b""])[0])
        if length is not None and length > self.limit:
            self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" for a body that is refused
            self.content = io.BytesIO()
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.received += len(data)
        if self.received > self.limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # The end of a refused body may already sit in the data twisted is parsing: it stays unserved.
        if not self.refused:
            super().requestReceived(command, path, version)

    def connectionLost(self, reason) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        super().connectionLost(reason)

    def _refuse(self) -> None:
        self.refused = True
        transport = self.channel.transport
        transport.pauseProducing()  # nothing more is read from this connection
        _write_error(transport, b"413 Content Too Large", too_large_body(self.limit))
        transport.loseWriteConnection()  # the answer ends the response; the client sees its end
        self._linger = reactor.callLater(LINGER_SECONDS, transport.abortConnection)


def _answer_malformed(channel) -> None:
    """What an HTTP/1.1 channel does with a request it cannot parse: the API's 400, then close (in
    place of twisted's `_respondToBadRequestAndDisconnect`, a status line and no body)."""
    _write_error(channel.transport, b"400 Bad Request", malformed_body())
    channel.loseConnection()


def _write_error(transport, status: bytes, body: bytes) -> None:
    """A whole answer in the API's error format, written straight to the connection, which closes."""
    transport.write(raw_error_response(b"HTTP/1.1 " + status, body))


class BoundedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BoundedRequest
        channel = protocol._channel  # twisted wraps its HTTP/1.1 channel to switch to HTTP/2 on demand
        channel._respondToBadRequestAndDisconnect = lambda: _answer_malformed(channel)
        # A request or header line over twisted's line limit (16 KiB): it closed without a word.
        channel.lineLengthExceeded = lambda line: _answer_malformed(channel)
        return protocol


def with_backlog(endpoints: list[str]) -> list[str]:
    """Twisted endpoint descriptions (`-b`/`-p`, `-u` or `-e`) that listen with LISTEN_BACKLOG
    unless they name a backlog of their own."""
    return [
        f"{endpoint}:backlog={LISTEN_BACKLOG}"
        if endpoint.startswith(("tcp:", "unix:")) and ":backlog=" not in endpoint
        else endpoint
        for endpoint in endpoints
    ]


# The close codes an endpoint may send (RFC 6455 and the IANA registry: 1004-1006 and 1015 are never
# sent, 1010 is a client's): autobahn's sendClose accepts none of them from the application but
# 1000, and raised inside Daphne for PayGo's 1003 (unsupported data) and 1013 (try again later),
# logged as "Exception inside application", and Daphne closed the socket with 1011 instead.
SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014})


class ClosingWebSocketProtocol(WebSocketProtocol):
    """Daphne's socket, which closes with any close code an endpoint may send and the reason the
    application gave, and refuses a handshake in the API's error format (autobahn wrote a status
    line, the reason only there, and no body)."""

    def sendHttpErrorResponse(self, code: int, reason: str, responseHeaders=None) -> None:
        body = error_json(
            code, f"The WebSocket handshake was refused: {reason}.", code="bad_handshake" if code == 400 else None
        )
        headers = [(name.encode("latin1"), str(value).encode("latin1")) for name, value in responseHeaders or ()]
        self.sendData(raw_error_response(b"HTTP/1.1 %d %s" % (code, reason.encode("latin1", "replace")), body, headers))

    def handle_reply(self, message) -> None:
        # Daphne's handle_reply passes a close's code on and drops its reason (ASGI's "reason").
        if message.get("type") == "websocket.close" and self.state != self.STATE_CONNECTING:
            self.serverClose(code=message.get("code"), reason=message.get("reason"))
        else:
            super().handle_reply(message)

    def serverClose(self, code=None, reason: str | None = None) -> None:
        if code in SENDABLE_CLOSE_CODES:
            # What sendClose does once it checked the code (a reason's UTF-8 fits in 123 bytes).
            self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123) if reason else None, isReply=False)
        elif reason and code is not None:
            self.sendClose(code=code, reason=reason)  # which checks the code, as Daphne's serverClose
        else:
            super().serverClose(code)


class LoggedAccess(AccessLogGenerator):
    """Daphne's access log (a line per HTTP request and per socket connecting, connected, rejected
    and gone) as records of logger `daphne.access`, in the settings' format, where Daphne wrote them
    to stdout in a format of their own."""

    logger = logging.getLogger("daphne.access")

    def __init__(self) -> None:
        super().__init__(stream=None)

    def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None) -> None:
        # The record has its own time; `date` (local, no zone) is Daphne's for its NCSA line.
        self.logger.info('%s "%s" %s %s', host, request, status or "-", length or "-")


class Server(daphne.server.Server):
    """Daphne's server with BoundedRequest and ClosingWebSocketProtocol, listening with
    LISTEN_BACKLOG; its access log to stdout is logged (LoggedAccess).

    Daphne's run() makes its HTTP factory and listens with it in one go, naming the class itself:
    the factory it assigns to `http_factory` is replaced here by the bounded one; the socket
    factory it assigns to `ws_factory` makes ClosingWebSocketProtocol sockets.
    """

    def __init__(self, application, endpoints=None, **kwargs) -> None:
        access = kwargs.get("action_logger")
        if type(access) is AccessLogGenerator and access.stream is sys.stdout:  # an --access-log file stays one
            kwargs["action_logger"] = LoggedAccess()
        super().__init__(application, endpoints=with_backlog(endpoints or []), **kwargs)

    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        self._http_factory = BoundedHTTPFactory(self) if type(factory) is HTTPFactory else factory

    @property
    def ws_factory(self) -> WebSocketFactory:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: WebSocketFactory) -> None:
        if factory.protocol is WebSocketProtocol:
            factory.protocol = ClosingWebSocketProtocol
        self._ws_factory = factory


def _skip_autobahn_debug_arguments() -> None:
    """autobahn, Daphne's WebSocket layer, computes the arguments of its debug log lines whether or
    not debug lines are logged: a pretty-printed dump of its options for every socket that opens
    (the largest cost of a handshake: a thousand sockets opening at once spent seconds on it) and
    highlighted names for every frame sent. Daphne never logs autobahn at debug level, so those
    arguments are left empty."""
    from autobahn.websocket import protocol

    protocol.pformat = protocol.hltype = protocol.hlval = lambda *args, **kwargs: ""


class CommandLineInterface(DaphneCommandLineInterface):
    """Daphne's command line (the same options), serving with the bounded Server and logging as the
    settings say."""

    server_class = Server

    def run(self, args) -> None:
        # Before Daphne's logging.basicConfig, which then finds the root logger set up and adds
        # nothing: its plain lines logged what the settings logged as they loaded (django-environ's
        # .env notice) and anything else before the application set Django up.
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paygo.settings")
        from django.conf import settings
        from django.utils.log import configure_logging

        configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
        super().run(args)


if __name__ == "__main__":
    _skip_autobahn_debug_arguments()
    CommandLineInterface.entrypoint()
