"""ASGI entry point: HTTP through Django, WebSockets through Channels with JWT auth."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paygo.settings")
django_asgi_app = get_asgi_application()

from paygo.checks import require_static_manifest  # noqa: E402

require_static_manifest()  # with DEBUG off, no manifest: refuse to start (README, Production)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up)

from paygo.routing import websocket_urlpatterns  # noqa: E402
from paygo.ws import JwtAuthMiddleware  # noqa: E402

# No Origin check on sockets: they authenticate with a bearer token, never a cookie, so a page on
# another origin cannot ride on a user's session; the web frontend lives on another origin anyway.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": JwtAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)
