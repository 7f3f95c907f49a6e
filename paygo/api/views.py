"""Views of the plumbing itself: health, and the JSON answer for unknown API paths."""

from __future__ import annotations

import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
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
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.send)(channel, {"type": "health.ping"})
    if async_to_sync(layer.receive)(channel).get("type") != "health.ping":
        raise RuntimeError("channel layer did not deliver")


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Health of the database, cache and channel layer",
        responses={
            (200, "application/json"): inline_serializer(
                "Health", {name: serializers.CharField() for name in ("status", "database", "cache", "channelLayer")}
            )
        },
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
