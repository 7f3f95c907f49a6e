"""Views of the plumbing itself: the API's index, health, and the JSON answer for unknown API paths."""

from __future__ import annotations

import asyncio
import uuid
from typing import NamedTuple

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import connection
from django.dispatch import receiver
from django.http import HttpResponse
from django.urls import reverse
from django.utils import translation
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.utils.mediatypes import _MediaType
from rest_framework.views import APIView


def _check(probe) -> str:
    try:
        probe()
    except Exception as exc:  # a health check reports failures rather than raising them
        return f"error: {exc.__class__.__name__}"
    return "ok"


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache() -> None:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "1", 5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return what was stored")
    cache.delete(key)


def _channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    if async_to_sync(_ping)(layer).get("type") != "health.ping":
        raise RuntimeError("channel layer did not deliver")


async def _ping(layer) -> dict:
    """A message through the layer and back, given up after REDIS_TIMEOUT_SECONDS (the layer's
    Redis client has no read timeout of its own: paygo/settings.py)."""

    async def round_trip() -> dict:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.ping"})
        return await layer.receive(channel)

    return await asyncio.wait_for(round_trip(), settings.REDIS_TIMEOUT_SECONDS)


# (section, where it starts, what it holds): the index's table of contents.
SECTIONS = (
    ("auth", "auth-login", "Sign up, in and out, refresh tokens, the caller: auth/register|login|refresh|logout|me."),
    ("wallet", "wallet-balance", "Balances, deposits, withdrawals, transfers, swaps, the ledger history."),
    ("services", "service-list", "The marketplace: vendors' priced services and their categories."),
    ("streams", "streams-start", "Metered sessions: start, stop, heartbeats (metrics), usage reports, my sessions."),
    ("consultations", "consultation-list", "Consultations between a user and a vendor, their messages and calls."),
    ("notifications", "notification-list", "In-app notifications and delivery preferences (email, SMS)."),
    ("profiles", "profile", "The caller's profile, public vendor profiles, images."),
    ("dashboard", "dashboard-user-overview", "Analytics for users, vendors and staff: dashboard/user|vendor|admin/..."),
    ("health", "health", "The database, the cache and the channel layer."),
)
WEBSOCKETS = (
    (
        "/ws/streams/<sessionId>/",
        "A session's live cost and usage: cost.tick, cost.charged, balance.low, session.stopped, metrics.updated.",
    ),
    ("/ws/notifications/", "The signed-in user's notifications as they are created."),
)


class ApiIndexView(APIView):
    """GET /api/v1/: where each part of the API is, and where its docs are."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="The API's index: its sections, its sockets and its docs",
        responses={
            200: inline_serializer(
                "ApiIndex",
                {
                    "name": serializers.CharField(),
                    "version": serializers.CharField(),
                    "docs": serializers.CharField(),
                    "schema": serializers.CharField(),
                    "sections": serializers.DictField(
                        child=inline_serializer(
                            "ApiSection", {"path": serializers.CharField(), "about": serializers.CharField()}
                        )
                    ),
                    "websockets": inline_serializer(
                        "ApiSocket", {"path": serializers.CharField(), "about": serializers.CharField()}, many=True
                    ),
                },
            )
        },
    )
    def get(self, request):
        return Response(
            {
                "name": settings.SPECTACULAR_SETTINGS["TITLE"],
                "version": settings.SPECTACULAR_SETTINGS["VERSION"],
                "docs": reverse("docs"),
                "schema": reverse("schema"),
                "sections": {name: {"path": reverse(route), "about": about} for name, route, about in SECTIONS},
                "websockets": [{"path": path, "about": about} for path, about in WEBSOCKETS],
            }
        )


HEALTH = inline_serializer(
    "Health", {name: serializers.CharField() for name in ("status", "database", "cache", "channelLayer")}
)


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Health of the database, cache and channel layer",
        responses=dict.fromkeys((200, 503), HEALTH),  # 503, with the same body, when a check fails
    )
    def get(self, request):
        checks = {"database": _check(_database), "cache": _check(_cache), "channelLayer": _check(_channel_layer)}
        healthy = all(value == "ok" for value in checks.values())
        return Response({"status": "ok" if healthy else "degraded", **checks}, status=200 if healthy else 503)


class ApiNotFoundView(APIView):
    """Any unknown path under /api/: a JSON 404 whatever the method."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    schema = None

    def _not_found(self, request, *args, **kwargs):
        raise exceptions.NotFound(f"No API endpoint at {request.path}.")

    get = post = put = patch = delete = head = options = _not_found


class DocsView(SpectacularSwaggerView):
    """GET /api/v1/docs/: drf-spectacular's Swagger UI page, for GET and HEAD only: its HTML
    renderer has no template for DRF's answer to OPTIONS (a 500 for anyone)."""

    http_method_names = ["get", "head"]


class _Rendered(NamedTuple):
    content: bytes
    content_type: str
    disposition: str


_SCHEMAS: dict[tuple, _Rendered] = {}


@receiver(setting_changed)
def _schema_settings_changed(**kwargs) -> None:
    _SCHEMAS.clear()


class _FormatNegotiation(DefaultContentNegotiation):
    """The schema's one `?format=` (json, yaml): URL_FORMAT_OVERRIDE is off, so that everywhere else
    it is a parameter like any other (DRF answered a format it has not with a bare 404). A format
    the schema has not either is ignored: the document is chosen by Accept, as without one."""

    def select_renderer(self, request, renderers, format_suffix=None):
        chosen = [renderer for renderer in renderers if renderer.format == request.query_params.get("format")]
        return super().select_renderer(request, chosen or renderers, format_suffix)


class SchemaView(SpectacularAPIView):
    """GET /api/v1/schema/: drf-spectacular's view, its document generated and rendered once per
    process for each of its formats.

    The document is a function of the code and the settings alone (everyone gets all of it,
    SERVE_PUBLIC), and anyone may ask for it: generated and rendered on every request, a request
    cost 0.16-0.20 s of a core as JSON and 0.25 s as YAML (the format `Accept: */*` gets); kept,
    about 1 ms (bench/schema_view.py), for a copy of its bytes per format. A request is answered
    from what is kept whatever else its query or its Accept's `q` say; only an Accept parameter
    that changes the rendering (`indent=4`) is answered as drf-spectacular answers it, so that no
    client can grow what is kept. The API has one language and one version: a `?lang=` is ignored
    (drf-spectacular generated the document anew for any string, 0.2-0.4 s a request, and Django
    kept a translation object for each), and so is a `?version=` (drf-spectacular wrote it into the
    Content-Disposition header, where a newline in it was a 500).
    """

    content_negotiation_class = _FormatNegotiation

    @extend_schema(exclude=True)  # as drf-spectacular's (SERVE_INCLUDE_SCHEMA is off)
    def get(self, request, *args, **kwargs):
        if "lang" in request.GET:
            request._request.GET = query = request.GET.copy()
            del query["lang"]
        renderer = request.accepted_renderer
        params = set(_MediaType(request.accepted_media_type).params) - {"q"}
        if params:
            return super().get(request, *args, **kwargs)
        key = (type(renderer), translation.get_language())
        kept = _SCHEMAS.get(key)
        if kept is None:
            response = super().get(request, *args, **kwargs)
            response.add_post_render_callback(lambda rendered: self._keep(key, rendered))
            return response
        return HttpResponse(
            kept.content, content_type=kept.content_type, headers={"Content-Disposition": kept.disposition}
        )

    def _get_version_parameter(self, request) -> None:
        return None

    @staticmethod
    def _keep(key: tuple, response) -> None:
        if response.status_code == 200:
            _SCHEMAS[key] = _Rendered(response.content, response["Content-Type"], response["Content-Disposition"])
