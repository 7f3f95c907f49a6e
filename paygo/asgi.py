"""ASGI entry point: HTTP through Django, WebSockets through Channels with JWT auth."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paygo.settings")

from paygo.api.requests import asgi_application

django_asgi_app = asgi_application()  # Django's, whose requests read any Content-Type (paygo.api.requests)

from paygo.checks import require_static_manifest  # noqa: E402

require_static_manifest()  # with DEBUG off, no manifest: refuse to start (README, Production)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up)

from paygo.api.bodies import BodyLimitMiddleware  # noqa: E402
from paygo.routing import websocket_urlpatterns  # noqa: E402
from paygo.ws import socket_auth  # noqa: E402
from wallets.chipi.gateway import preload_sdk  # noqa: E402

preload_sdk()  # Chipi's SDK loads in seconds: not on the first request that needs it

# No Origin check on token sockets: a page on another origin cannot get a user's token, and the web
# frontend lives on another origin anyway. The admin's session cookie counts only on a socket opened
# by a page of this site (paygo/ws.py).
application = ProtocolTypeRouter(
    {
        # Every body is held to its size limit as it arrives, whichever ASGI server streams it.
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": socket_auth(URLRouter(websocket_urlpatterns)),
    }
)
