"""The live push on /ws/notifications/, through the Redis channel layer, after commit only."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction

from accounts.services import token_pair_for
from notifications import notify
from notifications.models import Notification
from notifications.services import notification_broadcast
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
def notify_committed(user, *args):
    with transaction.atomic():
        return notify(user, *args)


async def test_a_committed_notification_is_pushed_to_its_owner_only(alice, bob, mailoutbox):
    alices, bobs = await connect(alice), await connect(bob)

    notification = await notify_committed(alice, "payment", "Payment received", "12.5 USDC.", {"txHash": "0xabc"})

    message = await alices.receive_json_from(timeout=5)
    assert message == {
        "type": "notification",
        "notification": {
            "id": notification.pk,
            "type": "payment",
            "title": "Payment received",
            "message": "12.5 USDC.",
            "data": {"txHash": "0xabc"},
            "read": False,
            "readAt": None,
            "createdAt": notification.created_at.isoformat().replace("+00:00", "Z"),
            "delivery": {"email": "pending", "sms": "not_requested"},
        },
    }
    assert await bobs.receive_nothing(timeout=0.3)
    assert len(mailoutbox) == 1
    await alices.disconnect()
    await bobs.disconnect()


async def test_the_push_matches_the_api(alice, api):
    socket = await connect(alice)

    await notify_committed(alice, "payment", "Payment received", "It arrived.", {"session_id": 3})

    pushed = (await socket.receive_json_from(timeout=5))["notification"]
    listed = await database_sync_to_async(lambda: api(alice).get("/api/v1/notifications").json())()
    first = listed["notifications"][0]
    assert pushed == {**first, "delivery": {"email": "pending", "sms": "not_requested"}}
    assert first["delivery"] == {"email": "sent", "sms": "not_requested"}  # the email went out since
    await socket.disconnect()


async def test_a_rolled_back_notify_pushes_and_sends_nothing(alice, mailoutbox):
    socket = await connect(alice)

    @database_sync_to_async
    def notify_then_fail():
        with pytest.raises(RuntimeError), transaction.atomic():
            notify(alice, "alert", "Low balance", "About 4 minutes left.")
            raise RuntimeError("the caller's transaction failed")

    await notify_then_fail()

    assert await socket.receive_nothing(timeout=0.5)
    assert await database_sync_to_async(Notification.objects.count)() == 0
    assert mailoutbox == []
    await socket.disconnect()


async def test_a_broadcast_reaches_every_socket(alice, bob, victor):
    alices, bobs, victors = await connect(alice), await connect(bob), await connect(victor)

    await database_sync_to_async(notification_broadcast)(
        role="user", type="system", title="Maintenance", message="Tonight at 2am UTC."
    )

    for socket in (alices, bobs):
        assert (await socket.receive_json_from(timeout=5))["notification"]["title"] == "Maintenance"
    assert await victors.receive_nothing(timeout=0.3)
    for socket in (alices, bobs, victors):
        await socket.disconnect()
