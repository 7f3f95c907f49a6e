"""Notifications and their delivery: in-app (DB + WebSocket), email, SMS."""


def notify(user, type: str, title: str, message: str, data: dict | None = None):
    """The one way in for every app. Minimal until the notifications issue lands."""
    from notifications.services import notification_create

    return notification_create(user=user, type=type, title=title, message=message, data=data or {})
