"""API-wide rate limits (issue 19): every endpoint, per user and per client address, with separate
budgets for reads, writes and money writes, counted in Redis; every 429 says when to come back.

Each test counts under its own key prefix (RATELIMIT_CACHE_PREFIX) at a frozen instant, so that it
neither depends on the cache being emptied between tests nor crosses a window's end half-way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.test import RequestFactory, TestCase
from django.utils import timezone

from conftest import CommittingAPIClient, client_for
from streaming.tests.conftest import make_service  # noqa: F401 (a fixture)
from wallets.tests.conftest import balance_of

pytestmark = pytest.mark.django_db

USDC = 1_000_000
SERVICES = "/api/v1/service"  # a public read
READ_ALL = "/api/v1/notifications/read-all"  # an ordinary write
TRANSFER = "/api/v1/wallet/transfer"  # a money write
ALICE_IP, BOB_IP = "198.51.100.20", "198.51.100.21"


@pytest.fixture
def clock(settings, still_clock):
    """Small budgets, this test's own counters, and a clock that stands still (but can be moved)."""
    settings.RATELIMIT_CACHE_PREFIX = f"rl-test-{uuid.uuid4().hex}:"
    settings.RATELIMIT_READS_PER_USER, settings.RATELIMIT_READS_PER_IP = "5/m", "8/m"
    settings.RATELIMIT_WRITES_PER_USER, settings.RATELIMIT_WRITES_PER_IP = "3/m", "5/m"
    settings.RATELIMIT_MONEY_PER_USER, settings.RATELIMIT_MONEY_PER_IP = "2/m", "4/m"
    return still_clock


def policies(response) -> dict[str, dict[str, int]]:
    """The RateLimit-Policy and RateLimit fields read back: {policy: {"q", "w", "r", "t"}}."""
    found: dict[str, dict[str, int]] = {}
    for field in ("RateLimit-Policy", "RateLimit"):
        for item in response[field].split(", "):
            name, *params = item.split(";")
            assert re.fullmatch(r'"[a-z-]+"', name), item
            found.setdefault(name.strip('"'), {}).update(
                {key: int(value) for key, value in (param.split("=") for param in params)}
            )
    return found


def fresh_address() -> str:
    """A client address no other test (or run) used: django-axes counts failures outside our prefix."""
    return f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1"


def reads(client, n: int, ip: str = ALICE_IP) -> list[int]:
    return [client.get(SERVICES, REMOTE_ADDR=ip).status_code for _ in range(n)]


# --- Reads -----------------------------------------------------------------------------------------


def test_reads_are_limited_per_user_with_the_budget_in_every_answer(clock, alice):
    client = client_for(alice)

    answers = [client.get(SERVICES, REMOTE_ADDR=ALICE_IP) for _ in range(6)]

    assert [answer.status_code for answer in answers] == [200] * 5 + [429]
    first, last_allowed, refused = answers[0], answers[4], answers[5]
    assert set(policies(first)) == {"read-user", "read-ip"}
    assert policies(first)["read-user"]["q"] == 5 and policies(first)["read-user"]["w"] == 60
    assert policies(first)["read-ip"]["q"] == 8
    assert [policies(answer)["read-user"]["r"] for answer in answers] == [4, 3, 2, 1, 0, 0]
    assert policies(last_allowed)["read-ip"]["r"] == 3
    reset = policies(refused)["read-user"]["t"]
    assert 0 < reset <= 60
    assert refused["Retry-After"] == str(reset)
    assert refused.json() == {
        "message": f"Too many reads from this account: at most 5 every 60 seconds. Try again in {reset} seconds.",
        "statusCode": 429,
        "code": "rate_limited",
    }
    assert refused["Cache-Control"] == "no-store"


def test_a_window_that_ends_gives_the_budget_back(clock, alice):
    client = client_for(alice)
    assert reads(client, 6) == [200] * 5 + [429]

    clock.shift(timedelta(seconds=int(client.get(SERVICES, REMOTE_ADDR=ALICE_IP)["Retry-After"])))

    assert reads(client, 1) == [200]


def test_users_have_their_own_budgets_but_share_their_address(clock, alice, bob):
    assert reads(client_for(alice), 6) == [200] * 5 + [429]  # alice's budget spent: 6 of the address's 8

    from_alices_address = reads(client_for(bob), 3)
    from_elsewhere = reads(client_for(bob), 1, ip=BOB_IP)

    assert from_alices_address == [200, 200, 429]  # the address's budget, 8, ran out
    assert from_elsewhere == [200]


def test_the_address_budget_counts_anonymous_refused_and_unknown_requests(clock, anon):
    """Whatever happens next (401, 404, a bad token), a request counts against its address."""
    statuses = [
        anon.get(SERVICES, REMOTE_ADDR=ALICE_IP).status_code,
        anon.get("/api/v1/wallet/balance", REMOTE_ADDR=ALICE_IP).status_code,
        anon.get("/api/v1/no-such-thing", REMOTE_ADDR=ALICE_IP).status_code,
        anon.get(SERVICES, REMOTE_ADDR=ALICE_IP, HTTP_AUTHORIZATION="Bearer not-a-token").status_code,
        *reads(anon, 5),
    ]

    assert statuses == [200, 401, 404, 401, 200, 200, 200, 200, 429]
    refused = anon.get(SERVICES, REMOTE_ADDR=ALICE_IP)
    assert set(policies(refused)) == {"read-ip"}  # no user: the address's budget only
    assert refused.json()["message"].startswith("Too many reads from your address: at most 8 every 60 seconds.")


def test_a_token_whose_sign_in_ended_spends_its_address_budget_not_its_users(clock, alice):
    """A stolen access token whose sign-in the owner ended (a logout here; a reused refresh token,
    staff or a deactivation end it too) is refused, and counted against its sender's address only:
    flooding with it must not keep its user at 429 on every other device until it expires."""
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.models import SignIn
    from accounts.services import token_pair_for

    stolen = token_pair_for(alice)
    thief = CommittingAPIClient()
    thief.credentials(HTTP_AUTHORIZATION=f"Bearer {stolen.access}")
    assert thief.post("/api/v1/auth/logout", {"refreshToken": stolen.refresh}, format="json").status_code == 200
    assert SignIn.objects.get(pk=SignIn.id_of(AccessToken(stolen.access))).ended_at is not None

    flood = [thief.get(SERVICES, REMOTE_ADDR=BOB_IP) for _ in range(10)]
    owner = reads(client_for(alice), 5)

    assert [answer.status_code for answer in flood] == [401] * 8 + [429] * 2  # the thief's address: 8
    assert set(policies(flood[0])) == {"read-ip"}
    assert owner == [200] * 5  # the user's budget (5) untouched


def test_an_ended_sign_ins_mark_outlives_its_access_tokens(clock, settings, alice):
    """What tells the counting that a sign-in ended lasts as long as its access tokens can."""
    from django.core.cache import caches
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.models import SignIn
    from accounts.services import token_logout, token_pair_for
    from paygo.api.ratelimits import ended_sign_in_key

    pair = token_pair_for(alice)
    with TestCase.captureOnCommitCallbacks(execute=True):
        token_logout(refresh_token=pair.refresh)

    cache = caches[settings.RATELIMIT_USE_CACHE]
    key = cache.make_and_validate_key(ended_sign_in_key(SignIn.id_of(AccessToken(pair.access))))
    lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()
    assert lifetime < cache._cache.get_client().ttl(key) <= lifetime + 5


def test_behind_a_trusted_proxy_each_client_address_has_its_budget(clock, settings, anon):
    settings.TRUSTED_PROXIES = ["10.0.0.1"]

    def via_proxy(forwarded_for: str) -> int:
        return anon.get(SERVICES, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded_for).status_code

    assert [via_proxy(ALICE_IP) for _ in range(9)] == [200] * 8 + [429]
    assert via_proxy(BOB_IP) == 200
    assert via_proxy(f"{BOB_IP}, {ALICE_IP}") == 429  # what a client prepends is not believed


# --- Writes and money writes -----------------------------------------------------------------------


def test_writes_and_money_writes_have_budgets_of_their_own(clock, alice, bob, fund):
    fund(alice, 10 * USDC)
    client = client_for(alice)

    def pay() -> int:
        body = {"amount": 1, "recipientId": bob.pk}
        return client.post(TRANSFER, body, format="json", REMOTE_ADDR=ALICE_IP).status_code

    def write() -> int:
        return client.post(READ_ALL, REMOTE_ADDR=ALICE_IP).status_code

    assert [pay() for _ in range(3)] == [201, 201, 429]
    assert balance_of(bob) == 2 * USDC  # the refused payment moved nothing
    assert [write() for _ in range(4)] == [200, 200, 200, 429]  # money writes did not spend the writes'
    assert reads(client, 1) == [200]  # nor writes the reads'

    refused = client.post(TRANSFER, {"amount": 1, "recipientId": bob.pk}, format="json", REMOTE_ADDR=ALICE_IP)
    assert set(policies(refused)) == {"money-user", "money-ip"}
    assert refused.json()["message"].startswith("Too many money movements from this account: at most 2 every")
    assert balance_of(bob) == 2 * USDC


def test_usage_reports_have_a_budget_of_their_own(clock, settings, alice, victor, fund, make_service):  # noqa: F811
    """A vendor's usage reports (the only way usage is billed) spent his money budget, 60 a minute
    for all his sessions: with more than 60 usage-metered customers he could not report once per
    session per minute, and usage never reported is never billed. They spend the usage budget."""
    from streaming.models import UsageEvent
    from streaming.tests.conftest import start

    settings.RATELIMIT_MONEY_PER_USER, settings.RATELIMIT_MONEY_PER_IP = "60/m", "180/m"  # the defaults
    settings.RATELIMIT_USAGE_PER_USER, settings.RATELIMIT_USAGE_PER_IP = "61/m", "1000/m"
    fund(alice, 100 * USDC)
    service = make_service("per_request", rate=1_000, max_session_cost=10 * USDC, max_event_quantity=1)
    session = start(alice, service)
    client = client_for(victor)

    def report(n: int):
        url = f"/api/v1/streams/{session.session_id}/usage"
        return client.post(url, {"eventId": f"e{n}", "quantity": 1}, format="json", REMOTE_ADDR=ALICE_IP)

    answers = [report(n) for n in range(62)]

    assert [answer.status_code for answer in answers] == [201] * 61 + [429]
    assert set(policies(answers[60])) == {"usage-user", "usage-ip"}
    last_accepted = policies(answers[60])
    assert (last_accepted["usage-user"]["q"], last_accepted["usage-user"]["r"]) == (61, 0)
    assert (last_accepted["usage-ip"]["q"], last_accepted["usage-ip"]["r"]) == (1000, 939)
    refused = answers[61]
    reset = policies(refused)["usage-user"]["t"]
    assert refused["Retry-After"] == str(reset)
    assert refused.json() == {
        "message": "Too many usage reports from this account: at most 61 every 60 seconds. "
        f"Try again in {reset} seconds.",
        "statusCode": 429,
        "code": "rate_limited",
    }
    assert UsageEvent.objects.filter(session=session).count() == 61  # the refused one was not recorded


def test_an_idempotent_replay_is_a_request_too(clock, alice, bob, fund):
    fund(alice, 10 * USDC)
    client = client_for(alice)
    body = {"amount": 1, "recipientId": bob.pk}

    statuses = [
        client.post(TRANSFER, body, format="json", REMOTE_ADDR=ALICE_IP, HTTP_IDEMPOTENCY_KEY="k").status_code
        for _ in range(3)
    ]

    assert statuses == [201, 201, 429]
    assert balance_of(bob) == USDC


def test_every_money_post_is_counted_as_one(anon):
    """A money POST is one that honours an Idempotency-Key (its schema names the header); each is
    counted against the money budget (its view's rate_budget), usage reports against their own, and
    nothing else is."""
    from drf_spectacular.generators import EndpointEnumerator

    from paygo.api.ratelimits import MONEY, USAGE

    schema = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    idempotent = {
        (path, method.upper())
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if any(parameter["name"] == "Idempotency-Key" for parameter in operation.get("parameters", []))
    }

    def budget(wanted: str) -> set[tuple[str, str]]:
        return {
            (path, method)
            for path, _, method, view in EndpointEnumerator().get_api_endpoints()
            if method not in ("GET", "HEAD", "OPTIONS") and getattr(view.cls, "rate_budget", None) == wanted
        }

    assert idempotent == {
        ("/api/v1/wallet/deposit", "POST"),
        ("/api/v1/wallet/withdraw", "POST"),
        ("/api/v1/wallet/transfer", "POST"),
        ("/api/v1/wallet/swap", "POST"),
        ("/api/v1/streams/start", "POST"),
        ("/api/v1/streams/{session_id}/stop", "PATCH"),
        ("/api/v1/streams/{session_id}/usage", "POST"),
        ("/api/v1/consultations/{consultation_id}/call/start", "POST"),
        ("/api/v1/consultations/{consultation_id}/call/stop", "POST"),
    }
    # Usage reports are a vendor's, one per session and event: they have a budget of their own.
    assert budget(USAGE) == {("/api/v1/streams/{session_id}/usage", "POST")}
    assert budget(MONEY) == idempotent - budget(USAGE)


def test_refresh_and_logout_spend_the_write_budget_of_their_address(clock, anon, alice):
    """The two endpoints a refresh token is sent to are counted alike: writes of the client address
    (and of the user, when an access token comes too), as every write; a refused logout ends nothing."""
    from accounts.services import token_pair_for

    def refresh(token: str, ip: str = ALICE_IP):
        return anon.post("/api/v1/auth/refresh", {"refreshToken": token}, format="json", REMOTE_ADDR=ip)

    def logout(token: str, ip: str = ALICE_IP):
        return anon.post("/api/v1/auth/logout", {"refreshToken": token}, format="json", REMOTE_ADDR=ip)

    kept, ended, victim = (token_pair_for(alice).refresh for _ in range(3))
    first = refresh(kept)
    statuses = [
        first.status_code,
        logout(ended).status_code,
        logout(ended).status_code,  # logging out again is a request too
        refresh(first.json()["refreshToken"]).status_code,
        refresh("garbage").status_code,
    ]
    refused = logout(victim)

    assert statuses == [200, 200, 200, 200, 401]
    assert refused.status_code == 429
    assert set(policies(refused)) == {"write-ip"}
    assert refresh(victim).status_code == 429
    assert refresh(victim, ip=BOB_IP).status_code == 200  # the refused logout ended nothing


# --- Every 429 says when to come back ---------------------------------------------------------------


def test_sign_ups_over_their_limit_get_retry_after_and_the_ratelimit_fields(clock, settings, anon):
    settings.RATELIMIT_REGISTER_PER_IP = "1/h"

    def register(n: int):
        body = {"name": "New", "email": f"new{n}@example.com", "password": "correct-horse-42", "role": "user"}
        return anon.post("/api/v1/auth/register", body, format="json", REMOTE_ADDR=ALICE_IP)

    assert register(1).status_code == 201
    refused = register(2)

    assert refused.status_code == 429
    limit = policies(refused)["register-ip"]
    assert (limit["q"], limit["w"], limit["r"]) == (1, 3600, 0)
    assert refused["Retry-After"] == str(limit["t"])
    assert 0 < limit["t"] <= 3600


def test_a_login_lockout_gets_retry_after_and_the_ratelimit_fields(clock, settings, anon, alice):
    settings.AXES_FAILURE_LIMIT = 2
    body = {"email": "alice@example.com", "password": "wrong-one"}
    address = fresh_address()
    assert anon.post("/api/v1/auth/login", body, format="json", REMOTE_ADDR=address).status_code == 401

    locked = anon.post("/api/v1/auth/login", body, format="json", REMOTE_ADDR=address)

    assert locked.status_code == 429
    assert locked["Retry-After"] == "900"
    assert policies(locked)["login-failures"] == {"q": 2, "w": 900, "r": 0, "t": 900}


def test_the_admins_sign_in_page_over_its_limit_says_when_too(clock, settings, olga):
    from django.test import Client

    settings.RATELIMIT_LOGIN_PER_IP = "1/m"
    admin, address = Client(), fresh_address()
    admin.post("/admin/login/", {"username": "x@example.com", "password": "no"}, REMOTE_ADDR=address)

    refused = admin.post("/admin/login/", {"username": "x@example.com", "password": "no"}, REMOTE_ADDR=address)

    assert refused.status_code == 429
    assert refused["Retry-After"] == str(policies(refused)["login-ip"]["t"])


# --- Counted in Redis, shared by every process -----------------------------------------------------


def test_counts_are_atomic_increments_in_redis(clock):
    """Twenty requests at once against a budget of 10: every increment lands (none is lost to a
    read-modify-write race), and exactly ten are let through."""
    from paygo.api.ratelimits import count_all

    assert "RedisCache" in django_settings.CACHES["default"]["BACKEND"]
    request = RequestFactory().get(SERVICES, REMOTE_ADDR="192.0.2.10")
    start = threading.Barrier(20)

    def hit(_):
        start.wait()
        (usage,) = count_all(request, [("read-ip", "ip", "10/m")])
        return usage

    with ThreadPoolExecutor(20) as pool:
        usages = list(pool.map(hit, range(20)))

    assert sorted(usage.count for usage in usages) == list(range(1, 21))
    assert sum(not usage.exceeded for usage in usages) == 10


def test_counts_hold_across_processes(clock, anon, settings):
    """Another process (another server) counting against the same address spends the same budget."""
    script = (
        "import sys, django, time_machine\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "from django.test import RequestFactory\n"
        "settings.RATELIMIT_CACHE_PREFIX = sys.argv[1]\n"
        "from paygo.api.ratelimits import count_all\n"
        "with time_machine.travel(float(sys.argv[2]), tick=False):\n"
        "    for _ in range(3):\n"
        "        count_all(RequestFactory().get('/', REMOTE_ADDR=sys.argv[3]), [('read-ip', 'ip', '8/m')])\n"
    )
    now = timezone.now().timestamp()
    subprocess.run(
        [sys.executable, "-c", script, settings.RATELIMIT_CACHE_PREFIX, str(now), ALICE_IP],
        cwd=django_settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "paygo.settings",
            # The same Redis, under the same prefix, as this process's cache.
            "REDIS_URL": django_settings.REDIS_URL,
            "CACHE_KEY_PREFIX": django_settings.CACHES["default"].get("KEY_PREFIX", ""),
        },
        check=True,
        timeout=120,
    )

    answer = anon.get(SERVICES, REMOTE_ADDR=ALICE_IP)

    assert policies(answer)["read-ip"]["r"] == 8 - 3 - 1


def test_a_requests_limits_are_counted_in_one_round_trip_to_redis(clock, alice, monkeypatch):
    """Counting every limit of a request (here the user's and the address's) is one exchange with
    Redis, a script: django-ratelimit's get_usage took three per limit (SET NX, EXISTS, INCR)."""
    from redis.connection import AbstractConnection

    from paygo.api.ratelimits import count_all

    # A connection opened, and the counting's script known to the server (its first use sends it).
    count_all(RequestFactory().get(SERVICES, REMOTE_ADDR=BOB_IP), [("read-ip", "ip", "8/m")])
    sent = []
    send = AbstractConnection.send_packed_command
    monkeypatch.setattr(
        AbstractConnection, "send_packed_command", lambda conn, *a, **k: sent.append(1) or send(conn, *a, **k)
    )
    request = RequestFactory().get(SERVICES, REMOTE_ADDR=ALICE_IP)
    limits = [("read-user", lambda group, request: str(alice.pk), "5/m"), ("read-ip", "ip", "8/m")]

    first, second = count_all(request, limits), count_all(request, limits)

    assert len(sent) == 2  # one per request, whatever the number of limits
    assert [(u.policy, u.count) for u in first] == [("read-user", 1), ("read-ip", 1)]
    assert [(u.policy, u.count, u.quota, u.window) for u in second] == [("read-user", 2, 5, 60), ("read-ip", 2, 8, 60)]
    assert all(0 < u.reset <= 61 for u in first + second)


def test_counted_under_django_ratelimits_own_keys_and_expiry(clock, alice):
    """count_all writes the keys django-ratelimit's get_usage reads (its window, its key, the
    cache's prefix and version), with the expiry get_usage gives them: the window and 5 s more."""
    from django.core.cache import caches
    from django_ratelimit import ALL
    from django_ratelimit.core import _get_window, _make_cache_key, get_usage

    from paygo.api.ratelimits import count_all

    request = RequestFactory().get(SERVICES, REMOTE_ADDR=ALICE_IP)
    user_key = lambda group, request: str(alice.pk)  # noqa: E731
    for _ in range(3):
        count_all(request, [("read-user", user_key, "5/m"), ("read-ip", "ip", "8/h")])

    for policy, key, rate, period in (("read-user", user_key, "5/m", 60), ("read-ip", "ip", "8/h", 3600)):
        seen = get_usage(request, group=f"paygo:{policy}", key=key, rate=rate, method=ALL, increment=False)
        assert seen["count"] == 3, policy
        cache = caches["default"]
        value = str(alice.pk) if policy == "read-user" else ALICE_IP
        stored = cache.make_and_validate_key(
            _make_cache_key(f"paygo:{policy}", _get_window(value, period), rate, value, ALL)
        )
        # Set for the window and 5 s more (Redis counts it down in real time meanwhile).
        assert period < cache._cache.get_client().ttl(stored) <= period + 5, policy


def test_the_embedded_defaults_memory_cache_counts_as_redis_does(clock, alice):
    """Without Redis (the embedded default keeps its cache in memory), the same limits count the same
    way, window for window, through django-ratelimit's get_usage."""
    from django.core.cache import caches
    from django.test import override_settings

    from paygo.api.ratelimits import count_all

    request = RequestFactory().get(SERVICES, REMOTE_ADDR=ALICE_IP)
    limits = [("read-user", lambda group, request: str(alice.pk), "2/m"), ("read-ip", "ip", "3/h")]
    in_redis = [count_all(request, limits) for _ in range(4)]
    in_memory = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "rate-test"}}
    with override_settings(CACHES=in_memory):
        caches["default"].clear()
        kept = [count_all(request, limits) for _ in range(4)]

    assert kept == in_redis
    assert [[u.exceeded for u in usages] for usages in kept] == [
        [False, False],
        [False, False],
        [True, False],
        [True, True],
    ]


@pytest.mark.parametrize("in_memory", [False, True], ids=["redis", "memory"])
def test_a_limit_is_not_counted_while_its_unless_key_is_in_the_cache(clock, in_memory, alice):
    """How an ended sign-in's token is kept off its user's budget, in Redis and in the embedded
    default's memory cache alike: a limit whose `unless` key is set is skipped, the others counted."""
    from django.core.cache import caches
    from django.test import override_settings

    from paygo.api.ratelimits import Limit, count_all

    memory = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "unless-test"}}
    request = RequestFactory().get(SERVICES, REMOTE_ADDR=ALICE_IP)
    unless = f"unless-{uuid.uuid4().hex}"
    limits = [Limit("read-user", lambda group, request: str(alice.pk), "5/m", unless), Limit("read-ip", "ip", "8/m")]
    with override_settings(CACHES=memory) if in_memory else nullcontext():
        cache = caches["default"]
        first = count_all(request, limits)
        cache.set(unless, 1, 60)
        skipped = [count_all(request, limits) for _ in range(2)]
        cache.delete(unless)
        counted_again = count_all(request, limits)

    assert [(u.policy, u.count) for u in first] == [("read-user", 1), ("read-ip", 1)]
    assert [[(u.policy, u.count) for u in usages] for usages in skipped] == [[("read-ip", 2)], [("read-ip", 3)]]
    assert [(u.policy, u.count) for u in counted_again] == [("read-user", 2), ("read-ip", 4)]


def test_without_redis_the_api_still_answers(clock, anon, caplog):
    """A rate limiter that cannot count lets requests through (and says so in the log) rather than
    turn an outage of Redis into an outage of the whole API."""
    from django.test import override_settings

    unreachable = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    with override_settings(CACHES=unreachable):
        response = anon.get(SERVICES, REMOTE_ADDR=ALICE_IP)

    assert response.status_code == 200
    assert "RateLimit" not in response
    assert "rate limits could not be counted" in caplog.text


# --- Configuration and documentation ---------------------------------------------------------------


def test_the_budgets_come_from_the_environment():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "paygo.settings", "RATELIMIT_MONEY_PER_USER": "7/h"}
    code = "from django.conf import settings; print(settings.RATELIMIT_MONEY_PER_USER, settings.RATELIMIT_READS_PER_IP)"

    ok = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    bad = subprocess.run(
        [sys.executable, "-c", code], env={**env, "RATELIMIT_MONEY_PER_USER": "lots"}, capture_output=True, text=True
    )

    assert ok.stdout.split() == ["7/h", os.environ["RATELIMIT_READS_PER_IP"]]
    assert bad.returncode != 0
    assert "RATELIMIT_MONEY_PER_USER" in bad.stderr


def test_the_schema_documents_the_headers_of_every_operation(anon):
    schema = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    operations = [
        operation
        for operations in schema["paths"].values()
        for method, operation in operations.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) > 40
    for operation in operations:
        too_many = operation["responses"]["429"]
        assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= set(too_many["headers"]), operation["operationId"]
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                assert {"RateLimit", "RateLimit-Policy"} <= set(response.get("headers", {})), operation["operationId"]
    assert "draft-ietf-httpapi-ratelimit-headers-10" in schema["info"]["description"]
