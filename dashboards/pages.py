"""The landing page at /: what PayGo is, where everything is, and the demo's sign-ins when the
demo data (manage.py seed_demo) is in the database."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.template.response import TemplateResponse

from dashboards import demo
from paygo.views import page


@page
def home(request: HttpRequest) -> TemplateResponse:
    context = {
        "demo_logins": demo.credentials(users=2, vendors=1),
        "demo_password": demo.PASSWORD,
        "idle_seconds": settings.SESSION_IDLE_SECONDS,
    }
    return TemplateResponse(request, "home.html", context)
