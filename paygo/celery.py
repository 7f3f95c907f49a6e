"""The Celery app; tasks are discovered in every installed app's tasks.py. Its processes log as
Django's do."""

from __future__ import annotations

import functools
import logging
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paygo.settings")

app = Celery("paygo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


@signals.celeryd_init.connect
@signals.setup_logging.connect
def log_as_django(**kwargs) -> None:
    """The worker and beat (and each worker process) log through the settings' LOGGING, one JSON
    object a line in production as the application: without a receiver of setup_logging, Celery put
    handlers of its own format on the root logger in place of Django's. Set up at celeryd_init too,
    before the worker's first warnings (running as root, say), so that they are records as well.
    LOG_LEVEL decides, not Celery's --loglevel."""
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)


@signals.celeryd_init.connect
def log_warm_shutdowns(**kwargs) -> None:
    """Celery prints "worker: Warm shutdown (MainProcess)" straight to stdout at a SIGTERM; the
    shutdown is logged instead (below). The handler the worker installs as it starts
    (Worker.install_platform_tweaks, after this signal) is made without that line: installed again
    once the worker was ready, a SIGTERM before then still printed it."""
    from celery.apps import worker

    if not getattr(worker.install_worker_term_handler, "paygo_quiet", False):
        worker.install_worker_term_handler = functools.partial(worker.install_worker_term_handler, verbose=False)
        worker.install_worker_term_handler.paygo_quiet = True


@signals.worker_shutting_down.connect
def log_shutdown(sig, how, exitcode, **kwargs) -> None:
    logger.info("worker: %s shutdown (%s)", how, sig)
