"""Pages of the project itself: the favicon, the headers every server-rendered page sends, and the
answer to an error no view handled."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from django.http import FileResponse, HttpRequest, HttpResponse
from django.views import defaults
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

from paygo.api.errors import CacheUnavailable, DatabaseBusy, unavailable, unavailable_response
from paygo.api.middleware import is_api_request

FAVICON = Path(__file__).resolve().parent / "static" / "paygo" / "favicon.ico"

# The pages load only this site's own files and talk only to this site (its API and its sockets:
# 'self' covers ws:// and wss:// of the same host). A page that keeps a token in sessionStorage
# must run no script but its own.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)


@require_safe
@cache_control(public=True, max_age=86400)
def favicon(request: HttpRequest) -> FileResponse:
    return FileResponse(FAVICON.open("rb"), content_type="image/x-icon")


def page(view):
    """A server-rendered page for people: GET only, with PAGE_POLICY and no referrer sent out."""

    @require_safe
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = PAGE_POLICY
        response["Referrer-Policy"] = "same-origin"
        return response

    return wrapped


BUSY_PAGES = {DatabaseBusy: "no database connection was free.", CacheUnavailable: "its cache did not answer."}


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500. A request that found the connection pool exhausted, or the cache not answering,
    outside an API view (in a middleware, on a page of the admin) is a 503 to retry, like one
    inside; anything else is a 500."""
    refusal = unavailable(sys.exc_info()[1])
    if refusal is None:
        return defaults.server_error(request)
    if is_api_request(request):
        return unavailable_response(refusal)
    response = HttpResponse(
        f"PayGo is busy: {BUSY_PAGES[refusal]} Please try again in a few seconds.",
        status=503,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(refusal.wait)
    return response
