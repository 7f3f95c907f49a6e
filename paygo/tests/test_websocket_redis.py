"""A channel layer (Redis) that fails or stays silent during a socket's handshake: the socket is
closed with 1013, "try again later", as when the database's pool is busy; a warning, no error."""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from redis.exceptions import ConnectionError as RedisConnectionError

from accounts.services import token_pair_for
from paygo.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def _refused(group, channel):
    raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


async def _reset(group, channel):
    raise ConnectionResetError(104, "Connection reset by peer")


async def _silent(group, channel):
    await asyncio.Event().wait()  # connected, and never answering


@pytest.mark.parametrize("failure", [_refused, _reset, _silent], ids=["refused", "reset", "silent"])
@pytest.mark.parametrize("failing", ["the user's group", "the socket's own group"])
async def test_a_handshake_whose_channel_layer_fails_is_closed_try_again_later(
    alice, monkeypatch, settings, caplog, failure, failing
):
    """The group joins raised out of the consumer (Daphne: "Exception inside application", 1011), or,
    Redis silent, held the handshake for good (the layer's client has no read timeout)."""
    from paygo import ws

    monkeypatch.setattr(ws, "SOCKET_LAYER_SECONDS", 0.3)
    settings.REDIS_TIMEOUT_SECONDS = 0.3
    layer = get_channel_layer()
    group_add = type(layer).group_add

    async def failing_group_add(self, group, channel):
        if group.startswith("sockets.user.") == (failing == "the user's group"):
            return await failure(group, channel)
        return await group_add(self, group, channel)

    monkeypatch.setattr(type(layer), "group_add", failing_group_add)
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()
    communicator = WebsocketCommunicator(application, f"/ws/notifications/?token={token}")

    with caplog.at_level(logging.WARNING):
        connected, _ = await communicator.connect()
        closed = await communicator.receive_output(timeout=5)

    assert connected
    assert closed == {"type": "websocket.close", "code": 1013}
    warned = [record for record in caplog.records if record.name == "paygo.ws"]
    assert [record.levelno for record in warned] == [logging.WARNING]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    await communicator.disconnect()  # leaving the group it joined logs nothing either
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_a_socket_whose_channel_layer_fails_as_it_closes_logs_a_warning(alice, monkeypatch, caplog):
    """Leaving its groups on a failing Redis killed the consumer with an error; the layer drops a
    member older than its group expiry anyway."""
    layer = get_channel_layer()
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()
    communicator = WebsocketCommunicator(application, f"/ws/notifications/?token={token}")
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["type"] == "connected"
    monkeypatch.setattr(type(layer), "group_discard", lambda self, group, channel: _refused(group, channel))

    with caplog.at_level(logging.WARNING):
        await communicator.disconnect()

    assert [record.levelno for record in caplog.records if record.name == "paygo.ws"] == [logging.WARNING]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.timeout(120)
async def test_through_daphne_the_client_reads_the_1013(alice, live_daphne):
    """autobahn, Daphne's WebSocket layer, refused to send 1013 (or any code but 1000 and 3000-4999
    from the application): the close raised inside Daphne, logged as "Exception inside application",
    and Daphne closed the socket with 1011 instead. Here Redis refuses every connection."""
    import aiohttp

    host, port = live_daphne(REDIS_URL="redis://127.0.0.1:9/0")  # nothing listens on the discard port
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()

    url = f"ws://{host}:{port}/ws/notifications/"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=[f"bearer.{token}"]) as socket:
        message = await socket.receive(timeout=30)

    assert message.type == aiohttp.WSMsgType.CLOSE
    assert message.data == 1013
