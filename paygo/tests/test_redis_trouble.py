"""Redis in trouble — gone, or connected and silent — is never a hang and never a 500: each wait is
bounded (REDIS_TIMEOUT_SECONDS), the API's rate limits let requests through, what needs the cache
answers 503 with Retry-After, and what runs after a commit is logged, not raised into an answer
whose money has moved."""

from __future__ import annotations

import ast
import asyncio
import logging
import socket
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, TestCase, override_settings
from kombu.transport.redis import Transport
from redis.exceptions import ConnectionError as RedisConnectionError

from conftest import PASSWORD, client_for
from notifications import notify
from notifications.models import Notification
from streaming.models import SessionStatus
from streaming.tests.conftest import USDC, make_service, start  # noqa: F401 (a fixture)
from wallets.tests.conftest import fund  # noqa: F401 (a fixture)


def test_every_redis_client_waits_a_bounded_time():
    timeout = settings.REDIS_TIMEOUT_SECONDS
    assert 0 < timeout <= 5
    cache = settings.CACHES["default"]["OPTIONS"]
    assert cache == {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    (layer,) = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    assert layer["socket_connect_timeout"] == timeout
    assert "socket_timeout" not in layer  # see paygo/settings.py: it hung the consumers' cancelled reads
    broker = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    assert broker["socket_connect_timeout"] == timeout
    assert Transport.brpop_timeout < broker["socket_timeout"] <= 5


@pytest.fixture
def silent_redis():
    """A Redis that accepts connections and never answers (a failover, a dropped route)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join(5)
    assert not thread.is_alive(), "the listener's thread never stopped"
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.fixture
def gone_redis():
    """A Redis that is not there: the connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def cache_at(url: str, timeout: float = 0.2) -> dict:
    """The settings' cache, pointed at `url`, with a short timeout (the production one is checked above)."""
    default = settings.CACHES["default"]
    options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    return {"default": {**default, "LOCATION": url, "OPTIONS": options}}


@pytest.mark.timeout(60)  # unbounded, the request would wait here until this
def test_a_silent_cache_lets_api_reads_through(alice, silent_redis, caplog):
    client = client_for(alice)
    with override_settings(CACHES=cache_at(silent_redis)):
        response = client.get("/api/v1/wallet/balance")

    assert response.status_code == 200
    assert "RateLimit" not in response  # nothing was counted, and nothing claims it was
    assert "API rate limits could not be counted" in caplog.text


@pytest.mark.timeout(60)
@pytest.mark.parametrize("redis", ["silent_redis", "gone_redis"])
def test_a_login_whose_rate_cannot_be_counted_is_a_503_to_try_again(request, alice, redis):
    url = request.getfixturevalue(redis)
    with override_settings(CACHES=cache_at(url)):
        response = Client().post(
            "/api/v1/auth/login",
            {"email": "alice@example.com", "password": PASSWORD},
            content_type="application/json",
        )

    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json() == {
        "message": "The service is busy: its cache did not answer. Nothing was done; try again shortly.",
        "statusCode": 503,
        "code": "cache_unavailable",
    }


@pytest.mark.timeout(60)
def test_an_admin_page_whose_cache_is_gone_is_a_503_too(olga, gone_redis):
    with override_settings(CACHES=cache_at(gone_redis)):
        response = Client(raise_request_exception=False).post(
            "/admin/login/", {"username": "olga@example.com", "password": PASSWORD}
        )

    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert b"its cache did not answer" in response.content


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_a_stop_is_answered_and_notified_when_its_live_push_cannot_be_made(
    alice,
    fund,  # noqa: F811 (the fixture imported above)
    make_service,  # noqa: F811
    gone_redis,
    on_commit_errors,
    caplog,
):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    client = client_for(alice)

    with override_settings(CACHES=cache_at(gone_redis)):
        response = client.patch(f"/api/v1/streams/{session.session_id}/stop")

    assert response.status_code == 200, response.content
    session.refresh_from_db()
    assert session.status == SessionStatus.COMPLETED
    # Which sessions are watched could not be read: nothing pushed, the stop notified all the same.
    assert on_commit_errors == []
    assert "Could not read which sessions are watched" in caplog.text
    assert Notification.objects.filter(user=alice, title="Session ended").count() == 1
    assert Notification.objects.filter(user=session.vendor, title="Session ended").count() == 1


def test_every_step_after_a_commit_is_logged_rather_than_raised():
    """transaction.on_commit(..., robust=True) everywhere in the apps: a step that runs once the
    money has moved (a push, a notification, a queued task) must not turn its answer into an error."""
    root = Path(settings.BASE_DIR)
    calls = []
    for path in root.glob("*/**/*.py"):
        if ".venv" in path.parts or "tests" in path.parts or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "on_commit":
                robust = any(k.arg == "robust" and getattr(k.value, "value", None) is True for k in node.keywords)
                calls.append((f"{path.relative_to(root)}:{node.lineno}", robust))

    # Every on_commit of the apps, counted: a scan that missed some (a folder, a spelling of the call)
    # would pass over them unseen. A call added or removed changes this number, on purpose.
    assert len(calls) == 18
    assert [where for where, robust in calls if not robust] == []


class SilentLayer:
    """A channel layer whose Redis stays connected and never answers."""

    async def group_send(self, group, message):
        await asyncio.sleep(3600)

    async def new_channel(self):
        return "health.silent"

    async def send(self, channel, message):
        await asyncio.sleep(3600)


@pytest.mark.timeout(60)
def test_a_push_to_a_silent_channel_layer_is_given_up_after_the_timeout(alice, settings, monkeypatch, caplog):
    settings.REDIS_TIMEOUT_SECONDS = 0.2
    monkeypatch.setattr("paygo.ws.get_channel_layer", lambda: SilentLayer())

    with caplog.at_level(logging.ERROR, logger="paygo.notifications"), TestCase.captureOnCommitCallbacks(execute=True):
        notification = notify(alice, "payment", "Paid", "Paid.")

    assert Notification.objects.filter(pk=notification.pk).exists()
    assert "Could not push a notification" in caplog.text


@pytest.mark.timeout(60)
def test_health_says_so_when_the_channel_layer_is_silent(anon, settings, monkeypatch):
    settings.REDIS_TIMEOUT_SECONDS = 0.2
    monkeypatch.setattr("paygo.api.views.get_channel_layer", lambda: SilentLayer())

    response = anon.get("/api/v1/health")

    assert response.status_code == 503
    assert response.json()["channelLayer"] == "error: TimeoutError"


@pytest.mark.django_db
def test_a_sign_up_whose_chipi_budget_cannot_be_counted_opens_its_wallet_later(anon, monkeypatch, caplog):
    def uncountable(*args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("wallets.chipi.ratelimit.acquire", uncountable)

    response = anon.post(
        "/api/v1/auth/register",
        {"email": "carol@example.com", "password": PASSWORD, "name": "Carol"},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["user"]["walletAddress"] == ""  # opened on first use
    assert "it will open on first use" in caplog.text
