"""The production shape's edge (`make prod`: nginx in front of gunicorn and Daphne), with the
production settings' defaults, HTTPS redirect included, behind a TLS proxy as an operator runs it:
every request refused on its form gets the API's JSON 4xx, from nginx or the app, never an HTML
page or a 500; links keep the address the client used; a request the TLS proxy forwarded is not
redirected to itself.

Each request here says what the TLS proxy in front says (X-Forwarded-Proto: https), except the
one that checks the redirect of plain HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket

import pytest

from conftest import database_url, money_db
from paygo.tests.test_production_settings import (
    SANDBOX_CHIPI,
    _free_port,
    make_prod,
    production_env,
    static_root,  # noqa: F401 (a fixture)
)

pytestmark = pytest.mark.timeout(600)

FROM_THE_TLS_PROXY = b"X-Forwarded-Proto: https\r\n"
FRONTEND = "https://app.example.com"  # the operator's CORS_ALLOWED_ORIGINS


@pytest.fixture(scope="module")
def prod(static_root, django_db_setup, django_db_blocker):  # noqa: F811 (the fixture imported above)
    """make prod with production settings; yields (nginx's port, Daphne's port)."""
    port = _free_port()
    env = production_env(
        static_root,
        CHIPI_API_KEY=None,
        **SANDBOX_CHIPI,
        DATABASE_URL=database_url(),
        PORT=str(port),
        ALLOWED_HOSTS="127.0.0.1",
        CORS_ALLOWED_ORIGINS=FRONTEND,
        WEB_WORKERS="2",
        CELERY_CONCURRENCY="1",
        CACHE_KEY_PREFIX=os.environ.get("CACHE_KEY_PREFIX"),
        CHANNEL_LAYER_PREFIX=os.environ.get("CHANNEL_LAYER_PREFIX"),
    )
    with django_db_blocker.unblock(), make_prod(env) as (_, output):
        yield port, int(re.search(r"ws 127\.0\.0\.1:(\d+)", output[-1]).group(1))


def send(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """A raw request on a connection of its own; the answer's status, headers (lower-case) and body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(data.replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1:%d\r\n" % port, 1))  # as clients write it
    out = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            out += chunk
    sock.close()
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0] else 0
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return status, headers, body


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        if not (length := int(size, 16)):
            break
        out, body = out + body[:length], body[length + 2 :]
    return out


def request(target: bytes, extra: bytes = b"", method: bytes = b"GET", version: bytes = b"HTTP/1.1") -> bytes:
    return b"%s %s %s\r\nHost: 127.0.0.1\r\n%s%sConnection: close\r\n\r\n" % (
        method, target, version, FROM_THE_TLS_PROXY, extra,
    )  # fmt: skip


def post(target: bytes, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return request(target, b"Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type, len(body)), b"POST") + body


REFUSED = [
    # nginx refuses these at the request line, before it has a URI (a named error location then
    # failed: nginx's HTML 500).
    ("NUL in the path", request(b"/api/v1/service/%00"), 400),
    ("a path above the root", request(b"/api/../../etc"), 400),
    ("a space in the path", request(b"/api/v1/a b"), 400),
    ("a lower-case method", request(b"/api/v1/service", method=b"get"), 400),
    # nginx's other refusals, which had no error page (its HTML).
    ("a URI over 8 KiB", request(b"/api/v1/service?search=" + b"a" * 9000), 414),
    ("a header over 8 KiB", request(b"/api/v1/service", b"X-Long: " + b"a" * 9000 + b"\r\n"), 400),
    (
        "an unknown transfer coding",
        request(b"/api/v1/auth/login", b"Transfer-Encoding: gzip, chunked\r\n", b"POST"),
        501,
    ),
    ("HTTP/2.0 on the request line", request(b"/api/v1/service", version=b"HTTP/2.0"), 505),
    ("TRACE", request(b"/api/v1/service", method=b"TRACE"), 405),
    # What gunicorn refused with its own HTML page.
    ("a 2-letter method", request(b"/api/v1/health", method=b"AB"), 405),
    ("a 21-letter method", request(b"/api/v1/health", method=b"ABCDEFGHIJKLMNOPQRSTU"), 405),
    ("a raw byte outside ASCII in the query", request(b"/api/v1/service?search=\xff"), 400),
    ("a raw byte outside ASCII in the path", request(b"/api/v1/\xff"), 400),
    # Django, while it built the request, before any middleware (gunicorn's HTML 500).
    ("an unreadable Content-Type", request(b"/api/v1/health", b"Content-Type: text/plain; a*=foo''%41\r\n"), 400),
    (
        "a charset that is no text encoding",
        post(b"/api/v1/auth/login", b"{}", b"application/json; charset=base64"),
        400,
    ),
    # A JSON body over its limit: nginx's 413 (the app's, from the declared length, raced nginx still
    # writing the body, and the closed connection became a 503 "try again").
    ("a JSON body of 2 MB", post(b"/api/v1/auth/login", b'{"x": "' + b"x" * 2_000_000 + b'"}'), 413),
]


@pytest.mark.parametrize(("what", "raw", "status"), REFUSED, ids=[what for what, _, _ in REFUSED])
def test_a_request_refused_on_its_form_gets_the_apis_json(prod, what, raw, status):
    answer, headers, body = send(prod[0], raw)

    assert answer == status, (answer, headers.get("content-type"), body[:200])
    assert headers["content-type"].startswith("application/json"), (headers, body[:200])
    assert json.loads(body)["statusCode"] == status


@pytest.mark.parametrize(
    "raw",
    [
        post(b"/api/v1/images", b"x" * 7_000_000, b"image/png"),  # over the upload's limit
        post(b"/api/v1/auth/login", b'{"x": "' + b"x" * 2_000_000 + b'"}'),  # over a JSON body's
        request(b"/api/v1/health", method=b"TRACE"),
        request(b"/api/v1/health"),  # the app's own answer, for comparison
    ],
    ids=["413 of an upload", "413 of JSON", "405", "200 from the app"],
)
def test_a_page_on_the_allowed_origin_can_read_nginxs_refusals_as_the_apps_answers(prod, raw):
    """nginx's own error pages carry the CORS headers the app's answers carry (django-cors-headers):
    a page on another origin whose upload was too large reads the 413 instead of a network error."""

    def origin(value: bytes) -> bytes:
        return raw.replace(b"Connection: close\r\n", b"Origin: %s\r\nConnection: close\r\n" % value, 1)

    _, allowed, _ = send(prod[0], origin(FRONTEND.encode()))
    _, other, _ = send(prod[0], origin(b"https://evil.example.com"))

    assert allowed["access-control-allow-origin"] == FRONTEND, allowed
    assert "retry-after" in allowed["access-control-expose-headers"], allowed
    assert "origin" in allowed["vary"].lower()
    assert "access-control-allow-origin" not in other and "access-control-expose-headers" not in other, other


def test_what_gunicorn_takes_is_what_nginx_lets_through(prod):
    """A request line of 4-8 KiB and a hundred headers reach the app (gunicorn's stricter defaults
    refused them with its HTML page)."""
    long_line = send(prod[0], request(b"/api/v1/health?pad=" + b"a" * 5000))
    many_headers = send(prod[0], request(b"/api/v1/health", b"".join(b"X-H%d: 1\r\n" % n for n in range(100))))

    assert long_line[0] == 200, long_line[2][:200]
    assert many_headers[0] == 200, many_headers[2][:200]


@money_db
def test_links_keep_the_host_and_port_the_client_used_and_https(prod, victor):
    from marketplace.models import Category
    from marketplace.services import service_create

    category = Category.objects.filter(parent=None).first()
    for n in range(2):
        service_create(vendor=victor, name=f"Edge {n}", category=category, rate=10**6, unit="per_minute")

    status, _, body = send(prod[0], request(b"/api/v1/service?pageSize=1"))

    assert status == 200, body[:200]
    assert json.loads(body)["next"].startswith(f"https://127.0.0.1:{prod[0]}/api/v1/service?")


def test_plain_http_is_redirected_to_https_once_and_what_the_tls_proxy_forwards_is_served(prod):
    plain = request(b"/api/v1/health").replace(FROM_THE_TLS_PROXY, b"")

    redirected = send(prod[0], plain)
    forwarded = send(prod[0], request(b"/api/v1/health"))

    assert redirected[0] == 301
    assert redirected[1]["location"] == f"https://127.0.0.1:{prod[0]}/api/v1/health"
    assert forwarded[0] == 200, (forwarded[0], forwarded[1].get("location"))


@pytest.mark.parametrize(
    "origins",
    [
        ["https://app.example.com", "https://app.example.com"],
        ["https://app.example.com", "https://APP.example.com"],
        ["https://app.example.com", "null"],
        ["http://under_score.example:8080"],
    ],
    ids=["twice", "another case", "null", "underscore and port"],
)
def test_every_origin_the_app_takes_makes_a_configuration_nginx_takes(tmp_path, monkeypatch, origins):
    """nginx's map refuses a string named twice (it compares them ignoring case), and prod.py
    refused "null" (a sandboxed page's origin, which django-cors-headers takes)."""
    import importlib
    import subprocess

    from django.conf import settings

    monkeypatch.syspath_prepend(str(settings.BASE_DIR / "scripts"))
    prod = importlib.import_module("prod")
    edge = {name: getattr(settings, name) for name in prod.EDGE_SETTINGS}

    config = prod.render_nginx(
        tmp_path,
        port=18099,
        web="127.0.0.1:18100",
        ws="127.0.0.1:18101",
        settings={**edge, "CORS_ALLOWED_ORIGINS": origins},
    )
    tested = subprocess.run(
        [prod.nginx_binary(), "-t", "-c", str(config), "-p", str(tmp_path), "-e", "stderr"],
        capture_output=True,
        text=True,
    )

    assert tested.returncode == 0, tested.stderr
