"""WSGI entry point (HTTP only; production serves ASGI through Daphne)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paygo.settings")

from paygo.api.requests import wsgi_application

application = wsgi_application()  # Django's, whose requests read any Content-Type (paygo.api.requests)

from paygo.checks import require_static_manifest  # noqa: E402

require_static_manifest()  # with DEBUG off, no manifest: refuse to start (README, Production)
