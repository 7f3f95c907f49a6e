"""New messages and status changes reach the other participant live on /ws/notifications/."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.services import token_pair_for
from consultations.models import Message
from consultations.tests.conftest import message_url, status_url
from paygo.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def connect(user) -> WebsocketCommunicator:
    token = await database_sync_to_async(lambda: token_pair_for(user).access)()
    communicator = WebsocketCommunicator(application, f"/ws/notifications/?token={token}")
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from() == {"type": "connected", "userId": user.pk}
    return communicator


@database_sync_to_async
def request(api, user, method: str, url: str, data: dict, *, status: int):
    response = getattr(api(user), method)(url, data, format="json")  # signing in is database work too
    assert response.status_code == status, response.json()
    return response.json()


async def test_a_new_message_is_pushed_to_the_other_participant(api, alice, victor, bob, consult):
    consultation = await database_sync_to_async(consult)()
    victors, alices, bobs = await connect(victor), await connect(alice), await connect(bob)

    sent = await request(
        api, alice, "post", message_url(consultation), {"message": "<b>Are you there?</b>"}, status=201
    )

    pushed = await victors.receive_json_from(timeout=5)
    assert pushed["type"] == "notification"
    notification = pushed["notification"]
    assert notification["type"] == "consultation"
    assert notification["title"] == "New message from Alice"
    assert notification["message"] == "<b>Are you there?</b>"
    assert notification["data"] == {"consultationId": consultation.pk, "messageId": sent["sentMessage"]["id"]}
    assert notification["read"] is False
    # The sender and the outsider hear nothing.
    assert await alices.receive_nothing(timeout=0.3)
    assert await bobs.receive_nothing(timeout=0.3)
    assert await database_sync_to_async(Message.objects.count)() == 2
    for socket in (victors, alices, bobs):
        await socket.disconnect()


async def test_a_status_change_is_pushed_to_the_other_participant(api, alice, victor, consult):
    consultation = await database_sync_to_async(consult)()
    alices, victors = await connect(alice), await connect(victor)

    await request(api, victor, "patch", status_url(consultation), {"status": "accepted"}, status=200)

    notification = (await alices.receive_json_from(timeout=5))["notification"]
    assert notification["title"] == "Consultation accepted"
    assert notification["data"] == {"consultationId": consultation.pk, "status": "accepted"}
    assert await victors.receive_nothing(timeout=0.3)
    await alices.disconnect()
    await victors.disconnect()


async def test_a_refused_message_pushes_nothing(api, alice, victor, consult):
    consultation = await database_sync_to_async(consult)("rejected")
    victors = await connect(victor)

    response = await database_sync_to_async(
        lambda: api(alice).post(message_url(consultation), {"message": "hello?"}, format="json")
    )()

    assert response.status_code == 409
    assert await victors.receive_nothing(timeout=0.5)
    await victors.disconnect()
