"""The /ws/notifications/ socket: a user's own live notifications."""

from __future__ import annotations

from paygo.ws import AuthenticatedConsumer


def user_group(user_id: int) -> str:
    return f"notifications.user.{user_id}"


class NotificationsConsumer(AuthenticatedConsumer):
    async def joined(self, user) -> None:
        await self.join(user_group(user.pk))
        await self.send_json({"type": "connected", "userId": user.pk})

    async def notification_created(self, event: dict) -> None:
        await self.send_json({"type": "notification", "notification": event["notification"]})
