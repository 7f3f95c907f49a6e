"""Placeholder until the notifications app lands: log what would be sent."""

import logging

logger = logging.getLogger("paygo.notifications")


def notification_create(*, user, type, title, message, data):
    logger.info("notify %s [%s] %s: %s", user.pk, type, title, message)
