"""The operators' dashboard inside the Django admin (/admin/dashboard/): the staff API's figures, drawn."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from dashboards import selectors
from dashboards.periods import DAY, PERIODS, PeriodError, Window, parse_tz, window
from dashboards.serializers import WindowQuerySerializer
from paygo.api.permissions import staff_has

TIME_ZONES = (
    "UTC",
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Paris",
    "Africa/Lagos",
    "Asia/Tokyo",
)


def _window(request: HttpRequest) -> tuple[Window, str]:
    """The window the form asks for, or the last 30 days in UTC and why."""
    now = timezone.now()
    query = WindowQuerySerializer(data=request.GET, default_period=DAY)
    if not query.is_valid():
        error = "; ".join(f"{field}: {messages[0]}" for field, messages in query.errors.items())
        return window(period=DAY, tz=parse_tz("UTC"), now=now), error
    values = query.validated_data
    try:
        span = window(
            period=values["period"], tz=values["tz"], now=now, since=values.get("from"), until=values.get("to")
        )
    except PeriodError as exc:
        return window(period=DAY, tz=parse_tz("UTC"), now=now), f"{exc.field}: {exc}"
    return span, ""


def operator_dashboard(request: HttpRequest) -> HttpResponse:
    """Staff with the platform overview permission, as the API's admin overview asks (paygo/urls.py
    wraps it in admin_view, which sends anyone else to the login page)."""
    if not staff_has(request.user, selectors.PLATFORM_OVERVIEW):
        raise PermissionDenied
    span, error = _window(request)
    overview = selectors.admin_overview(window=span, now=timezone.now(), refresh=request.GET.get("refresh") == "1")
    context = {
        **admin.site.each_context(request),
        "title": "Operator dashboard",
        "overview": overview,
        "error": error,
        "periods": PERIODS,
        "time_zones": TIME_ZONES if overview["tz"] in TIME_ZONES else (overview["tz"], *TIME_ZONES),
    }
    return TemplateResponse(request, "admin/dashboards/operator.html", context)


def site_header() -> str:
    """Every admin page's header: it names the Chipi sandbox while the money is simulated."""
    if selectors.chipi_status()["mode"] == "sandbox":
        return "PayGo operations · Chipi sandbox: simulated money"
    return "PayGo operations"
