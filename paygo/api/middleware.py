"""Request ids for logs and responses, and the guarantee that no API client ever gets HTML."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse

from paygo.api.bodies import body_limit, too_large_message
from paygo.api.errors import error_response, exception_to_response
from paygo.api.text import NUL

logger = logging.getLogger("paygo.api")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
client_ip_var: contextvars.ContextVar[str] = contextvars.ContextVar("client_ip", default="-")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # django.request logs after the middleware has returned (and, under ASGI, in another
        # context), but it attaches the request itself: take the id from there first.
        request = getattr(record, "request", None)
        record.request_id = getattr(request, "request_id", None) or request_id_var.get()
        # The client as paygo.api.forwarded settled it (REMOTE_ADDR), not a proxy's address.
        meta = getattr(request, "META", None) or {}
        record.client_ip = meta.get("REMOTE_ADDR") or client_ip_var.get()
        return True


class RequestIdMiddleware:
    """Takes the caller's X-Request-ID when it is sane, else makes one; echoes it back. The id and
    the client's address go on every log record of the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        client_token = client_ip_var.set(request.META.get("REMOTE_ADDR") or "-")
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
            client_ip_var.reset(client_token)
        response["X-Request-ID"] = request_id
        return response


class SyncMiddlewareChain:
    """Last in MIDDLEWARE and synchronous only, so that under ASGI (`manage.py serve`, Daphne) Django
    runs the whole middleware chain in the request's one thread, as WSGI does.

    Django runs a middleware in async mode when everything below it is async, and PayGo's own
    middlewares (above) are synchronous: the ones between (sessions, CSRF, auth, messages, axes)
    ran in async mode, and each of their process_request and process_response went to the
    request's thread and back, a dozen hand-offs per request (about 15% of a simple API request's
    time under Daphne). Under WSGI (gunicorn) it is a no-op, as everything there is synchronous.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)


# /api/ as a client may mistype it: doubled slashes and backslashes (nginx routes "//api/..." as /api/
# but passes the path as written) and another case (/API/v1/..., /Api/...: the routes are lower-case,
# so these are no route, but they are the API's). Django's HTML 404 must not answer those either, nor
# a plain HTTP request on a socket path (/ws/...: the API's sockets, without the upgrade).
_API_PATH = re.compile(r"^[/\\]+(?:api|ws)(?:[/\\]|$)", re.IGNORECASE)


def is_api_request(request: HttpRequest) -> bool:
    return _API_PATH.match(request.path) is not None


class ApiErrorMiddleware:
    """Under /api/, every error leaves as the JSON error format, and no answer is cached.

    DRF views already answer through paygo.api.errors.exception_handler; this catches what happens
    outside them: unknown paths, Django's own 404/500 pages (HTML, or the DEBUG technical pages),
    CSRF failures, oversized bodies, and exceptions that escape a view.

    API answers carry tokens, balances and personal data: each is sent with `Cache-Control:
    no-store` (no browser, proxy or CDN keeps a copy), unless its view said how to cache it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api_request(request):
            return self.get_response(request)
        response = self._unreadable(request) or self._body_too_big(request) or self.get_response(request)
        if response.status_code >= 400 and not _is_json(response):
            replacement = error_response(response.status_code)
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    replacement[header] = response[header]
            response = replacement
        response.setdefault("Cache-Control", "no-store")
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_request(request):
            return None
        response = exception_to_response(exception)
        if response is None:
            logger.exception("Unhandled error on %s %s", request.method, request.path)
            return error_response(500)
        return response

    @staticmethod
    def _unreadable(request: HttpRequest) -> HttpResponse | None:
        """A Content-Type header the request could not read (paygo.api.requests)."""
        refusal = getattr(request, "content_type_refusal", None)
        return error_response(400, refusal, code="bad_content_type") if refusal else None

    @staticmethod
    def _body_too_big(request: HttpRequest) -> HttpResponse | None:
        """A declared length over the limit (paygo.api.bodies holds every body to it as it is read
        under ASGI; this is for requests that reach Django any other way)."""
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "Content-Length is not a number.", code="bad_request")
        limit = body_limit(request.META.get("CONTENT_TYPE"))
        if length > limit:
            return error_response(413, too_large_message(limit), code="too_large")
        return None


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


class QueryNulMiddleware:
    """A NUL in a query string outside the API (the admin's list filters, `?status__exact=%00`) is
    a 400 before any view reads it: PostgreSQL cannot compare text with a NUL, and the query the
    view built from it failed in the database driver (a 500). The API checks its own parameters,
    naming the field (paygo.api.text)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api_request(request) and any(
            NUL in key or any(NUL in value for value in values) for key, values in request.GET.lists()
        ):
            raise BadRequest("The query string must not contain the NUL character.")
        return self.get_response(request)
