"""Rate limits for the API (django-ratelimit, counted in the shared cache), and the login rule that
the API's /auth/login and the admin's /admin/login/ share.

The login rule: every attempt counts against the client address (RATELIMIT_LOGIN_PER_IP); failed
attempts count against the (email, client address) pair, which is locked out after
AXES_FAILURE_LIMIT of them for AXES_COOLOFF_TIME (django-axes, which both doors reach through
django.contrib.auth.authenticate). Never per email alone: an attacker's failures from elsewhere
must not lock the account's owner out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django_ratelimit import ALL
from django_ratelimit.core import _split_rate, is_ratelimited

from paygo.api.errors import TooManyRequests


def client_ip(request: HttpRequest) -> str:
    """The client's address, the one place every per-address limit reads it (django-ratelimit's
    "ip" key through RATELIMIT_IP_META_KEY, django-axes through AXES_CLIENT_IP_CALLABLE)."""
    return request.META.get("REMOTE_ADDR", "")


def enforce(request: HttpRequest, *, group: str, limits: list[tuple[str | Callable, str]]) -> None:
    """Count this request against each (key, rate) and raise 429 when any is over.

    `key` is anything django-ratelimit takes ("ip", "user", or a callable(group, request)). "ip" is
    REMOTE_ADDR, the client's address as paygo.api.forwarded settled it (a proxy's X-Forwarded-For
    counts only when the proxy is in TRUSTED_PROXIES).
    Every limit is counted, even after one trips, so a flood keeps being counted everywhere.
    """
    over = [
        is_ratelimited(request, group=f"{group}:{index}", key=key, rate=rate, method=ALL, increment=True)
        for index, (key, rate) in enumerate(limits)
    ]
    if any(over):
        raise TooManyRequests()


# --- Login --------------------------------------------------------------------------------------


class LoginLockedOut(TooManyRequests):
    default_code = "login_locked_out"

    def __init__(self) -> None:
        self.wait = lockout_seconds()
        super().__init__(
            f"Too many failed sign-ins for this email from your address; try again in {_in_minutes(self.wait)}."
        )


def lockout_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def _in_minutes(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def enforce_login_rate(request: HttpRequest) -> None:
    """Every login attempt, at either door, counts against its address: 429 over the rate."""
    enforce(request, group="login", limits=[("ip", settings.RATELIMIT_LOGIN_PER_IP)])


def login_locked_out(request: HttpRequest) -> bool:
    """After authenticate() refused: was it because this (email, address) pair is locked out?
    (django-axes marks the request it was given.)"""
    return bool(getattr(request, "axes_locked_out", False))


def login_email(request: HttpRequest, credentials: Mapping | None) -> str:
    """The email a login attempt names, as the lockout counts it (AXES_USERNAME_CALLABLE): the API
    authenticates with email=..., the admin's form with username=...; case and spaces aside."""
    credentials = credentials or {}
    email = credentials.get("email") or credentials.get("username")
    if email is None and request is not None and request.method == "POST":
        email = request.POST.get("username") or request.POST.get("email")
    return str(email or "").strip().lower()[:254]


def admin_login_throttled(login_view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The admin's login view with the per-address limit in front of it (its failed attempts are
    counted by django-axes, whose lockout answers with admin_login_locked_out_page)."""

    @wraps(login_view)
    def view(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method == "POST":
            try:
                enforce_login_rate(request)
            except TooManyRequests:
                period = _split_rate(settings.RATELIMIT_LOGIN_PER_IP)[1]  # "60/m" -> (60, 60)
                return _locked_out_page(request, "Too many sign-in attempts from your address.", retry_after=period)
        return login_view(request, *args, **kwargs)

    return view


def admin_login_locked_out_page(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the admin's answer to a locked-out (email, address) pair."""
    return _locked_out_page(
        request, "Too many failed sign-ins for this email from your address.", retry_after=lockout_seconds()
    )


def _locked_out_page(request: HttpRequest, reason: str, *, retry_after: int) -> HttpResponse:
    from django.contrib import admin

    context = {
        **admin.site.each_context(request),
        "title": "Sign-in paused",
        "reason": reason,
        "wait": _in_minutes(retry_after),
    }
    response = TemplateResponse(request, "admin/login_locked_out.html", context, status=429)
    response["Retry-After"] = str(retry_after)
    return response.render()
