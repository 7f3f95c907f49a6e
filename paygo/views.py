"""Pages of the project itself: the favicon, and the headers every server-rendered page sends."""

from __future__ import annotations

import functools
from pathlib import Path

from django.http import FileResponse, HttpRequest
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

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
