"""A Content-Type header Django cannot read is the API's 400, through both entry points the servers
run (gunicorn's paygo.wsgi, Daphne's paygo.asgi), never the server's HTML 500: Django reads the
header while it builds the request, before any middleware (paygo/api/requests.py)."""

from __future__ import annotations

import io
import json

import pytest
from channels.testing import HttpCommunicator

from paygo.asgi import application as asgi_application
from paygo.wsgi import application as wsgi_application

pytestmark = pytest.mark.django_db(transaction=True)  # the handlers close connections as a request ends

UNREADABLE = [
    pytest.param("text/plain; a*=foo''%41", id="an RFC 2231 parameter in an unknown encoding"),
    pytest.param("text/plain; charset=base64", id="a charset that is a codec but no text encoding"),
    pytest.param("application/json; charset=rot13", id="JSON in rot13"),
    pytest.param("application/json; charset=no-such-charset", id="a charset nobody knows"),
]


def _wsgi(method: str, path: str, query: str, content_type: str, body: bytes) -> tuple[int, dict, bytes]:
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }
    content = b"".join(wsgi_application(environ, start_response))
    return answer["status"], answer["headers"], content


async def _asgi(method: str, path: str, query: str, content_type: str, body: bytes) -> tuple[int, dict, bytes]:
    communicator = HttpCommunicator(
        asgi_application, method, f"{path}?{query}" if query else path, body=body,
        headers=[(b"host", b"localhost"), (b"content-type", content_type.encode("latin1"))],
    )  # fmt: skip
    response = await communicator.get_response(timeout=10)
    return response["status"], {k.decode(): v.decode() for k, v in response["headers"]}, response["body"]


REQUESTS = [
    pytest.param("GET", "/api/v1/health", "", b"", id="GET health"),
    pytest.param("GET", "/api/v1/service", "page=1", b"", id="GET with a query string"),
    pytest.param("POST", "/api/v1/auth/login", "", b'{"email": "a@example.com", "password": "x"}', id="POST login"),
]


def _is_the_apis_400(status: int, headers: dict, body: bytes) -> None:
    assert status == 400, (status, body[:300])
    assert headers["Content-Type"].startswith("application/json"), headers
    answer = json.loads(body)
    assert answer["code"] == "bad_content_type"
    assert answer["statusCode"] == 400 and "Content-Type" in answer["message"]


@pytest.mark.parametrize("content_type", UNREADABLE)
@pytest.mark.parametrize(("method", "path", "query", "body"), REQUESTS)
def test_through_wsgi(content_type, method, path, query, body):
    _is_the_apis_400(*_wsgi(method, path, query, content_type, body))


@pytest.mark.parametrize("content_type", UNREADABLE)
@pytest.mark.parametrize(("method", "path", "query", "body"), REQUESTS)
async def test_through_asgi(content_type, method, path, query, body):
    _is_the_apis_400(*await _asgi(method, path, query, content_type, body))


@pytest.mark.parametrize("entry", ["wsgi", "asgi"])
async def test_a_page_outside_the_api_is_served_whatever_its_content_type(entry):
    """Pages never read a body by its type: the header is read as absent there."""
    if entry == "wsgi":
        from asgiref.sync import sync_to_async

        status, _, _ = await sync_to_async(_wsgi)("GET", "/", "", "text/plain; a*=foo''%41", b"")
    else:
        status, _, _ = await _asgi("GET", "/", "", "text/plain; a*=foo''%41", b"")
    assert status == 200


@pytest.mark.parametrize("entry", ["wsgi", "asgi"])
async def test_a_readable_charset_is_read_as_before(entry, alice):
    """A body in a declared text charset other than UTF-8 is decoded with it."""
    body = '{"email": "alice@example.com", "password": "wrong — é"}'.encode("latin-1", errors="replace")
    args = ("POST", "/api/v1/auth/login", "", "application/json; charset=latin-1", body)
    if entry == "wsgi":
        from asgiref.sync import sync_to_async

        status, _, content = await sync_to_async(_wsgi)(*args)
    else:
        status, _, content = await _asgi(*args)
    assert (status, json.loads(content)["code"]) == (401, "invalid_credentials")


def test_a_json_body_in_a_codec_that_is_no_text_encoding_is_a_400_in_process(anon):
    """The JSON parser's own refusal, for any request that reaches it with such an encoding."""
    response = anon.generic("POST", "/api/v1/auth/login", b"{}", content_type="application/json; charset=base64")

    assert response.status_code == 400
    assert "not a text encoding" in response.json()["message"]
