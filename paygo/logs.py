"""How every PayGo process sets its logging up from the settings' LOGGING (LOGGING_CONFIG)."""

from __future__ import annotations

import logging
import logging.config


def configure(config: dict) -> None:
    """`config` applied, and Python's warnings (a library's RuntimeWarning, Celery's warning that the
    worker runs as root) logged through it as records of logger `py.warnings`, where they were
    printed to stderr in a format of their own: one stream, one format (JSON in production)."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
