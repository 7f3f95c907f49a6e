"""Frames a socket cannot read (not JSON, binary, nested too deep, a lone surrogate) close it with
1003, quietly."""

from __future__ import annotations

import logging

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.services import token_pair_for
from conftest import money_db
from marketplace.models import Category
from marketplace.services import service_create
from paygo.asgi import application
from streaming import services
from wallets.tests.conftest import fund_wallet

pytestmark = [money_db(), pytest.mark.timeout(60)]

USDC = 1_000_000

FRAMES = [
    {"text": "not json"},
    {"text": ""},
    {"text": '{"type": "ping"'},
    {"text": "NaN"},
    {"text": "[" * 100_000 + "]" * 100_000},
    {"text": '{"type": "ping", "note": "\\ud800"}'},
    {"bytes": b'{"type": "ping"}'},
    {"bytes": b"\x00\xff"},
]


@database_sync_to_async
def _token(user) -> str:
    return token_pair_for(user).access


@database_sync_to_async
def _session_path(user, vendor) -> str:
    fund_wallet(user, 10 * USDC)
    category = Category.objects.filter(parent__isnull=True).first()
    service = service_create(vendor=vendor, name="Live", category=category, rate=USDC, unit="per_minute")
    return f"/ws/streams/{services.session_start(user=user, service=service).session_id}/"


async def _close_code(communicator) -> int:
    """The code the server closed with, past the messages it sent before."""
    return (await _closed(communicator))["code"]


async def _closed(communicator) -> dict:
    """The close the server sent ({"type": "websocket.close", "code", "reason"?}), past the messages
    it sent before."""
    for _ in range(50):
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return output
    raise AssertionError("the socket was not closed")


@pytest.mark.parametrize("frame", FRAMES, ids=lambda frame: repr(frame)[:40])
@pytest.mark.parametrize("socket", ["notifications", "streams"])
async def test_an_unreadable_frame_closes_1003_and_logs_no_error(alice, victor, caplog, socket, frame):
    path = "/ws/notifications/" if socket == "notifications" else await _session_path(alice, victor)
    communicator = WebsocketCommunicator(application, f"{path}?token={await _token(alice)}")
    connected, _ = await communicator.connect()
    assert connected

    with caplog.at_level(logging.WARNING):
        await communicator.send_input({"type": "websocket.receive", **frame})
        code = await _close_code(communicator)

    assert code == 1003
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    await communicator.disconnect()


async def test_a_readable_frame_keeps_the_socket_open(alice, victor):
    path = await _session_path(alice, victor)
    communicator = WebsocketCommunicator(application, f"{path}?token={await _token(alice)}")
    await communicator.connect()

    await communicator.send_json_to([1, 2])  # JSON, if not a message the socket knows: ignored
    await communicator.send_json_to({"type": "ping"})

    for _ in range(50):
        message = await communicator.receive_json_from(timeout=5)
        if message["type"] == "pong":
            break
    else:
        raise AssertionError("no pong")
    await communicator.disconnect()
