"""The request classes the WSGI (gunicorn) and ASGI (Daphne) entry points build: Django's, whose
reading of the Content-Type header cannot fail.

Django parses the header while it builds the request, before any middleware runs: a parameter in
an unknown RFC 2231 encoding (`a*=foo''%41`) raised ValueError there, and a charset that names a
codec but not a text encoding (`charset=base64`, `rot13`, `zlib`) became the request's encoding,
whose first use (reading the query string) raised LookupError. Either left the server to answer
with its own HTML 500, on any path, for anyone. Here such a header is read as no Content-Type at
all and noted in `content_type_refusal`; ApiErrorMiddleware answers an API request that carries
one with a 400 in the API's format, and other pages never read a body by its type.
"""

from __future__ import annotations

import codecs

import django
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.asgi import ASGIRequest as DjangoASGIRequest
from django.core.handlers.wsgi import WSGIHandler as DjangoWSGIHandler
from django.core.handlers.wsgi import WSGIRequest as DjangoWSGIRequest
from django.utils.http import parse_header_parameters


def _is_text_encoding(name: str) -> bool:
    try:
        return codecs.lookup(name)._is_text_encoding
    except LookupError:
        return False


class _ReadableContentType:
    content_type_refusal: str | None = None

    def _set_content_type_params(self, meta) -> None:
        try:
            content_type, params = parse_header_parameters(meta.get("CONTENT_TYPE", ""))
        except ValueError:
            content_type, params = "", {}
            self.content_type_refusal = "The Content-Type header cannot be read."
        charset = params.get("charset")
        if charset is not None and not _is_text_encoding(charset):
            content_type, params = "", {}
            self.content_type_refusal = "The Content-Type's charset is not a text encoding this server knows."
        self.content_type, self.content_params = content_type, params
        if "charset" in params:
            self.encoding = params["charset"]


class WSGIRequest(_ReadableContentType, DjangoWSGIRequest):
    pass


class ASGIRequest(_ReadableContentType, DjangoASGIRequest):
    pass


class WSGIHandler(DjangoWSGIHandler):
    request_class = WSGIRequest


class ASGIHandler(DjangoASGIHandler):
    request_class = ASGIRequest


def wsgi_application() -> WSGIHandler:
    """django.core.wsgi.get_wsgi_application(), with these requests."""
    django.setup(set_prefix=False)
    return WSGIHandler()


def asgi_application() -> ASGIHandler:
    """django.core.asgi.get_asgi_application(), with these requests."""
    django.setup(set_prefix=False)
    return ASGIHandler()
