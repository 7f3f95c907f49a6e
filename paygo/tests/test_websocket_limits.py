"""Socket limits: the sockets a user holds open (WS_MAX_SOCKETS_PER_USER), counted across server
processes with leases, and the handshakes an address makes (RATELIMIT_SOCKETS_PER_IP), counted
before anything is read."""

from __future__ import annotations

import time

import pytest
import time_machine
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from accounts.services import token_pair_for
from paygo import ws
from paygo.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def _access_token(user) -> str:
    return token_pair_for(user).access


async def _open(path: str, *, headers=None, address: str | None = None) -> tuple[WebsocketCommunicator, dict]:
    """A socket and the first thing the server sent it (`connected`, or its close)."""
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    if address is not None:
        communicator.scope["client"] = (address, 50000)  # before the application reads its scope
    connected, _ = await communicator.connect()
    assert connected
    return communicator, await communicator.receive_output(timeout=5)


CONNECTED = "websocket.send"
TOO_MANY = {"type": "websocket.close", "code": 4429}


async def test_a_user_holds_at_most_the_limit_of_open_sockets(alice, bob, settings):
    """One token opened any number of sockets (300 in the review), all accepted. Past the limit a
    socket is closed with 4429, whatever token or socket it is; another user is not held by it, and
    a socket that closes makes room."""
    settings.WS_MAX_SOCKETS_PER_USER = 3
    tokens = [await _access_token(alice), await _access_token(alice)]
    alices = []
    for n in range(3):
        communicator, first = await _open(f"/ws/notifications/?token={tokens[n % 2]}")
        assert first["type"] == CONNECTED
        alices.append(communicator)

    for token in tokens:
        assert (await _open(f"/ws/notifications/?token={token}"))[1] == TOO_MANY
    bobs, first = await _open(f"/ws/notifications/?token={await _access_token(bob)}")
    assert first["type"] == CONNECTED

    await alices.pop().disconnect()
    another, first = await _open(f"/ws/notifications/?token={tokens[0]}")
    assert first["type"] == CONNECTED
    for communicator in [*alices, another, bobs]:
        await communicator.disconnect()


async def _open_sockets_of(user) -> dict[str, float]:
    layer = get_channel_layer()
    key = ws._open_sockets_key(layer, user.pk)
    members = await layer.connection(layer.consistent_hash(key)).zrange(key, 0, -1, withscores=True)
    return {name.decode(): score for name, score in members}


async def test_the_sockets_of_a_server_process_that_died_stop_counting(alice, settings):
    """A process that dies removes none of its sockets: their leases, no longer renewed, run out
    (a count kept up and down would have stayed wrong for good). Those of a live process count."""
    settings.WS_MAX_SOCKETS_PER_USER = 3
    layer = get_channel_layer()
    key = ws._open_sockets_key(layer, alice.pk)
    now = time.time()
    leases = {"specific.dead!1": now - 1, "specific.dead!2": now - 1, "specific.dead!3": now - 1}
    leases |= {"specific.alive!1": now + 60, "specific.alive!2": now + 60}
    await layer.connection(layer.consistent_hash(key)).zadd(key, leases)
    token = await _access_token(alice)

    communicator, first = await _open(f"/ws/notifications/?token={token}")
    assert first["type"] == CONNECTED
    assert (await _open(f"/ws/notifications/?token={token}"))[1] == TOO_MANY

    counted = set(await _open_sockets_of(alice))
    assert len(counted) == 3
    assert {"specific.alive!1", "specific.alive!2"} < counted
    assert not [name for name in counted if "dead" in name]
    await communicator.disconnect()
    assert set(await _open_sockets_of(alice)) == {"specific.alive!1", "specific.alive!2"}


async def test_a_live_server_process_renews_its_sockets_leases(alice, settings):
    """Every third of a lease, a process renews all of its sockets' at once: an open socket goes on
    counting however long it stays open."""
    settings.WS_MAX_SOCKETS_PER_USER = 2
    token = await _access_token(alice)
    start = time.time()
    with time_machine.travel(start, tick=False) as clock:
        sockets = [await _open(f"/ws/notifications/?token={token}") for _ in range(2)]
        assert [first["type"] for _, first in sockets] == [CONNECTED, CONNECTED]

        clock.move_to(start + ws.SOCKET_LEASE_SECONDS * 2 / 3)
        await ws._open_sockets().renew(get_channel_layer())
        clock.move_to(start + ws.SOCKET_LEASE_SECONDS * 4 / 3)  # past the leases the handshakes took
        assert (await _open(f"/ws/notifications/?token={token}"))[1] == TOO_MANY
        closed, _ = sockets.pop()
        await closed.disconnect()
        await ws._open_sockets().renew(get_channel_layer())  # a socket that closed stays out
        assert len(await _open_sockets_of(alice)) == 1

        clock.move_to(start + ws.SOCKET_LEASE_SECONDS * 4)  # past the renewed leases: none since
        communicator, first = await _open(f"/ws/notifications/?token={token}")
        assert first["type"] == CONNECTED
        for socket, _ in [*sockets, (communicator, None)]:
            await socket.disconnect()
    assert await _open_sockets_of(alice) == {}


async def test_the_leases_are_renewed_while_the_socket_is_open(alice, monkeypatch):
    """The renewal runs on its own (here every 0.5 s, for leases of 1.5 s: a second to spare for a
    loaded machine before the handshake's lease runs out)."""
    import asyncio

    monkeypatch.setattr(ws, "SOCKET_LEASE_SECONDS", 1.5)
    communicator, first = await _open(f"/ws/notifications/?token={await _access_token(alice)}")
    assert first["type"] == CONNECTED
    [handshake_lease_ends] = (await _open_sockets_of(alice)).values()

    deadline = time.monotonic() + 10
    while (lease_ends := list((await _open_sockets_of(alice)).values())) == [handshake_lease_ends]:
        assert time.monotonic() < deadline, "the lease was never renewed"
        await asyncio.sleep(0.02)

    assert len(lease_ends) == 1 and lease_ends[0] > handshake_lease_ends  # renewed, not run out
    await communicator.disconnect()


async def test_an_address_past_its_handshakes_is_closed_4429_before_anything_is_read(
    alice, settings, still_clock, monkeypatch
):
    """Handshakes were not limited: a made-up admin session cookie, with an Origin equal to the Host
    (anyone can write both), cost a read of django_session each, and a token a read of the account.
    An address's handshakes that would read count against RATELIMIT_SOCKETS_PER_IP; past it they are
    closed with 4429, and nothing is read. A handshake with nothing to read does not count."""
    from django.contrib.sessions.backends.db import SessionStore

    settings.RATELIMIT_SOCKETS_PER_IP = "3/m"
    reads = []
    read_session = SessionStore._get_session_from_db
    read_account = ws.token_user

    def session_read(self):
        reads.append("session")
        return read_session(self)

    def account_read(token):
        reads.append("account")
        return read_account(token)

    monkeypatch.setattr(SessionStore, "_get_session_from_db", session_read)
    monkeypatch.setattr(ws, "token_user", account_read)
    token = await _access_token(alice)
    site = [(b"origin", b"http://x"), (b"host", b"x")]

    def cookie(n: int) -> list:
        return [(b"cookie", b"sessionid=%032d" % n), *site]

    for headers in ([], site, [(b"cookie", b"sessionid=%032d" % 9), (b"origin", b"http://elsewhere"), (b"host", b"x")]):
        assert (await _open("/ws/notifications/", headers=headers, address="198.51.100.1"))[1]["code"] == 4401
    assert reads == []  # nothing to read, nothing counted

    answers = [
        (await _open("/ws/notifications/", headers=cookie(1), address="198.51.100.1"))[1],
        (await _open(f"/ws/notifications/?token={token}", address="198.51.100.1"))[1],
        (await _open("/ws/notifications/", headers=cookie(2), address="198.51.100.1"))[1],
        (await _open("/ws/notifications/", headers=cookie(3), address="198.51.100.1"))[1],
        (await _open(f"/ws/notifications/?token={token}", address="198.51.100.1"))[1],
    ]

    assert [answer.get("code") or answer["type"] for answer in answers] == [4401, CONNECTED, 4401, 4429, 4429]
    assert reads == ["session", "account", "session"]
    assert (await _open(f"/ws/notifications/?token={token}", address="198.51.100.2"))[1]["type"] == CONNECTED


async def test_counting_handshakes_opens_no_connection_to_redis_for_each(alice, redis_connections_opened):
    """Each handshake is a context of its own, and Django's caches are per context: counting with
    the context's cache made a connection pool, and opened a new connection to Redis, every time."""
    token = await _access_token(alice)

    for _ in range(12):
        communicator, first = await _open(f"/ws/notifications/?token={token}")
        assert first["type"] == CONNECTED
        await communicator.disconnect()

    assert len(redis_connections_opened) <= ws.HANDSHAKE_THREADS


@pytest.mark.parametrize(
    ("peer", "trusted", "shares_a_budget"),
    [("127.0.0.1", ["127.0.0.1"], False), ("203.0.113.5", ["127.0.0.1"], True)],
    ids=["behind a trusted proxy", "forged by the client"],
)
async def test_handshakes_are_counted_by_the_client_address_a_trusted_proxy_names(
    alice, settings, still_clock, peer, trusted, shares_a_budget
):
    settings.RATELIMIT_SOCKETS_PER_IP = "1/m"
    settings.TRUSTED_PROXIES = trusted
    token = await _access_token(alice)

    answers = [
        (await _open(f"/ws/notifications/?token={token}", headers=[(b"x-forwarded-for", forwarded)], address=peer))[1]
        for forwarded in (b"198.51.100.1", b"198.51.100.2")
    ]

    assert answers[0]["type"] == CONNECTED
    if shares_a_budget:
        assert answers[1] == TOO_MANY
    else:
        assert answers[1]["type"] == CONNECTED
