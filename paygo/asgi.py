"""ASGI entry point: HTTP through Django, WebSockets through Channels with JWT auth."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paygo.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up)

from paygo.api.bodies import BodyLimitMiddleware  # noqa: E402
from paygo.routing import websocket_urlpatterns  # noqa: E402
from paygo.ws import JwtAuthMiddleware  # noqa: E402

# No Origin check on sockets: they authenticate with a bearer token, never a cookie, so a page on
# another origin cannot ride on a user's session; the web frontend lives on another origin anyway.
application = ProtocolTypeRouter(
    {
        # Every body is held to its size limit as it arrives, whichever ASGI server streams it.
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": JwtAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)
