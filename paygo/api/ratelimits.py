"""Rate limits for the API (django-ratelimit, counted in the shared cache), and the login rule that
the API's /auth/login and the admin's /admin/login/ share.

API-wide budgets (ApiRateLimitMiddleware): every request under /api/ is counted against its client
address and, when it carries a valid access token, its user, in one of four budgets: reads (GET,
HEAD, OPTIONS), writes (any other method), money writes (the unsafe methods of views whose
`rate_budget` is MONEY: the POSTs that honour an Idempotency-Key) and usage reports (a vendor's,
views whose `rate_budget` is USAGE: one per session and event, so a vendor with thousands of
sessions sends thousands a minute, and usage not reported is never billed). Each budget is a rate
per user and a rate per address (RATELIMIT_<READS|WRITES|MONEY|USAGE>_PER_<USER|IP>), counted in
fixed windows.

Counting is django-ratelimit's: its fixed windows and cache keys, SET NX then INCR in Redis, each
atomic, so that concurrent requests in any number of processes never lose a count (DRF's
SimpleRateThrottle reads a list of timestamps, appends and writes it back: two processes can both
pass the last slot). A request's limits are counted at once, in one round trip to Redis (a script;
its get_usage takes three per limit, and a request to the API has two); a cache other than Redis
(the embedded default's, in memory) counts through get_usage. Every answer
says where its budgets stand, in the fields of draft-ietf-httpapi-ratelimit-headers-10:
`RateLimit-Policy: "read-user";q=300;w=60, "read-ip";q=900;w=60` (quota, window in seconds) and
`RateLimit: "read-user";r=299;t=41, "read-ip";r=899;t=13` (remaining, seconds to the window's end);
a 429 also has `Retry-After`. The login and sign-up limits below answer the same way.

The login rule: every attempt counts against the client address (RATELIMIT_LOGIN_PER_IP); failed
attempts count against the (email, client address) pair, which is locked out after
AXES_FAILURE_LIMIT of them for AXES_COOLOFF_TIME (django-axes, which both doors reach through
django.contrib.auth.authenticate). Never per email alone: an attacker's failures from elsewhere
must not lock the account's owner out.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache, wraps
from typing import NamedTuple

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django_ratelimit import ALL
from django_ratelimit.core import EXPIRATION_FUDGE, _get_ip, _get_window, _make_cache_key, _split_rate, get_usage
from redis.commands.core import Script
from redis.exceptions import RedisError
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts.models import SignIn
from paygo.api.authentication import BearerJWTAuthentication
from paygo.api.errors import TooManyRequests, error_response
from paygo.api.forwarded import parse_address
from paygo.api.middleware import is_api_request
from paygo.emails import email_key

logger = logging.getLogger("paygo.api")

READ, WRITE, MONEY, USAGE = "read", "write", "money", "usage"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Each budget's settings: (per user, per client address).
BUDGET_RATES = {
    READ: ("RATELIMIT_READS_PER_USER", "RATELIMIT_READS_PER_IP"),
    WRITE: ("RATELIMIT_WRITES_PER_USER", "RATELIMIT_WRITES_PER_IP"),
    MONEY: ("RATELIMIT_MONEY_PER_USER", "RATELIMIT_MONEY_PER_IP"),
    USAGE: ("RATELIMIT_USAGE_PER_USER", "RATELIMIT_USAGE_PER_IP"),
}
# How a 429 names what was counted, by the policy's name ("money-user" -> "money movements", "from this account").
_COUNTED = {
    READ: "reads",
    WRITE: "writes",
    MONEY: "money movements",
    USAGE: "usage reports",
    "login": "sign-in attempts",
    "register": "sign-ups",
    "upload": "image uploads",
    "unknown-recipient": "transfers to unknown recipients",
}
_WHOSE = {"user": "from this account", "ip": "from your address", "email": "for this email"}
_RECORDED = "paygo_rate_limits"  # the request's attribute holding what it was counted against


# The address of a request that came with none (an ASGI server on a Unix socket gives no client,
# a WSGI server may leave REMOTE_ADDR empty): all such share one address's budgets.
NO_ADDRESS = "0.0.0.0"  # noqa: S104 (a key to count by, not an address to bind)


def client_ip(request: HttpRequest) -> str:
    """The client an address stands for, the one place every per-address limit reads it
    (django-ratelimit's "ip" key through RATELIMIT_IP_META_KEY, django-axes through
    AXES_CLIENT_IP_CALLABLE): NO_ADDRESS when the request has none (django-ratelimit raised on an
    empty one: a 500); an IPv4 address written as IPv6 (a dual-stack socket's ::ffff:a.b.c.d) as
    itself (django-ratelimit masked every such to "::", one budget for all); an IPv6 address as its
    /64, which one client holds whole (django-ratelimit masks so itself, django-axes did not: a
    sign-in lockout never came for guesses each from another address of one /64)."""
    address = parse_address(request.META.get("REMOTE_ADDR", ""))
    if address is None:
        return NO_ADDRESS
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)
    return str(address)


@dataclass(frozen=True)
class Usage:
    """One quota policy as a request found it: `count` requests in the current window of `window`
    seconds, which ends in `reset` seconds."""

    policy: str
    quota: int
    window: int
    count: int
    reset: int

    @property
    def exceeded(self) -> bool:
        return self.count > self.quota

    @property
    def remaining(self) -> int:
        return max(0, self.quota - self.count)


class Limit(NamedTuple):
    """One budget a request is counted against: `rate` ("count/period") per `key`, "ip" (REMOTE_ADDR
    as paygo.api.forwarded settled it) or a callable(group, request); not counted at all while the
    cache holds the key `unless`."""

    policy: str
    key: str | Callable
    rate: str
    unless: str | None = None


# What get_usage does for each limit (add its key with its window's expiry, else increment it), for
# all of a request's limits in one round trip, each skipped while its `unless` key exists. A script
# runs whole (no key can expire between the SET NX and the INCR and come back without its expiry).
# KEYS: the counters, then the `unless` keys there are; ARGV: each counter's expiry in seconds, then
# the index in KEYS of its `unless` key (0 for none). Returns each counter's count, -1 when skipped.
# Run by its SHA on the client given each time (sent whole the first time a server lacks it); bytes,
# so that no client is needed to encode it.
_COUNT = Script(
    None,
    b"""
local n = #ARGV / 2
local counts = {}
for i = 1, n do
  local unless = tonumber(ARGV[n + i])
  if unless > 0 and redis.call('EXISTS', KEYS[unless]) == 1 then
    counts[i] = -1
  else
    redis.call('SET', KEYS[i], 0, 'EX', ARGV[i], 'NX')
    counts[i] = redis.call('INCR', KEYS[i])
  end
end
return counts
""",
)


def count_all(request: HttpRequest, limits: list[Limit]) -> list[Usage]:
    """Count this request at once against each limit it is counted against (a limit whose `unless`
    key is in the cache is not counted, and has no Usage). Nothing when rate limiting is off."""
    if not getattr(settings, "RATELIMIT_ENABLE", True):
        return []
    limits = [Limit(*limit) for limit in limits]
    cache = caches[settings.RATELIMIT_USE_CACHE]
    if not isinstance(cache, RedisCache):
        return [
            _usage_of_library(request, limit) for limit in limits if limit.unless is None or not cache.get(limit.unless)
        ]
    # The cache's own client, on its pool (Django's RedisCache has no public way to script): one per
    # process (paygo.cache).
    client = cache._cache.get_client(write=True)
    counted, guards, guard_at = [], [], []
    for limit in limits:
        group, period = f"paygo:{limit.policy}", _split_rate(limit.rate)[1]
        value = _get_ip(request) if limit.key == "ip" else limit.key(group, request)
        window = _get_window(value, period)
        cache_key = cache.make_and_validate_key(_make_cache_key(group, window, limit.rate, value, ALL))
        counted.append(_Counted(limit.policy, limit.rate, period=period, window=window, cache_key=cache_key))
        if limit.unless is not None:
            guards.append(cache.make_and_validate_key(limit.unless))
        guard_at.append(0 if limit.unless is None else len(limits) + len(guards))  # its place in KEYS, from 1
    answers = _COUNT(
        keys=[one.cache_key for one in counted] + guards,
        args=[one.period + EXPIRATION_FUDGE for one in counted] + guard_at,
        client=client,
    )
    now = int(time.time())  # after the windows were chosen, as get_usage reads it
    return [
        _usage(one.policy, one.rate, count=count, time_left=one.window - now)
        for one, count in zip(counted, answers, strict=True)
        if count >= 0
    ]


class _Counted(NamedTuple):
    """One limit of a request as count_all counts it: its window's end and its key in the cache."""

    policy: str
    rate: str
    period: int
    window: int
    cache_key: str


def _usage_of_library(request: HttpRequest, limit: Limit) -> Usage:
    usage = get_usage(
        request, group=f"paygo:{limit.policy}", key=limit.key, rate=limit.rate, method=ALL, increment=True
    )
    return _usage(limit.policy, limit.rate, count=usage["count"], time_left=usage["time_left"])


def _usage(policy: str, rate: str, *, count: int, time_left: int) -> Usage:
    quota, window = _split_rate(rate)
    # django-ratelimit's window still holds at the whole second it names as its end (time_left 0):
    # the next one starts a second later, and no client may be told to come back before it.
    return Usage(policy=policy, quota=quota, window=window, count=int(count), reset=max(0, time_left) + 1)


def record(request, usages: Iterable[Usage]) -> None:
    """Keep what the request was counted against, for the RateLimit fields of its answer."""
    request = getattr(request, "_request", request)  # DRF's Request wraps Django's
    setattr(request, _RECORDED, [*getattr(request, _RECORDED, []), *usages])


def rate_limit_headers(usages: list[Usage]) -> dict[str, str]:
    """The RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers-10) of `usages`."""
    return {
        "RateLimit-Policy": ", ".join(f'"{u.policy}";q={u.quota};w={u.window}' for u in usages),
        "RateLimit": ", ".join(f'"{u.policy}";r={u.remaining};t={u.reset}' for u in usages),
    }


class RateLimited(TooManyRequests):
    """A 429 for the policies a request exceeded; `wait` (Retry-After) is when they all have room again."""

    def __init__(self, exceeded: list[Usage]):
        self.wait = max(usage.reset for usage in exceeded)
        first = exceeded[0]
        budget, _, partition = first.policy.rpartition("-")
        counted, whose = _COUNTED.get(budget, "requests"), _WHOSE.get(partition, "")
        super().__init__(
            f"Too many {counted} {whose}: at most {first.quota} every {first.window} seconds. "
            f"Try again in {self.wait} seconds."
        )


def enforce(request: HttpRequest, *, limits: list[Limit]) -> None:
    """Count this request against each (policy, key, rate) and raise 429 when any is over.

    Every limit is counted, even after one trips, so a flood keeps being counted everywhere.
    """
    usages = count_all(request, limits)
    record(request, usages)
    exceeded = [usage for usage in usages if usage.exceeded]
    if exceeded:
        raise RateLimited(exceeded)


def by_user(group: str, request) -> str:
    """The key of a per-user limit that a view counts (authentication has run: request.user)."""
    return str(request.user.pk)


# --- Every request to the API ----------------------------------------------------------------------


@cache
def _bearer() -> BearerJWTAuthentication:
    return BearerJWTAuthentication()  # it asks for the user model: not at import time


class TokenClaims(NamedTuple):
    """Whom a request's valid access token names, by its claims alone: its user and its sign-in."""

    user_id: str
    sign_in_id: uuid.UUID


def token_claims(request: HttpRequest) -> TokenClaims | None:
    """The user and sign-in of the request's access token when it is valid (read without a query: the
    user is counted before anything else runs). A bad token, or one without a sign-in (refused), is
    counted by its address only."""
    bearer = _bearer()
    header = bearer.get_header(request)
    try:
        raw = bearer.get_raw_token(header) if header else None
        token = bearer.get_validated_token(raw) if raw else None
    except AuthenticationFailed:  # InvalidToken included
        return None
    user_id, sign_in_id = (token.get(jwt_settings.USER_ID_CLAIM), SignIn.id_of(token)) if token else (None, None)
    if user_id is None or sign_in_id is None:
        return None
    return TokenClaims(user_id=str(user_id), sign_in_id=sign_in_id)


# --- Ended sign-ins: their tokens spend no user's budget ---------------------------------------------
#
# Authentication refuses a token whose sign-in has ended (paygo.api.authentication), but the user's
# budget is counted before it runs, by the token's claims alone: a thief flooding with a token its
# owner logged out would keep the owner at 429 everywhere until it expired. So an ended sign-in is
# marked in the cache for as long as its access tokens can live, and a request whose token names a
# marked sign-in is counted by its address only (in the same round trip). Were the mark lost (the
# cache unreachable as the sign-in ended), such a token would spend its user's budget as before.


def ended_sign_in_key(sign_in_id) -> str:
    return f"paygo:sign-in-ended:{sign_in_id}"


def sign_ins_ended(sign_in_ids: Iterable) -> None:
    """Mark these sign-ins ended for the counting (called once their end committed)."""
    lifetime = int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()) + EXPIRATION_FUDGE
    try:
        caches[settings.RATELIMIT_USE_CACHE].set_many({ended_sign_in_key(id_): 1 for id_ in sign_in_ids}, lifetime)
    except RedisError:
        logger.warning(
            "Ended sign-ins could not be marked for the rate limits (the cache is unreachable)", exc_info=True
        )


def budget_of(request: HttpRequest, view: Callable) -> str:
    """Which budget a request spends: reads, money writes (views marked MONEY), usage reports (views
    marked USAGE), or writes."""
    if request.method in SAFE_METHODS:
        return READ
    view_class = getattr(view, "cls", None) or getattr(view, "view_class", None)
    budget = getattr(view_class, "rate_budget", WRITE)
    return budget if budget in (MONEY, USAGE) else WRITE


class ApiRateLimitMiddleware:
    """Counts every request under /api/ before its view runs (and before its token is turned into a
    user, its body parsed, or its permissions checked), and puts the RateLimit fields on the answer
    of any request counted anywhere (the API's budgets, sign-ups, logins at either door).

    It sits after CorsMiddleware, so that a browser on another origin can read a 429 too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        usages = getattr(request, _RECORDED, None)
        if usages:
            for name, value in rate_limit_headers(usages).items():
                response[name] = value
        return response

    def process_view(self, request: HttpRequest, view: Callable, args, kwargs) -> HttpResponse | None:
        if not is_api_request(request):
            return None
        budget = budget_of(request, view)
        per_user, per_ip = (getattr(settings, name) for name in BUDGET_RATES[budget])
        limits = [Limit(f"{budget}-ip", "ip", per_ip)]
        if (claims := token_claims(request)) is not None:
            user_key = lambda group, request: claims.user_id  # noqa: E731
            limits.insert(0, Limit(f"{budget}-user", user_key, per_user, ended_sign_in_key(claims.sign_in_id)))
        try:
            enforce(request, limits=limits)
        except RateLimited as exc:
            response = error_response(429, str(exc.detail), code=exc.default_code)
            response["Retry-After"] = str(exc.wait)
            return response
        except RedisError:
            # An outage of the cache must not become an outage of the API: let it through, say so.
            logger.warning("API rate limits could not be counted (the cache is unreachable)", exc_info=True)
        return None


# --- Login --------------------------------------------------------------------------------------


class LoginLockedOut(TooManyRequests):
    default_code = "login_locked_out"

    def __init__(self, request: HttpRequest | None = None) -> None:
        self.wait = lockout_seconds()
        if request is not None:
            record(request, [lockout_usage()])
        super().__init__(
            f"Too many failed sign-ins for this email from your address; try again in {_in_minutes(self.wait)}."
        )


def lockout_usage() -> Usage:
    """A locked-out (email, address) pair as a spent quota policy, for the RateLimit fields."""
    limit, wait = settings.AXES_FAILURE_LIMIT, lockout_seconds()
    return Usage(policy="login-failures", quota=limit, window=wait, count=limit + 1, reset=wait)


def lockout_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def _in_minutes(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def enforce_login_rate(request: HttpRequest) -> None:
    """Every login attempt, at either door, counts against its address: 429 over the rate."""
    enforce(request, limits=[("login-ip", "ip", settings.RATELIMIT_LOGIN_PER_IP)])


def login_locked_out(request: HttpRequest) -> bool:
    """After authenticate() refused: was it because this (email, address) pair is locked out?
    (django-axes marks the request it was given.)"""
    return bool(getattr(request, "axes_locked_out", False))


def login_email(request: HttpRequest, credentials: Mapping | None) -> str:
    """The email a login attempt names, as the lockout counts it (AXES_USERNAME_CALLABLE): the API
    authenticates with email=..., the admin's form with username=...; compared as accounts compare
    it (paygo.emails.email_key): each spelling of one mailbox had a count of its own."""
    credentials = credentials or {}
    email = credentials.get("email") or credentials.get("username")
    if email is None and request is not None and request.method == "POST":
        email = request.POST.get("username") or request.POST.get("email")
    return email_key(str(email or ""))[:254]


def admin_login_throttled(login_view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The admin's login view with the per-address limit in front of it (its failed attempts are
    counted by django-axes, whose lockout answers with admin_login_locked_out_page)."""

    @wraps(login_view)
    def view(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method == "POST":
            try:
                enforce_login_rate(request)
            except RateLimited as exc:
                return _locked_out_page(request, "Too many sign-in attempts from your address.", retry_after=exc.wait)
        return login_view(request, *args, **kwargs)

    return view


def admin_login_locked_out_page(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the admin's answer to a locked-out (email, address) pair."""
    record(request, [lockout_usage()])
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
