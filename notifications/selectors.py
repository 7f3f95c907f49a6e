"""Reads of notifications: a user's inbox, one of their notifications, their channel preferences."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet
from rest_framework.exceptions import NotFound

from notifications.models import DEFAULT_CHANNELS, ChannelChoice, Notification, NotificationPreference


def notification_list_for(user, *, read: bool | None = None, type: str | None = None) -> QuerySet[Notification]:
    """The user's own notifications, newest first, without the ones they deleted."""
    notifications = Notification.objects.filter(user=user, deleted_at__isnull=True)
    if read is not None:
        notifications = notifications.filter(read=read)
    if type:
        notifications = notifications.filter(type=type)
    return notifications.order_by("-created_at", "-id")


def notification_get_for(user, notification_id: int) -> Notification:
    """One of the user's own notifications; anyone else's, or a deleted one, is a 404."""
    notification = notification_list_for(user).filter(pk=notification_id).first()
    if notification is None:
        raise NotFound("Notification not found.")
    return notification


# The badge counts this many unread notifications at most, and says when there are more ("999+"): a
# vendor's two million unread cost a COUNT(*) over all of them on every list request.
UNREAD_COUNT_CAP = 999


@dataclass(frozen=True)
class UnreadCount:
    count: int  # exact up to UNREAD_COUNT_CAP, then UNREAD_COUNT_CAP
    capped: bool  # there are more than UNREAD_COUNT_CAP


def notification_unread_count_for(user) -> UnreadCount:
    """The user's unread notifications, counted up to UNREAD_COUNT_CAP: at most that many entries
    and one more of the unread index (notifications_unread_id_idx) are read, however many there are.
    Ordered by id, as that index is: without an order, "any thousand rows" looked cheaper to the
    planner by a sequential scan, which read millions before it found a user's."""
    unread = notification_list_for(user, read=False).order_by("pk").values("pk")[: UNREAD_COUNT_CAP + 1]
    counted = unread.count()
    return UnreadCount(count=min(counted, UNREAD_COUNT_CAP), capped=counted > UNREAD_COUNT_CAP)


def preferences_for(user) -> dict[str, ChannelChoice]:
    """Every type's channels for this user: their own choice where they made one, else the default."""
    chosen = {
        row.type: ChannelChoice(email=row.email, sms=row.sms)
        for row in NotificationPreference.objects.filter(user=user)
    }
    return {type: chosen.get(type, default) for type, default in DEFAULT_CHANNELS.items()}


def channels_for(user_id: int, type: str) -> ChannelChoice:
    row = NotificationPreference.objects.filter(user_id=user_id, type=type).values("email", "sms").first()
    return ChannelChoice(**row) if row else DEFAULT_CHANNELS[type]


def channels_for_users(user_ids, type: str) -> dict[int, ChannelChoice]:
    """Channels of one type for many users in one query (a broadcast)."""
    chosen = {
        row["user_id"]: ChannelChoice(email=row["email"], sms=row["sms"])
        for row in NotificationPreference.objects.filter(user_id__in=user_ids, type=type).values(
            "user_id", "email", "sms"
        )
    }
    default = DEFAULT_CHANNELS[type]
    return {user_id: chosen.get(user_id, default) for user_id in user_ids}
