"""Notifications and their delivery: in-app, email, SMS.

Every app tells a user something through `notify(...)`:

    from notifications import notify
    notify(alice, "payment", "Payment received", "12.500000 USDC arrived in your wallet.", {"amount": "12.5"})

This module imports no models (it is imported before the apps are ready); `notify` loads the service
when it is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from notifications.models import Notification

__all__ = ["notify"]


def notify(
    user: Any,
    type: str,
    title: str,
    message: str,
    data: dict | None = None,
    *,
    thread: str = "",
    coalesce: bool = False,
) -> Notification:
    """Notify `user` (a User or a user id).

    `type` is one of session, payment, alert, consultation, system. The notification is stored at
    once (it joins the caller's transaction); after that transaction commits it is pushed to the
    user's open sockets and the email and SMS their preferences ask for are queued. Safe inside
    transaction.atomic(): a rollback stores, pushes and sends nothing. A delivery problem never
    raises here; it is recorded on the notification. A ValueError (services.InvalidNotification, which
    names the field) means a bad argument (unknown type, a title or message that shows nothing, data
    that is not a JSON object).

    `thread` names the conversation it belongs to ("consultation:42"); with `coalesce`, a new message
    of it, its email and SMS are held back while the user has an unread one of the thread that went out:
    one email until they read it (services.notification_create), and one in-app notification each.
    """
    from notifications.services import notification_create

    return notification_create(
        user=user, type=type, title=title, message=message, data=data, thread=thread, coalesce=coalesce
    )
