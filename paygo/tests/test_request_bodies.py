"""Request bodies are bounded while they are read, whatever their framing, and chunked ones are parsed.

Twice: by the server PayGo runs (Daphne, whose requests stop reading the socket at the limit), and
by the ASGI application itself (paygo.asgi), for any ASGI server that streams bodies to it.
"""

from __future__ import annotations

import asyncio
import io
import json
import select
import socket

import pytest
from django.conf import settings

from accounts.services import token_pair_for
from conftest import money_db
from paygo.asgi import application
from paygo.tests.conftest import chunked, exchange, read_reply
from wallets.tests.conftest import balance_of, fund_wallet

USDC = 1_000_000


# --- The real server ------------------------------------------------------------------------------


def _send_until_answered(address, head: bytes, piece: bytes, total: int) -> tuple[int, socket.socket]:
    """Send `head`, then `piece` over and over up to `total` bytes, until the server answers.

    Returns the bytes of body sent before the server's answer (or all of them) and the socket.
    """
    sock = socket.create_connection(address)
    sock.sendall(head)
    sock.setblocking(False)
    sent, pending = 0, piece
    while sent < total:
        readable, writable, _ = select.select([sock], [sock], [], 60)
        if readable:
            break  # the server answered (or closed) before the body was all sent
        assert writable, "the server neither answered nor read for a minute"
        try:
            written = sock.send(pending[: total - sent])
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += written
        pending = pending[written:] or piece
    return sent, sock


@money_db
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_body_over_the_limit_is_refused_before_the_server_reads_it_all(live_daphne, framing):
    address = live_daphne()
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    total = 64 * limit
    if framing == "chunked":
        framing_header, piece = b"Transfer-Encoding: chunked", b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    else:
        framing_header, piece = b"Content-Length: %d" % total, b"x" * 65536
    head = b"POST /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s\r\n\r\n" % (
        framing_header
    )

    sent, sock = _send_until_answered(address, head, piece, total)
    with sock:
        if sent >= total and framing == "chunked":
            sock.setblocking(True)
            sock.sendall(b"0\r\n\r\n")
        reply = read_reply(sock)

    assert reply.status == 413
    assert reply.headers["content-type"] == "application/json"
    assert json.loads(reply.body)["code"] == "too_large"
    # The server stopped taking the body at the limit: what the client managed to push beyond it
    # is what the kernels' socket buffers hold, far from the 64 MiB it tried to send.
    assert sent < total // 2


@money_db
def test_a_small_chunked_json_transfer_is_read_and_paid(live_daphne, alice, bob):
    fund_wallet(alice, 10 * USDC)
    address = live_daphne()
    body = json.dumps({"amount": "2.5", "recipientId": bob.pk}).encode()
    head = (
        "POST /api/v1/wallet/transfer HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        f"Authorization: Bearer {token_pair_for(alice).access}\r\nIdempotency-Key: chunked-transfer-1\r\n\r\n"
    ).encode()

    reply = exchange(address, head + chunked(body[:7], body[7:20], body[20:]))

    assert reply.status == 201, reply.body
    assert json.loads(reply.body)["remainingBalance"] == "7.500000"
    assert balance_of(alice) == 7_500_000
    assert balance_of(bob) == 2_500_000


# --- The ASGI application, under a server that streams the body in chunks ------------------------


class StreamedBody:
    """An ASGI `receive` that hands out a body in chunks and counts what was taken."""

    def __init__(self, total: int, chunk: int = 65536):
        self.total, self.chunk, self.taken = total, chunk, 0

    async def __call__(self):
        if self.taken >= self.total:
            await asyncio.Future()  # the client waits for the answer
        piece = min(self.chunk, self.total - self.taken)
        self.taken += piece
        return {"type": "http.request", "body": b"x" * piece, "more_body": self.taken < self.total}


async def _call(scope_headers: list[tuple[bytes, bytes]], receive, path: str = "/api/v1/health") -> list[dict]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *scope_headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    return sent


def _reply(sent: list[dict]) -> tuple[int, dict, dict]:
    starts = [message for message in sent if message["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    start = starts[0]
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    return start["status"], headers, json.loads(body)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("content_type", "limit_setting"),
    [
        (b"application/json", "DATA_UPLOAD_MAX_MEMORY_SIZE"),
        (b"multipart/form-data; boundary=x", "API_MAX_UPLOAD_BYTES"),
    ],
)
async def test_a_streamed_body_is_refused_once_it_passes_the_limit(content_type, limit_setting):
    limit = getattr(settings, limit_setting)
    receive = StreamedBody(total=64 * limit)

    status, headers, body = _reply(await _call([(b"content-type", content_type)], receive))

    assert status == 413
    assert body == {
        "message": f"The request body is over the limit of {limit} bytes.",
        "statusCode": 413,
        "code": "too_large",
    }
    assert headers["cache-control"] == "no-store"
    assert receive.taken <= limit + receive.chunk  # it stopped reading at the limit


@pytest.mark.django_db(transaction=True)
async def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read():
    receive = StreamedBody(total=2 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(receive.total).encode())]

    status, _, body = _reply(await _call(headers, receive))

    assert (status, body["code"]) == (413, "too_large")
    assert receive.taken == 0


@pytest.mark.django_db(transaction=True)
async def test_a_streamed_body_without_a_length_is_parsed():
    """A chunked login body reaches the view: the answer is about the password, not a missing field."""
    body = json.dumps({"email": "nobody@example.com", "password": "wrong-password-1"}).encode()
    pieces = [body[:5], body[5:]]

    async def receive():
        if not pieces:
            await asyncio.Future()  # the client waits for the answer
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    status, _, reply = _reply(
        await _call(
            [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")], receive, "/api/v1/auth/login"
        )
    )

    assert (status, reply["code"]) == (401, "invalid_credentials"), reply


@money_db
def test_a_chunked_multipart_upload_is_read_and_stored(live_daphne, alice, tmp_path):
    from accounts.tests.conftest import picture

    address = live_daphne(MEDIA_ROOT=str(tmp_path))
    image = picture("PNG", size=(40, 30))
    form = (
        b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\nContent-Type: image/png\r\n\r\n'
        + image
        + b"\r\n--xyz--\r\n"
    )
    head = (
        "POST /api/v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\nTransfer-Encoding: chunked\r\n"
        f"Authorization: Bearer {token_pair_for(alice).access}\r\n\r\n"
    ).encode()

    reply = exchange(address, head + chunked(form[:100], form[100:]))

    assert reply.status == 201, reply.body
    assert alice.images.get().width == 40


@money_db
def test_a_malformed_multipart_body_is_the_apis_400_not_the_servers(live_daphne, alice, tmp_path):
    # Found by Schemathesis: twisted parsed form bodies itself (for request.args, which Daphne never
    # reads) and answered a malformed one with a bare 400, no body, and closed the connection.
    address = live_daphne(MEDIA_ROOT=str(tmp_path))
    body = b"--xyz--\r\n"
    head = (
        "POST /api/v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {len(body)}\r\n"
        f"Authorization: Bearer {token_pair_for(alice).access}\r\n\r\n"
    ).encode()

    reply = exchange(address, head + body)

    assert reply.status == 400
    assert reply.headers["content-type"] == "application/json"
    assert json.loads(reply.body)["errors"] == {"image": ["Attach the picture as the multipart field 'image'."]}
    assert not alice.images.exists()

    # Requests twisted itself cannot parse, which it answered with a status line and no body: the
    # API's 400 too, and the server goes on serving.
    token = token_pair_for(alice).access.encode()
    for unreadable in (
        b"GET /api/v1/wallet/balance HTTP/1.1\r\nHost: 127.0.0.1\r\nIdempotency-Key: a\x00b\r\n\r\n",
        b"GET /api/v1/wallet/balance HTTP/1.1\r\nHost: 127.0.0.1\r\nA header without a colon\r\n\r\n",
        b"POST /api/v1/wallet/transfer HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"POST /api/v1/wallet/transfer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ten\r\n\r\n{}",
        # a line over twisted's limit (16 KiB), which it closed without an answer
        b"GET /api/v1/health?pad=" + b"a" * 17_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 17_000 + b"\r\n\r\n",
    ):
        reply = exchange(address, unreadable)
        assert reply.status == 400, unreadable
        assert reply.headers["content-type"] == "application/json"
        assert json.loads(reply.body) == {
            "message": "The request was refused as malformed.",
            "statusCode": 400,
            "code": "bad_request",
        }
    assert (
        exchange(address, b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").status == 200
    )


def test_manage_py_serve_runs_the_bounded_daphne(monkeypatch, settings):
    """`manage.py serve` serves through paygo.server, as production does."""
    from django.core.management import call_command

    from paygo import server

    calls = []
    monkeypatch.setattr(server.CommandLineInterface, "run", lambda self, args: calls.append((type(self), args)))
    settings.EMBEDDED = False

    call_command("serve", host="127.0.0.1", port=8123, stdout=io.StringIO())

    [(command_line, args)] = calls
    assert command_line is server.CommandLineInterface
    assert server.CommandLineInterface.server_class is server.Server
    assert args[-1] == "paygo.asgi:application"


def test_the_server_listens_with_a_backlog_for_a_burst_of_handshakes():
    """Twisted listens with a backlog of 50: a thousand sockets reconnecting at once after a
    deploy were turned away before Daphne could accept them (issue 16). Every listening endpoint
    the command line builds gets LISTEN_BACKLOG unless it names its own."""
    from twisted.internet import endpoints, reactor

    from paygo import server

    described = ["tcp:port=8000:interface=127.0.0.1", "unix:/tmp/paygo.sock", "tcp:port=8001:backlog=7", "fd:fileno=3"]
    listening = server.Server(application, endpoints=described).endpoints

    parsed = [endpoints.serverFromString(reactor, endpoint) for endpoint in listening]
    assert [endpoint._backlog for endpoint in parsed[:3]] == [server.LISTEN_BACKLOG, server.LISTEN_BACKLOG, 7]
    assert listening[3] == "fd:fileno=3"
