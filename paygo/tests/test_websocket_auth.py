"""Socket authentication: a valid JWT (query or subprotocol) is accepted, anything else gets 4401."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.services import token_pair_for, user_deactivate
from paygo.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def _connect(path: str, subprotocols=None):
    communicator = WebsocketCommunicator(application, path, subprotocols=subprotocols)
    connected, subprotocol = await communicator.connect()
    return communicator, connected, subprotocol


async def test_valid_token_in_query_is_accepted(alice):
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()

    communicator, connected, _ = await _connect(f"/ws/notifications/?token={token}")

    assert connected
    assert await communicator.receive_json_from() == {"type": "connected", "userId": alice.pk}
    await communicator.disconnect()


async def test_valid_token_as_subprotocol_is_accepted_and_echoed(alice):
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()

    communicator, connected, subprotocol = await _connect("/ws/notifications/", [f"bearer.{token}"])

    assert connected
    assert subprotocol == f"bearer.{token}"
    assert (await communicator.receive_json_from())["userId"] == alice.pk
    await communicator.disconnect()


@pytest.mark.parametrize("query", ["", "?token=", "?token=garbage.token.here"])
async def test_missing_or_bad_token_closes_4401(query):
    communicator, connected, _ = await _connect(f"/ws/notifications/{query}")

    assert connected  # accepted so that the client can read the close code
    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4401}


async def test_deactivated_users_token_closes_4401(alice):
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()
    await database_sync_to_async(user_deactivate)(user=alice)

    communicator, _, _ = await _connect(f"/ws/notifications/?token={token}")

    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4401}


async def test_refresh_token_is_not_an_access_token(alice):
    token = await database_sync_to_async(lambda: token_pair_for(alice).refresh)()

    communicator, _, _ = await _connect(f"/ws/notifications/?token={token}")

    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4401}


@pytest.mark.parametrize("scheme", ["BEARER", "Bearer", "bEaReR"])
async def test_the_subprotocols_scheme_is_case_insensitive(alice, scheme):
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()

    communicator, connected, subprotocol = await _connect("/ws/notifications/", [f"{scheme}.{token}"])

    assert connected
    assert subprotocol == f"{scheme}.{token}"
    assert (await communicator.receive_json_from())["userId"] == alice.pk
    await communicator.disconnect()
