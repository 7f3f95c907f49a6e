"""/ws/streams/<sessionId>/ on the Redis channel layer: who may watch, ticks, charges, stops."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from accounts.services import token_pair_for
from conftest import grant, money_db
from paygo.asgi import application
from streaming import services
from streaming.hub import REFRESH_EVERY
from streaming.models import StreamingSession
from streaming.sweep import sweep
from streaming.tests.conftest import USDC
from wallets.tests.conftest import fund_wallet

pytestmark = [money_db(), pytest.mark.timeout(60)]


# What a socket may say of the payer's wallet: only to the payer and staff, never to the vendor.
PAYER_KEYS = {"balance", "runwaySeconds", "stopAt"}


@database_sync_to_async
def _session_for(user, make_service, funds: int = 10 * USDC) -> StreamingSession:
    fund_wallet(user, funds)
    return services.session_start(user=user, service=make_service("per_minute", rate=USDC))


@database_sync_to_async
def _token(user) -> str:
    return token_pair_for(user).access


async def _connect(user, session_id):
    path = f"/ws/streams/{session_id}/" + (f"?token={await _token(user)}" if user else "")
    communicator = WebsocketCommunicator(application, path)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _next(communicator, kind: str, limit: int = 50) -> dict:
    for _ in range(limit):
        message = await communicator.receive_json_from(timeout=5)
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} message")


async def _events_until(communicator, kind: str, limit: int = 200) -> list[dict]:
    """Every message but the ticks, up to and including the first `kind`."""
    events = []
    for _ in range(limit):
        message = await communicator.receive_json_from(timeout=5)
        if message["type"] != "cost.tick":
            events.append(message)
        if message["type"] == kind:
            return events
    raise AssertionError(f"no {kind} message")


async def test_without_a_token_closes_4401(alice, make_service):
    session = await _session_for(alice, make_service)

    communicator = await _connect(None, session.session_id)

    assert await communicator.receive_output() == {
        "type": "websocket.close",
        "code": 4401,
        "reason": "not_authenticated",
    }


@pytest.mark.parametrize("who", ["bob", "wanda", "stan"])
async def test_someone_elses_session_closes_4403(alice, bob, wanda, stan, make_service, who):
    """Staff too, without the permission the admin asks to see a session."""
    session = await _session_for(alice, make_service)

    communicator = await _connect({"bob": bob, "wanda": wanda, "stan": stan}[who], session.session_id)

    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4403}


async def test_unknown_session_closes_4403(alice):
    communicator = await _connect(alice, "00000000-0000-0000-0000-000000000000")

    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4403}


@override_settings(STREAM_TICK_SECONDS=0.05)
@pytest.mark.parametrize("who", ["alice", "olga"])
async def test_owner_and_staff_get_ticks_with_the_balance(alice, olga, make_service, who):
    session = await _session_for(alice, make_service)

    communicator = await _connect({"alice": alice, "olga": olga}[who], session.session_id)
    tick = await _next(communicator, "cost.tick")

    assert tick["sessionId"] == str(session.session_id)
    assert set(tick) == {
        "type",
        "sessionId",
        "elapsedSeconds",
        "estimatedCost",
        "charged",
        "balance",
        "runwaySeconds",
        "at",
    }
    assert tick["charged"] == "0.000000"
    assert Decimal("9.9") < Decimal(tick["balance"]) <= 10  # the hold plus the free balance, less the estimate
    assert 590 < tick["runwaySeconds"] <= 600
    await communicator.disconnect()


@override_settings(STREAM_TICK_SECONDS=0.05)
@pytest.mark.parametrize("who", ["victor", "stan"])
async def test_the_vendor_gets_ticks_without_the_payers_balance(alice, victor, stan, make_service, who):
    """And so do staff who may view sessions but not wallets."""
    session = await _session_for(alice, make_service)
    if who == "stan":
        stan = await database_sync_to_async(grant)(stan, "streaming.view_streamingsession")

    communicator = await _connect({"victor": victor, "stan": stan}[who], session.session_id)
    tick = await _next(communicator, "cost.tick")

    assert tick["sessionId"] == str(session.session_id)
    assert set(tick) == {"type", "sessionId", "elapsedSeconds", "estimatedCost", "charged", "at"}
    assert tick["charged"] == "0.000000"
    await communicator.disconnect()


@override_settings(STREAM_TICK_SECONDS=0.05)
@pytest.mark.parametrize("who", ["alice", "victor", "olga"])
async def test_what_each_watcher_is_told_of_a_charge_a_low_balance_and_the_stop(alice, victor, olga, make_service, who):
    # 1.5 USDC at 1 USDC a minute: after the first minute 0.5 USDC is left, 30 seconds of runway.
    session = await _session_for(alice, make_service, funds=1_500_000)
    communicator = await _connect({"alice": alice, "victor": victor, "olga": olga}[who], session.session_id)
    await _next(communicator, "cost.tick")  # the socket marked the session as watched
    later = session.start_time + timedelta(seconds=60)
    await database_sync_to_async(services.session_heartbeat)(session_id=session.pk, now=later)

    await database_sync_to_async(sweep)(now=later)
    await database_sync_to_async(services.session_stop)(session=session, reason="user", now=later)
    events = await _events_until(communicator, "session.stopped")

    by_type = {event["type"]: event for event in events}
    charged, stopped = by_type["cost.charged"], by_type["session.stopped"]
    assert charged["charged"] == "1.000000"
    assert charged["amount"] == "1.000000"
    assert charged["chargedUntil"] == later.isoformat().replace("+00:00", "Z")
    assert stopped["reason"] == "user"
    assert stopped["totalCost"] == "1.000000"
    assert set(stopped) == {"type", "sessionId", "reason", "totalCost", "endTime", "at"}
    if who == "victor":
        assert [event["type"] for event in events] == ["cost.charged", "session.stopped"]
        assert not any(PAYER_KEYS & set(event) for event in events)
    else:
        assert [event["type"] for event in events] == ["cost.charged", "balance.low", "session.stopped"]
        assert (charged["balance"], charged["runwaySeconds"]) == ("0.500000", 30)
        low = by_type["balance.low"]
        assert low["runwaySeconds"] == 30
        assert low["stopAt"] == (session.start_time + timedelta(seconds=90)).isoformat().replace("+00:00", "Z")
    await communicator.disconnect()


@override_settings(STREAM_TICK_SECONDS=0.05)
async def test_sweep_pushes_the_charge_and_the_stop(alice, make_service):
    session = await _session_for(alice, make_service)
    communicator = await _connect(alice, session.session_id)
    await _next(communicator, "cost.tick")  # the socket marked the session as watched
    later = session.start_time + timedelta(seconds=60)
    await database_sync_to_async(services.session_heartbeat)(session_id=session.pk, now=later)

    await database_sync_to_async(sweep)(now=later)
    charged = await _next(communicator, "cost.charged")
    await database_sync_to_async(services.session_stop)(session=session, reason="user", now=later)
    stopped = await _next(communicator, "session.stopped")

    assert charged["charged"] == "1.000000"
    assert charged["balance"] == "9.000000"
    assert stopped["reason"] == "user"
    assert stopped["totalCost"] == "1.000000"
    await communicator.disconnect()


@database_sync_to_async
def _last_heartbeat(session):
    return StreamingSession.objects.get(pk=session.pk).last_heartbeat_at


@override_settings(STREAM_TICK_SECONDS=0.05)
async def test_the_users_open_socket_is_a_sign_of_life(alice, make_service):
    """Recorded by the hub every REFRESH_EVERY ticks, the first time before the first tick."""
    session = await _session_for(alice, make_service)
    before = session.last_heartbeat_at
    communicator = await _connect(alice, session.session_id)

    await _next(communicator, "cost.tick")
    seen = await _last_heartbeat(session)
    for _ in range(REFRESH_EVERY + 1):
        await _next(communicator, "cost.tick")

    assert before < seen < await _last_heartbeat(session)
    await communicator.disconnect()


@override_settings(STREAM_TICK_SECONDS=0.05)
@pytest.mark.parametrize("who", ["victor", "olga"])
async def test_the_vendors_and_staffs_sockets_are_no_sign_of_life(alice, victor, olga, make_service, who):
    session = await _session_for(alice, make_service)
    communicator = await _connect({"victor": victor, "olga": olga}[who], session.session_id)

    await communicator.send_json_to({"type": "ping"})
    await _next(communicator, "pong")
    for _ in range(REFRESH_EVERY + 2):
        await _next(communicator, "cost.tick")

    assert await _last_heartbeat(session) == session.last_heartbeat_at
    await communicator.disconnect()


@override_settings(STREAM_TICK_SECONDS=0.05)
async def test_messages_from_the_user_are_heartbeats(alice, make_service):
    """Recorded at the hub's next tick, between the refreshes that record the open socket."""
    session = await _session_for(alice, make_service)
    communicator = await _connect(alice, session.session_id)
    await _next(communicator, "cost.tick")  # the first tick: the open socket was recorded
    seen = await _last_heartbeat(session)

    await communicator.send_json_to({"type": "ping"})
    pong = await _next(communicator, "pong")
    await _next(communicator, "cost.tick")
    await _next(communicator, "cost.tick")  # at least one whole tick after the ping

    assert pong["at"]
    assert await _last_heartbeat(session) > seen
    await communicator.disconnect()


# --- Live usage metrics: what the session's user reports reaches every watcher ----------------------


@database_sync_to_async
def _report_metrics(user, session, body) -> int:
    from conftest import client_for

    return client_for(user).patch(f"/api/v1/streams/{session.session_id}/metrics", body, format="json").status_code


@override_settings(STREAM_TICK_SECONDS=0.05)
@pytest.mark.parametrize("who", ["alice", "victor", "olga", "stan"])
async def test_reported_metrics_reach_the_user_the_vendor_and_staff(alice, victor, olga, stan, make_service, who):
    """The session's own figures, not the payer's money: the vendor gets the whole message, as do
    staff who may view sessions but not wallets."""
    session = await _session_for(alice, make_service)
    if who == "stan":
        stan = await database_sync_to_async(grant)(stan, "streaming.view_streamingsession")
    communicator = await _connect(
        {"alice": alice, "victor": victor, "olga": olga, "stan": stan}[who], session.session_id
    )
    await _next(communicator, "cost.tick")

    assert await _report_metrics(alice, session, {"bitrate": 2500, "latency": 41.5, "frameDrops": 2}) == 200
    message = await _next(communicator, "metrics.updated")

    recorded = (await database_sync_to_async(StreamingSession.objects.get)(pk=session.pk)).quality_metrics[-1]
    assert message == {
        "type": "metrics.updated",
        "sessionId": str(session.session_id),
        "metrics": {"bitrate": 2500, "latency": 41.5, "frameDrops": 2, "at": recorded["at"]},
        "at": recorded["at"],
    }
    await communicator.disconnect()


@override_settings(STREAM_TICK_SECONDS=0.05)
async def test_refused_metrics_are_not_published(alice, bob, victor, make_service):
    """An outsider's report (404) and a bad one (400) record nothing and tell the watchers nothing:
    the next metrics.updated they get is the next accepted report's."""
    session = await _session_for(alice, make_service)
    communicator = await _connect(victor, session.session_id)
    await _next(communicator, "cost.tick")

    assert await _report_metrics(bob, session, {"bitrate": 1}) == 404
    assert await _report_metrics(victor, session, {"bitrate": 2}) == 404  # the vendor does not report metrics
    assert await _report_metrics(alice, session, {"bitrate": -3}) == 400
    assert await _report_metrics(alice, session, {"latency": 4}) == 200
    message = await _next(communicator, "metrics.updated")

    assert {key: value for key, value in message["metrics"].items() if key != "at"} == {"latency": 4}
    await communicator.disconnect()


# --- An operator signed into the admin watches from the session's admin page ----------------------

SITE = [(b"host", b"testserver"), (b"origin", b"http://testserver")]


@database_sync_to_async
def _admin_cookie(user) -> bytes:
    """The admin's session cookie of `user`, as a browser signed into /admin/ sends it."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


@database_sync_to_async
def _staff(email: str, *permissions: str):
    from django.contrib.auth.models import Permission

    from accounts.services import user_create

    user = user_create(email=email, password=None, name="Operator", role="user", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


async def _connect_signed_in(user, session_id, headers=SITE):
    communicator = WebsocketCommunicator(
        application, f"/ws/streams/{session_id}/", headers=[*headers, (b"cookie", await _admin_cookie(user))]
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


@override_settings(STREAM_TICK_SECONDS=0.05)
async def test_an_operator_signed_into_the_admin_gets_ticks_with_the_balance(alice, make_service):
    session = await _session_for(alice, make_service)
    # The payer's money takes the permission to view wallets too (streaming.selectors.PAYER_FUNDS).
    operator = await _staff("ops@example.com", "view_streamingsession", "view_account")

    communicator = await _connect_signed_in(operator, session.session_id)
    tick = await _next(communicator, "cost.tick")

    assert tick["sessionId"] == str(session.session_id)
    assert {"balance", "runwaySeconds"} <= set(tick)
    await communicator.disconnect()


async def test_staff_without_the_permission_to_view_sessions_closes_4403(alice, make_service):
    session = await _session_for(alice, make_service)
    operator = await _staff("ops@example.com")

    by_admin = await _connect_signed_in(operator, session.session_id)
    by_token = await _connect(operator, session.session_id)

    assert await by_admin.receive_output() == {"type": "websocket.close", "code": 4403}
    assert await by_token.receive_output() == {"type": "websocket.close", "code": 4403}


@pytest.mark.parametrize(
    "headers",
    [
        [(b"host", b"testserver"), (b"origin", b"http://elsewhere.example")],  # another site's page
        [(b"host", b"testserver")],  # no page at all
    ],
    ids=["another-site", "no-origin"],
)
async def test_the_admins_cookie_counts_only_from_a_page_of_this_site(alice, olga, make_service, headers):
    session = await _session_for(alice, make_service)

    communicator = await _connect_signed_in(olga, session.session_id, headers=headers)

    assert await communicator.receive_output() == {
        "type": "websocket.close",
        "code": 4401,
        "reason": "not_authenticated",
    }


async def test_a_session_cookie_of_someone_not_staff_closes_4401(alice, make_service):
    session = await _session_for(alice, make_service)

    communicator = await _connect_signed_in(alice, session.session_id)

    assert await communicator.receive_output() == {
        "type": "websocket.close",
        "code": 4401,
        "reason": "not_authenticated",
    }


@override_settings(STREAM_TICK_SECONDS=0.02)
async def test_the_users_open_socket_is_a_sign_of_life_and_the_vendors_is_not(alice, victor, make_service):
    session = await _session_for(alice, make_service)
    before = session.last_heartbeat_at

    vendor = await _connect(victor, session.session_id)
    for _ in range(12):  # past two refreshes, without a word from the vendor
        await _next(vendor, "cost.tick")
    unchanged = await database_sync_to_async(StreamingSession.objects.get)(pk=session.pk)
    await vendor.disconnect()

    user = await _connect(alice, session.session_id)
    for _ in range(12):  # the user says nothing either: the open socket is enough
        await _next(user, "cost.tick")
    seen = await database_sync_to_async(StreamingSession.objects.get)(pk=session.pk)
    await user.disconnect()

    assert unchanged.last_heartbeat_at == before
    assert seen.last_heartbeat_at > before


def test_watched_finds_the_marked_sessions_of_a_batch_whatever_is_marked_elsewhere():
    """The publisher's look-up: nothing when nothing is marked, the marked ones of a batch when
    fewer are marked than the batch holds, and when more are (the batch's members looked up)."""
    from streaming import live

    batch = [f"s-{n}" for n in range(10)]
    assert live.watched(batch) == set()

    live.mark_watched(["s-3", "s-7", "elsewhere"])
    assert live.watched(batch) == {"s-3", "s-7"}

    live.mark_watched([f"other-{n}" for n in range(20)])  # more marked than the batch holds
    assert live.watched(batch) == {"s-3", "s-7"}
    assert live.watched(["s-3"]) == {"s-3"}
    assert live.watched([]) == set()


@override_settings(STREAM_TICK_SECONDS=3)
async def test_a_stop_just_after_a_socket_opened_reaches_it(alice, bob, make_service):
    """A socket's session is marked watched at the hub's next tick (here up to 3 s away), and only
    watched sessions got their events: a stop in between never reached the socket, which showed a
    cost still growing, then silence. A stop is pushed whether the session is marked or not."""
    other = await _session_for(bob, make_service)
    others = await _connect(bob, other.session_id)
    await _next(others, "cost.tick")  # the hub runs for bob's socket: its next tick is 3 s away

    session = await _session_for(alice, make_service)
    communicator = await _connect(alice, session.session_id)
    await database_sync_to_async(services.session_stop)(session=session, reason="user")

    stopped = await _next(communicator, "session.stopped")
    await communicator.disconnect()
    await others.disconnect()
    assert (stopped["sessionId"], stopped["reason"]) == (str(session.session_id), "user")


@database_sync_to_async
def _silent_for(session, seconds: int):
    """The session started `seconds` ago and was never heard from since; its start."""
    started = session.start_time - timedelta(seconds=seconds)
    StreamingSession.objects.filter(pk=session.pk).update(
        start_time=started, charged_until=started, last_heartbeat_at=started
    )
    return started


@override_settings(STREAM_TICK_SECONDS=0.05, SESSION_IDLE_SECONDS=60)
@pytest.mark.parametrize("who", ["victor", "olga"])
async def test_the_ticker_stops_a_silent_session_at_its_idle_end(alice, victor, olga, make_service, who):
    """Silent past its idle timeout with only its vendor or staff watching (no sign of life), it has
    ended there: its ticks went on, its estimate growing past what the stop then charged, until the
    next sweep. The ticker ends it at once, as when its money runs out, billed up to the idle end."""
    session = await _session_for(alice, make_service)
    started = await _silent_for(session, 100)
    communicator = await _connect({"victor": victor, "olga": olga}[who], session.session_id)

    stopped = (await _events_until(communicator, "session.stopped"))[-1]

    assert (stopped["reason"], stopped["totalCost"]) == ("idle", "1.000000")
    assert stopped["endTime"] == (started + timedelta(seconds=60)).isoformat().replace("+00:00", "Z")
    ended = await database_sync_to_async(StreamingSession.objects.get)(pk=session.pk)
    assert (ended.status, ended.total_cost, ended.total_usage_seconds) == ("stopped", USDC, 60)
    await communicator.disconnect()
