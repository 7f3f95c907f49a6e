"""WSGI entry point (HTTP only; production serves ASGI through Daphne)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paygo.settings")
application = get_wsgi_application()

from paygo.checks import require_static_manifest  # noqa: E402

require_static_manifest()  # with DEBUG off, no manifest: refuse to start (README, Production)
