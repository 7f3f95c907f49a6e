"""WebSocket routes of every app."""

from django.urls import path

from notifications.consumers import NotificationsConsumer
from streaming.consumers import StreamConsumer

websocket_urlpatterns = [
    path("ws/notifications/", NotificationsConsumer.as_asgi()),
    path("ws/streams/<str:session_id>/", StreamConsumer.as_asgi()),
]
