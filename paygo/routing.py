"""WebSocket routes of every app."""

from django.urls import path, re_path

from notifications.consumers import NotificationsConsumer
from paygo.ws import NotFoundConsumer
from streaming.consumers import StreamConsumer

websocket_urlpatterns = [
    path("ws/notifications/", NotificationsConsumer.as_asgi()),
    path("ws/streams/<str:session_id>/", StreamConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),  # last: every other path
]
