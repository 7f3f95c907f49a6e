"""Every class of error reaches an API client in the one JSON format, never as HTML."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings
from django.urls import path
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny

from paygo import urls as paygo_urls

pytestmark = pytest.mark.django_db


def assert_error(response, status_code: int, code: str | None = None) -> dict:
    assert response.status_code == status_code
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["statusCode"] == status_code
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["code"], str) and body["code"]
    if code:
        assert body["code"] == code
    return body


def test_malformed_json_is_400(anon):
    response = anon.post("/api/v1/auth/login", data='{"email": ', content_type="application/json")

    body = assert_error(response, 400, "malformed_json")
    assert body["message"].startswith("JSON parse error")


def test_wrong_content_type_is_415(anon):
    response = anon.post("/api/v1/auth/login", data="<xml/>", content_type="application/xml")

    assert_error(response, 415, "unsupported_media_type")


def test_unknown_api_path_is_json_404(anon):
    assert_error(anon.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(anon.post("/api/v2/auth/login", {}, format="json"), 404, "not_found")
    assert_error(anon.delete("/api/"), 404, "not_found")


def test_method_not_allowed_is_405(anon):
    response = anon.get("/api/v1/auth/login")

    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]


def test_validation_error_shape(anon):
    response = anon.post("/api/v1/auth/register", {"email": "x"}, format="json")

    body = assert_error(response, 400, "invalid")
    assert body["errors"]["email"] == ["Enter a valid email address."]
    assert body["errors"]["password"] == ["This field is required."]
    assert body["message"].endswith(": This field is required.") or body["message"].startswith("email:")


def test_body_too_large_is_413(anon):
    huge = '{"email": "' + "a" * 1_100_000 + '"}'

    response = anon.post("/api/v1/auth/login", data=huge, content_type="application/json")

    assert_error(response, 413, "too_large")


def test_not_authenticated_is_401(anon):
    assert_error(anon.get("/api/v1/auth/me"), 401, "not_authenticated")


@api_view(["GET"])
@permission_classes([AllowAny])
def _boom(request):
    raise RuntimeError("a bug")


def _django_boom(request):
    raise RuntimeError("a bug outside DRF")


urlpatterns = [
    path("api/v1/test-boom", _boom),
    path("api/v1/test-django-boom", _django_boom),
    *paygo_urls.urlpatterns,
]


@override_settings(ROOT_URLCONF=__name__, DEBUG=True)
@pytest.mark.parametrize("url", ["/api/v1/test-boom", "/api/v1/test-django-boom"])
def test_unhandled_exception_is_json_500_even_in_debug(client, url, caplog):
    response = client.get(url)

    body = assert_error(response, 500, "server_error")
    assert "a bug" not in body["message"]  # no internals leak to the client
    assert any("Unhandled error" in record.message for record in caplog.records)


@override_settings(DEBUG=True)
def test_debug_404_is_still_json(client):
    response = client.get("/api/v1/auth/unknown")

    assert_error(response, 404)


def test_non_api_paths_are_not_rewritten(client):
    response = client.get("/admin/")

    assert response.status_code == 302  # the admin's own login redirect


def test_request_id_is_echoed_or_made(anon):
    given = anon.get("/api/v1/health", HTTP_X_REQUEST_ID="abc-123")
    made = anon.get("/api/v1/health")

    assert given["X-Request-ID"] == "abc-123"
    assert len(made["X-Request-ID"]) == 32


def test_log_records_carry_the_request_id(anon, caplog):
    from paygo.api.middleware import RequestIdLogFilter

    anon.get("/api/v1/nothing-here", HTTP_X_REQUEST_ID="trace-42")

    records = [r for r in caplog.records if r.name == "django.request"]
    assert records
    for record in records:
        RequestIdLogFilter().filter(record)
    assert {r.request_id for r in records} == {"trace-42"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/API/v1/service"),
        ("GET", "/Api/v1/notifications"),
        ("POST", "/API/v1/auth/login"),
        ("GET", "/aPI"),
    ],
)
def test_an_api_path_in_another_case_gets_the_apis_404_not_djangos_page(anon, method, path):
    """Paths are case-sensitive, so /API/v1/... is no route of the API; but it is one a client
    mistyped, and Django's HTML 404 (or, for a POST, the CSRF failure page) answered it."""
    response = anon.generic(method, path)

    body = assert_error(response, 404, "not_found")
    assert response["Cache-Control"] == "no-store"
    assert body == {"message": "Not Found.", "statusCode": 404, "code": "not_found"}


@pytest.mark.parametrize("path", ["/ws/notifications/", "/ws/streams/1/?token=x", "/ws/nothing/", "/ws"])
def test_a_plain_http_request_on_a_socket_path_gets_the_apis_404_not_djangos_page(anon, path):
    """The sockets are the API's too: a request without the upgrade to one (a client that forgot it,
    or an ASGI server that passed it on as HTTP) got Django's HTML 404 page."""
    response = anon.get(path)

    assert_error(response, 404, "not_found")
    assert response["Cache-Control"] == "no-store"


def test_a_path_that_only_starts_like_the_api_is_not_the_apis(anon):
    assert not anon.get("/apis/v1/service")["Content-Type"].startswith("application/json")
    assert not anon.get("/APIary")["Content-Type"].startswith("application/json")
    assert not anon.get("/wsx/")["Content-Type"].startswith("application/json")


@pytest.mark.django_db(transaction=True)  # through the WSGI handler, which closes connections as a request ends
@pytest.mark.parametrize(
    "path", ["//api/v1/health", "///api/v1/wallet/balance", "/api\\v1/health", "//api", "//API/v1/health"]
)
def test_a_mistyped_api_path_gets_the_apis_404_not_djangos_page(path):
    """nginx routes "//api/..." as /api/ but passes the path as written: Django's HTML 404 answered.
    (Through the WSGI application: the test client reads a leading "//" as a host.)"""
    from paygo.tests.test_content_type import _wsgi

    status, headers, body = _wsgi("GET", path, "", "", b"")

    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["statusCode"] == 404


def test_a_host_not_served_is_a_json_400_logged_as_a_warning_without_a_traceback(anon, caplog, settings):
    """Anyone can send any Host: each one logged an ERROR with a traceback (django.security's
    DisallowedHost), an operator's alert per request. The 400 is a client's mistake, logged as one."""
    import logging

    settings.ALLOWED_HOSTS = ["api.paygo.example"]

    with caplog.at_level(logging.INFO):
        response = anon.get("/api/v1/health", HTTP_HOST="evil.example")

    assert_error(response, 400)
    assert [r.levelname for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert [r.getMessage() for r in caplog.records if r.name == "django.request"] == ["Bad Request: /api/v1/health"]


@pytest.mark.parametrize("value", ["csv", "yaml", "api", "json", ""])
def test_a_format_parameter_is_ignored_as_any_unknown_parameter_is(api, alice, value):
    """DRF read ?format= as a choice of renderer, and one it has not (csv, yaml) was a bare 404
    "Not found." on every endpoint: a client reading it took the balance for missing."""
    plain = api(alice).get("/api/v1/wallet/balance")

    response = api(alice).get(f"/api/v1/wallet/balance?format={value}")

    assert response.status_code == 200, response.json()
    assert response.json() == plain.json()
