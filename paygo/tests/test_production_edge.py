"""The production shape's edge (`make prod`: nginx in front of gunicorn and Daphne), with the
production settings' defaults, HTTPS redirect included, behind a TLS proxy as an operator runs it:
every request refused on its form gets the API's JSON 4xx, from nginx or the app, never an HTML
page or a 500; links keep the address the client used; a request the TLS proxy forwarded is not
redirected to itself.

Each request here says what the TLS proxy in front says (X-Forwarded-Proto: https), from the
address make prod is told is that proxy's (TLS_PROXIES: 127.0.0.1), except the ones that check the
redirect of plain HTTP.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import database_url, money_db
from paygo.tests.test_production_settings import (
    ROOT,
    SANDBOX_CHIPI,
    _free_port,
    make_prod,
    production_env,
    static_root,  # noqa: F401 (a fixture)
)

pytestmark = pytest.mark.timeout(600)

FROM_THE_TLS_PROXY = b"X-Forwarded-Proto: https\r\n"
TLS_PROXY = "127.0.0.1"  # the operator's TLS proxy, as make prod is told (TLS_PROXIES)
ANOTHER_PEER = "127.0.0.2"  # a client connecting to nginx directly
FRONTEND = "https://app.example.com"  # the operator's CORS_ALLOWED_ORIGINS


@pytest.fixture(scope="module")
def media_root():
    """A MEDIA_ROOT nginx's workers can read (they drop to an unprivileged user; pytest's own
    temporary folders are its user's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="paygo-media-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def prod(static_root, media_root, django_db_setup, django_db_blocker):  # noqa: F811 (the fixture imported above)
    """make prod with production settings; yields (nginx's port, Daphne's port)."""
    port = _free_port()
    env = production_env(
        static_root,
        MEDIA_ROOT=str(media_root),
        CHIPI_API_KEY=None,
        **SANDBOX_CHIPI,
        DATABASE_URL=database_url(),
        PORT=str(port),
        ALLOWED_HOSTS="127.0.0.1",
        CORS_ALLOWED_ORIGINS=FRONTEND,
        TLS_PROXIES=TLS_PROXY,
        WEB_WORKERS="2",
        CELERY_CONCURRENCY="1",
        CACHE_KEY_PREFIX=os.environ.get("CACHE_KEY_PREFIX"),
        CHANNEL_LAYER_PREFIX=os.environ.get("CHANNEL_LAYER_PREFIX"),
    )
    # Stopped with a SIGKILL, which prod.py cannot catch: its processes end with it all the same
    # (make_prod checks; test_production_settings' stack is stopped with a SIGHUP).
    with django_db_blocker.unblock(), make_prod(env, stop_with=signal.SIGKILL) as (_, output):
        yield port, int(re.search(r"ws 127\.0\.0\.1:(\d+)", output[-1]).group(1))


def edge_settings(prod_py) -> dict:
    """What prod.py reads from the settings for nginx, read in this process."""
    from django.conf import settings

    return {name: getattr(settings, name) for name in prod_py.EDGE_SETTINGS}


def send(port: int, data: bytes, *, source: str = TLS_PROXY) -> tuple[int, dict[str, str], bytes]:
    """A raw request on a connection of its own from `source`; the answer's status, headers
    (lower-case) and body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
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
    # Headers nginx passes on and gunicorn refused with its own HTML page: a control byte in any
    # header's value, a Content-Type sent twice.
    ("a control byte in a header", request(b"/api/v1/health", b"X-Note: a\x01b\r\n"), 400),
    ("an escape sequence in a header", request(b"/api/v1/health", b"X-Note: \x1b[31mred\r\n"), 400),
    ("DEL in the Idempotency-Key", request(b"/api/v1/health", b"Idempotency-Key: k\x7f\r\n"), 400),
    ("a control byte in a cookie", request(b"/api/v1/health", b"Cookie: csrftoken=\x01\r\n"), 400),
    (
        "a Content-Type twice",
        request(b"/api/v1/health", b"Content-Type: application/json\r\nContent-Type: application/json\r\n"),
        400,
    ),
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


def test_a_body_the_app_refuses_before_reading_it_is_answered_never_a_502(prod):
    """nginx lets API_MAX_UPLOAD_BYTES through to /api/v1/images whatever the Content-Type; the app
    refuses a body that is not multipart past DATA_UPLOAD_MAX_MEMORY_SIZE from its declared length,
    and an upload without a token before it reads it. gunicorn closed the connection with the body
    unread, nginx still writing it got a broken pipe, and the client a 502 "it may have been done"
    (a review: 2 to 3 times in 4)."""
    size = 5_000_000  # under API_MAX_UPLOAD_BYTES: nginx passes it on
    not_multipart = post(b"/api/v1/images", b"x" * size, b"image/png")
    part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    without_a_token = post(b"/api/v1/images", part + b"x" * size + b"\r\n--b--\r\n", b"multipart/form-data; boundary=b")

    answers = [send(prod[0], raw) for _ in range(6) for raw in (not_multipart, without_a_token)]

    assert [status for status, _, _ in answers] == [413, 401] * 6, [(s, body[:120]) for s, _, body in answers]
    assert all(headers["content-type"] == "application/json" for _, headers, _ in answers)


def handshake(target: bytes, extra: bytes = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") -> bytes:
    """A WebSocket opening handshake, whose connection closes after a refusal (send() reads until it
    does)."""
    upgrade = b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    return request(target, upgrade + extra).replace(b"Connection: close", b"Connection: Upgrade, close")


@pytest.mark.parametrize("through", ["nginx", "Daphne"])
def test_a_plain_http_request_on_a_socket_path_gets_the_apis_json(prod, through):
    """Without the upgrade, /ws/ answered Django's HTML 404 page."""
    port = prod[0] if through == "nginx" else prod[1]

    status, headers, body = send(port, request(b"/ws/notifications/?token=abc"))

    assert (status, headers["content-type"]) == (404, "application/json"), body[:200]
    assert json.loads(body)["code"] == "not_found"


@pytest.mark.parametrize(
    "raw",
    [
        handshake(b"/ws/notifications/").replace(b"Version: 13", b"Version: 99"),
        handshake(b"/ws/notifications/", b""),
        handshake(b"/ws/notifications/", b"Sec-WebSocket-Key: short\r\n"),
    ],
    ids=["an unknown version", "no key", "a malformed key"],
)
def test_a_refused_websocket_handshake_answers_in_the_apis_format(prod, raw):
    """Daphne (autobahn) refused these with a status line and no body: the reason only in the line."""
    status, headers, body = send(prod[0], raw)

    assert (status, headers["content-type"]) == (400, "application/json"), (status, headers, body[:200])
    answer = json.loads(body)
    assert answer["statusCode"] == 400 and answer["code"] == "bad_handshake"
    assert answer["message"].startswith("The WebSocket handshake was refused: ")


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


def test_a_client_that_is_not_the_tls_proxy_cannot_claim_https(prod):
    """nginx passed on anyone's X-Forwarded-Proto, and PayGo believes nginx: a client over plain http
    saying "https" was served, HSTS and all, instead of redirected."""
    claiming = send(prod[0], request(b"/api/v1/health"), source=ANOTHER_PEER)
    forwarded = send(prod[0], request(b"/api/v1/health"), source=TLS_PROXY)

    assert claiming[0] == 301, (claiming[0], claiming[2][:200])
    assert claiming[1]["location"] == f"https://127.0.0.1:{prod[0]}/api/v1/health"
    assert "strict-transport-security" not in claiming[1]
    assert forwarded[0] == 200
    assert "strict-transport-security" in forwarded[1]


def test_uploaded_images_are_served_as_images_and_nothing_else_is(prod, media_root):
    """Uploads live in MEDIA_ROOT, which Django serves only with DEBUG on: under make prod every
    image's url was a 404 until nginx served the folder."""
    from PIL import Image as Picture

    (media_root / "images").mkdir(exist_ok=True)
    Picture.new("RGB", (3, 2), (200, 10, 10)).save(media_root / "images" / "a1b2.png")
    (media_root / "images" / "page.html").write_text("<script>alert(1)</script>")

    status, headers, body = send(prod[0], request(b"/media/images/a1b2.png"))
    assert status == 200
    assert headers["content-type"] == "image/png"
    assert headers["x-content-type-options"] == "nosniff"
    assert Picture.open(io.BytesIO(body)).size == (3, 2)
    status, headers, body = send(prod[0], request(b"/media/images/page.html"))  # no upload is named so
    assert (status, headers["content-type"]) == (200, "application/octet-stream")
    assert headers["content-security-policy"] == "default-src 'none'; sandbox"
    for missing in (b"/media/images/none.png", b"/media/images/", b"/media/"):  # no file, no listing
        status, headers, body = send(prod[0], request(missing))
        assert (status, headers["content-type"]) == (404, "application/json"), missing
        assert json.loads(body)["code"] == "not_found"
    status, headers, body = send(prod[0], post(b"/media/images/a1b2.png", b"{}"))  # nothing to post there
    assert (status, headers["content-type"], json.loads(body)["code"]) == (
        405,
        "application/json",
        "method_not_allowed",
    )


def test_tls_proxies_are_addresses_or_networks_and_none_by_default(tmp_path, prod_py):
    assert prod_py.tls_proxies({}) == []
    named = prod_py.tls_proxies({"TLS_PROXIES": " 10.0.0.5, 10.1.0.0/16,,::1 "})
    assert named == ["10.0.0.5/32", "10.1.0.0/16", "::1/128"]
    with pytest.raises(SystemExit, match="TLS_PROXIES"):
        prod_py.tls_proxies({"TLS_PROXIES": "proxy.example.com"})
    # The app reads the X-Forwarded-For of nginx and of the TLS proxies behind it, and the operator's.
    assert prod_py.trusted_proxies({}, []) == "127.0.0.1"
    assert prod_py.trusted_proxies({"TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"}, ["10.0.0.5/32"]) == (
        "10.0.0.0/8,127.0.0.1,10.0.0.5/32"
    )

    def rendered(proxies: list[str]) -> str:
        config = prod_py.render_nginx(
            tmp_path,
            port=18099,
            web="127.0.0.1:18100",
            ws="127.0.0.1:18101",
            settings=edge_settings(prod_py),
            tls=proxies,
        )
        tested = subprocess.run(
            [prod_py.nginx_binary(), "-t", "-c", str(config), "-p", str(tmp_path), "-e", "stderr"],
            capture_output=True,
            text=True,
        )
        assert tested.returncode == 0, tested.stderr
        return config.read_text()

    assert "geo $from_tls_proxy { default 0;  }" in rendered([])
    assert "geo $from_tls_proxy { default 0; 10.0.0.5/32 1; ::1/128 1; }" in rendered(["10.0.0.5/32", "::1/128"])


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
def test_every_origin_the_app_takes_makes_a_configuration_nginx_takes(tmp_path, prod_py, origins):
    """nginx's map refuses a string named twice (it compares them ignoring case), and prod.py
    refused "null" (a sandboxed page's origin, which django-cors-headers takes)."""
    prod = prod_py
    edge = edge_settings(prod)

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


# --- An upstream that fails: "nothing was done" only when the request never reached one -----------
# nginx on deploy/nginx.conf as make prod renders it, in front of fake upstreams.


@contextlib.contextmanager
def nginx_in_front_of(
    prod_py,
    run_dir,
    *,
    web: str,
    ws: str,
    http_read_timeout: str | None = None,
    worker_connections: int | None = None,
    log: Path | None = None,
):
    """nginx on the rendered configuration, with `web` and `ws` as its upstreams; yields its port.
    `http_read_timeout` replaces the HTTP locations' proxy_read_timeout, `worker_connections` the
    connections nginx may hold (one worker process then): a test's overrides, the one way the
    configuration then differs from production's. Its error log goes to `log` if given."""
    port = _free_port()
    edge = {**edge_settings(prod_py), "CORS_ALLOWED_ORIGINS": [FRONTEND]}
    config = prod_py.render_nginx(run_dir, port=port, web=web, ws=ws, settings=edge)
    if http_read_timeout:
        text = config.read_text()
        websockets = re.search(WEBSOCKET_LOCATION, text).group()
        text, count = re.subn(
            r"proxy_read_timeout \S+;", f"proxy_read_timeout {http_read_timeout};", text.replace(websockets, "\0")
        )
        assert count == 1
        config.write_text(text.replace("\0", websockets))
    if worker_connections:
        text, count = re.subn(
            r"worker_connections \d+;", f"worker_connections {worker_connections};", config.read_text()
        )
        assert count == 1
        config.write_text(text.replace("worker_processes auto;", "worker_processes 1;", 1))
    nginx = subprocess.Popen(
        [prod_py.nginx_binary(), "-p", str(run_dir), "-c", str(config), "-e", "stderr"],
        stderr=log.open("wb") if log else None,
    )
    try:
        for _ in range(100):
            assert nginx.poll() is None, "nginx exited while starting"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


WEBSOCKET_LOCATION = r"location /ws/ \{(?:[^{}]|\{[^{}]*\})*\}"  # one level of braces inside (its if)


def _http_part(config: str) -> str:
    """The configuration without its WebSocket location (whose timeouts are ordered against Daphne's)."""
    return re.sub(WEBSOCKET_LOCATION, "", config)


def _read_request(conn: socket.socket) -> bytes:
    """A request read whole off `conn` (its body by Content-Length); its body."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    while len(body) < int(lengths[0] if lengths else 0) and (chunk := conn.recv(65536)):
        body += chunk
    return body


@contextlib.contextmanager
def upstream(then: str):
    """A fake upstream on a free port: it reads each request whole, keeps its body, then closes the
    connection without a word (`then="close"`: a worker OOM-killed, or killed at gunicorn's
    --timeout, after it took the request) or holds it, silent (`then="hang"`: a worker still at
    work). Yields its address and the bodies it took."""
    server = socket.create_server(("127.0.0.1", 0))
    bodies: list[bytes] = []
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            bodies.append(_read_request(conn))
            if then == "close":
                conn.close()
            else:
                held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}", bodies
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        for conn in held:
            conn.close()


TRANSFER = json.dumps({"recipientEmail": "bob@example.com", "amount": "5", "token": "USDC"}).encode()


def transfer() -> bytes:
    """A transfer without an Idempotency-Key (the header is optional)."""
    return post(b"/api/v1/wallet/transfer", TRANSFER).replace(
        b"Content-Type", b"Authorization: Bearer x\r\nContent-Type", 1
    )


def _refused() -> str:
    return f"127.0.0.1:{_free_port()}"  # nothing listens there


def test_a_request_the_upstream_took_and_dropped_is_told_its_outcome_is_unknown(tmp_path, prod_py):
    """A worker killed after it took the transfer (OOM, gunicorn's timeout after its commit): the
    client was told 503 "nothing was done", and one that sent it again without an Idempotency-Key
    moved the money twice (found by a review)."""
    from_the_frontend = transfer().replace(b"Connection:", b"Origin: %s\r\nConnection:" % FRONTEND.encode(), 1)
    with upstream("close") as (web, received), nginx_in_front_of(prod_py, tmp_path, web=web, ws=_refused()) as port:
        status, headers, body = send(port, from_the_frontend)

    assert received == [TRANSFER]  # taken once, not passed to another try
    assert b"nothing was done" not in body, body
    assert status == 502, body
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["statusCode"] == 502 and answer["code"] == "outcome_unknown"
    assert "Idempotency-Key" in answer["message"]
    assert "retry-after" not in headers  # no invitation to send it again as it is
    assert headers["access-control-allow-origin"] == FRONTEND  # the page that sent it reads why


def test_a_request_that_timed_out_at_the_upstream_is_told_its_outcome_is_unknown(tmp_path, prod_py):
    """An upstream that took the transfer and is still at work when nginx stops waiting (504): it
    may yet commit. The HTTP locations' proxy_read_timeout is overridden to 1 s here (production's is
    above gunicorn's --timeout: test_gunicorn_gives_up_on_a_request_before_nginx_does)."""
    with (
        upstream("hang") as (web, received),
        nginx_in_front_of(prod_py, tmp_path, web=web, ws=_refused(), http_read_timeout="1s") as port,
    ):
        status, headers, body = send(port, transfer())

    assert received == [TRANSFER]
    assert status == 504, body
    answer = json.loads(body)
    assert answer == {"message": answer["message"], "statusCode": 504, "code": "outcome_unknown"}
    assert "nothing was done" not in answer["message"] and "Idempotency-Key" in answer["message"]
    assert "retry-after" not in headers


@pytest.mark.parametrize("raw", [transfer(), handshake(b"/ws/notifications/")], ids=["web", "ws"])
def test_a_request_no_upstream_took_is_told_nothing_was_done(tmp_path, prod_py, raw):
    """Connections refused (the workers or Daphne down): the request reached nobody, and may be sent
    again as it is."""
    with nginx_in_front_of(prod_py, tmp_path, web=_refused(), ws=_refused()) as port:
        status, headers, body = send(port, raw)

    assert status == 503, body
    assert headers["retry-after"] == "5"
    assert json.loads(body) == {
        "message": "PayGo is unavailable for a moment; nothing was done. Try again shortly.",
        "statusCode": 503,
        "code": "unavailable",
    }


def test_a_post_an_upstream_took_is_never_passed_to_another(tmp_path, prod_py):
    """With more than one server in the upstream (an operator's), nginx passes a request that failed
    at one to the next only if it may (proxy_next_upstream): never a POST that one of them took. A
    GET failing the same way is passed on, which shows these upstreams would see a second try."""
    with upstream("close") as (first, one), upstream("close") as (second, other):
        # As an operator lists their servers; max_fails=0: neither is set aside after its failure.
        both = f"{first} max_fails=0; server {second} max_fails=0"
        with nginx_in_front_of(prod_py, tmp_path, web=both, ws=_refused()) as port:
            status, _, _ = send(port, transfer())
            taken = one + other
            send(port, request(b"/api/v1/health"))

    assert status == 502
    assert taken == [TRANSFER]
    assert len(one + other) == 3  # the POST once, the GET twice


def test_gunicorn_gives_up_on_a_request_before_nginx_does(tmp_path, prod_py):
    """gunicorn kills a sync worker silent for --timeout; nginx stops waiting for an answer after
    proxy_read_timeout. Were nginx's the shorter, it answered while the worker went on to commit."""
    config = prod_py.render_nginx(
        tmp_path, port=18099, web="127.0.0.1:18100", ws="127.0.0.1:18101", settings=edge_settings(prod_py)
    )
    (read_timeout,) = re.findall(r"proxy_read_timeout (\d+)s;", _http_part(config.read_text()))

    assert int(read_timeout) > prod_py.WEB_TIMEOUT_SECONDS + 10  # the arbiter notices within a second or so


def test_a_request_nginx_has_no_connection_left_to_pass_on_is_told_nothing_was_done(tmp_path, prod_py):
    """nginx out of connections (worker_connections, or file descriptors) when it opens one to an
    upstream answers its own 500, an HTML page: in the API's format, and as what it is, a request
    that reached nobody."""
    with (
        upstream("hang") as (web, taken),
        nginx_in_front_of(prod_py, tmp_path, web=web, ws=_refused(), worker_connections=4) as port,
        # The worker's listening socket and its channel to the master hold two; a client still
        # sending its request the third (an idle one's nginx would close to reuse).
        socket.create_connection(("127.0.0.1", port), timeout=5) as slow,
    ):
        slow.sendall(b"GET /api/v1/health HTTP/1.1\r\n")
        status, headers, body = send(port, transfer())

    assert status == 503, body
    assert headers["retry-after"] == "5"
    assert json.loads(body)["code"] == "unavailable"
    assert taken == []


def test_a_sockets_token_stays_out_of_nginxs_log(tmp_path, prod_py):
    """nginx logs a failure with the request line, and a socket's token may be in its query
    (?token=): every socket reset (routine) wrote a user's JWT to the operator's log. A request on
    a socket path without the upgrade is refused before Daphne, whose access log wrote it too."""
    log = tmp_path / "nginx.log"
    with (
        upstream("close") as (web, _),
        upstream("close") as (ws, taken),
        nginx_in_front_of(prod_py, tmp_path, web=web, ws=ws, log=log) as port,
    ):
        failed = send(port, handshake(b"/ws/notifications/?token=SECRET-JWT"))
        plain = send(port, request(b"/ws/notifications/?token=PLAIN-JWT"))
        control = send(port, request(b"/api/v1/health?mark=LOGGED"))  # the same failure, over HTTP

    text = log.read_text()
    assert failed[0] == control[0] == 502
    assert "LOGGED" in text  # nginx logs such a failure with its request line
    assert "SECRET-JWT" not in text and "PLAIN-JWT" not in text
    assert (plain[0], json.loads(plain[2])["code"]) == (404, "not_found")
    assert len(taken) == 1  # the handshake only: the plain request reached no server


# --- Clients that hold connections (slowloris) -----------------------------------------------------


def test_a_client_that_trickles_its_request_headers_is_cut_off_within_seconds(tmp_path, prod_py):
    """A client sending half a request's headers, then a header now and then, held its connection
    for nginx's default minute: 8,400 of them took every connection nginx had (a review)."""
    with (
        nginx_in_front_of(prod_py, tmp_path, web=_refused(), ws=_refused()) as port,
        socket.create_connection(("127.0.0.1", port), timeout=1) as slow,
    ):
        slow.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        cut = False
        deadline = time.monotonic() + 15
        while not cut and time.monotonic() < deadline:
            try:
                slow.sendall(b"X-Still-Here: 1\r\n")
                cut = slow.recv(4096) == b""
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                cut = True

    assert cut


def test_nginx_starts_without_a_warning(tmp_path, prod_py):
    """Its connections and open files as configured: asked for more open files than the system lets
    it have (worker_rlimit_nofile above the hard limit), each worker logged an alert at every start
    and kept fewer; fewer than worker_connections, nginx warns."""
    log = tmp_path / "nginx.log"
    with nginx_in_front_of(prod_py, tmp_path, web=_refused(), ws=_refused(), log=log) as port:
        send(port, request(b"/ws/notifications/"))  # answered by nginx alone (a 404), no upstream tried

    assert not re.search(r"\[(warn|error|crit|alert|emerg)\]", log.read_text()), log.read_text()


def _held_upload(port: int, source: str, extra: bytes = b"") -> socket.socket:
    """A connection whose request nginx has taken (its headers read, its body awaited) and whose body
    never comes."""
    held = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    raw = post(b"/api/v1/auth/login", b"").replace(b"Content-Length: 0", b"%sContent-Length: 100" % extra)
    held.sendall(raw.replace(b"Connection: close", b"Expect: 100-continue\r\nConnection: close"))
    # nginx says it waits for the body once the request passed its limits: then it counts.
    assert held.recv(4096).startswith(b"HTTP/1.1 100 Continue")
    return held


def test_one_client_address_holds_only_so_many_requests_at_once(prod):
    """A client that holds its connections past their headers (a body trickled, a socket kept open)
    held as many as it liked; behind the TLS proxy, the address counted is the client's (the last
    X-Forwarded-For entry, which that proxy wrote), not the proxy's."""
    limit = int(re.search(r"limit_conn perip (\d+);", (ROOT / "deploy" / "nginx.conf").read_text()).group(1))
    behind = b"X-Forwarded-For: 203.0.113.9, 198.51.100.7\r\n"
    held: list[socket.socket] = []
    try:
        held += [_held_upload(prod[0], ANOTHER_PEER) for _ in range(limit)]
        refused = send(prod[0], request(b"/api/v1/health"), source=ANOTHER_PEER)
        held += [_held_upload(prod[0], TLS_PROXY, behind) for _ in range(limit)]
        refused_behind = send(prod[0], request(b"/api/v1/health", behind))
        another_behind = send(prod[0], request(b"/api/v1/health", b"X-Forwarded-For: 198.51.100.8\r\n"))
        the_proxy_itself = send(prod[0], request(b"/api/v1/health"))
    finally:
        for connection in held:
            connection.close()

    status, headers, body = refused
    assert (status, headers.get("content-type")) == (429, "application/json"), (status, body[:200])
    assert json.loads(body)["code"] == "too_many_connections"
    assert headers["retry-after"] == "5"
    assert refused_behind[0] == 429
    assert another_behind[0] == 200 and the_proxy_itself[0] == 200


def test_sockets_have_an_allowance_of_their_own_per_address(prod):
    """Open WebSockets were counted with the requests in progress: 200 signed-in users behind one
    carrier's address (a socket each, held for hours) left none for the next one (review r21). With
    an address's requests at their limit, its socket handshake still reaches Daphne."""
    limit = int(re.search(r"limit_conn perip (\d+);", (ROOT / "deploy" / "nginx.conf").read_text()).group(1))
    held: list[socket.socket] = []
    try:
        held += [_held_upload(prod[0], ANOTHER_PEER) for _ in range(limit)]
        http = send(prod[0], request(b"/api/v1/health"), source=ANOTHER_PEER)
        socket_handshake = send(
            prod[0], handshake(b"/ws/notifications/").replace(b"Version: 13", b"Version: 99"), source=ANOTHER_PEER
        )
    finally:
        for connection in held:
            connection.close()

    assert http[0] == 429
    status, _, body = socket_handshake
    assert (status, json.loads(body)["code"]) == (400, "bad_handshake"), (status, body[:200])  # Daphne's answer
