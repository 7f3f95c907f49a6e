"""Where the Chipi sandbox runs with DEBUG off, it is said everywhere an operator looks: at every
process start (log), in `check --deploy`, and on the staff dashboard (dashboards read sandbox_in_use)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core import checks

from wallets.chipi.gateway import sandbox_in_use

logger = logging.getLogger("paygo.chipi")

SANDBOX_WARNING = (
    "The Chipi SANDBOX is in use with DEBUG off (CHIPI_SANDBOX=1): deposits are simulated money and nothing "
    "reaches Chipi Pay. Set CHIPI_API_KEY and CHIPI_SECRET_KEY (and unset CHIPI_SANDBOX) where real money moves."
)


def sandbox_without_debug() -> bool:
    return sandbox_in_use() and not settings.DEBUG


def log_sandbox_at_start() -> None:
    """Called once per process start (AppConfig.ready): web, Celery worker and beat, commands."""
    if sandbox_without_debug():
        logger.warning(SANDBOX_WARNING)


@checks.register(checks.Tags.security, deploy=True)
def check_sandbox_chosen(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if sandbox_without_debug():
        return [checks.Warning(SANDBOX_WARNING, id="chipi.W001")]
    return []
