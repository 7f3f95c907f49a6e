"""A real PayGo server for the tests that need one: Daphne started the README's way, in a subprocess."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from conftest import database_url

BASE_DIR = Path(settings.BASE_DIR)


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def read_reply(sock: socket.socket) -> HttpReply:
    """Read one HTTP response off `sock`: its head, then Content-Length bytes of body (or to EOF)."""
    sock.setblocking(True)
    sock.settimeout(60)  # a bound on a broken server, not a measurement
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise AssertionError(f"the server closed the connection after {data!r}")
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", -1))
    is_chunked = headers.get("transfer-encoding", "").lower() == "chunked"
    while not (is_chunked and body.endswith(b"0\r\n\r\n")) and (length < 0 or len(body) < length):
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return HttpReply(status=int(status_line.split()[1]), headers=headers, body=_unchunk(body) if is_chunked else body)


def _unchunk(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        body, data = body + data[:size], data[size + 2 :]


def exchange(address: tuple[str, int], raw_request: bytes, *, source: str | None = None) -> HttpReply:
    """Send one raw request and read its response (from the local address `source`, if given)."""
    with socket.create_connection(address, source_address=(source, 0) if source else None) as sock:
        sock.sendall(raw_request)
        return read_reply(sock)


def chunked(*parts: bytes) -> bytes:
    """A body in HTTP/1.1 chunked framing, one chunk per part, with its last chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


@pytest.fixture
def live_server_env(transactional_db) -> dict[str, str]:
    """The environment of a server process that shares this test's database and Redis."""
    return {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def live_daphne(live_server_env):
    """start(**env) -> (host, port) of `manage.py serve` (Daphne as the README runs it), serving on a
    socket bound here and handed over: connections made before it is ready wait in the socket's
    backlog, so nothing has to poll for it."""
    started: list[tuple[subprocess.Popen, socket.socket]] = []

    def start(**env: str) -> tuple[str, int]:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--fd", str(listener.fileno())],
            cwd=BASE_DIR,
            env={**live_server_env, **env},
            pass_fds=[listener.fileno()],
            stdout=subprocess.DEVNULL,
        )
        started.append((process, listener))
        return listener.getsockname()

    yield start
    for process, listener in started:
        process.terminate()
        process.wait(timeout=60)
        listener.close()


@pytest.fixture
def redis_connections_opened(monkeypatch) -> list:
    """The connections to Redis that redis-py opens from here on (one entry each)."""
    import redis

    opened = []
    make_connection = redis.ConnectionPool.make_connection

    def counted(self):
        opened.append(self)
        return make_connection(self)

    monkeypatch.setattr(redis.ConnectionPool, "make_connection", counted)
    return opened


@pytest.fixture
def prod_py(monkeypatch):
    """scripts/prod.py (what `make prod` runs), imported."""
    monkeypatch.syspath_prepend(str(BASE_DIR / "scripts"))
    return importlib.import_module("prod")
