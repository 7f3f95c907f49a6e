"""The embedded default's stand-in for Celery beat: a timer thread inside the server process.

It runs the very entries of CELERY_BEAT_SCHEDULE (tasks executed in-process with .apply()), so
there is one schedule whichever runner drives it. Used only when no REDIS_URL is set.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections

from paygo.beat import period_seconds
from paygo.celery import app

logger = logging.getLogger("paygo.embedded")


class EmbeddedBeat(threading.Thread):
    def __init__(self, schedule: dict[str, dict] | None = None):
        super().__init__(name="paygo-embedded-beat", daemon=True)
        self.schedule = schedule if schedule is not None else settings.CELERY_BEAT_SCHEDULE
        self.stopped = threading.Event()

    def run(self) -> None:
        # Celery discovers the apps' tasks.py lazily (a worker does it at start): do it here.
        app.loader.import_default_modules()
        due = {name: time.monotonic() + period_seconds(entry["schedule"]) for name, entry in self.schedule.items()}
        while not self.stopped.wait(timeout=1.0):
            now = time.monotonic()
            for name, entry in self.schedule.items():
                if now < due[name]:
                    continue
                due[name] = now + period_seconds(entry["schedule"])
                self._run_entry(name, entry)

    def _run_entry(self, name: str, entry: dict) -> None:
        close_old_connections()
        try:
            app.tasks[entry["task"]].apply(args=entry.get("args", ()), kwargs=entry.get("kwargs", {}))
        except Exception:  # one failing run must not stop the timer
            logger.exception("Embedded periodic task %s failed", name)
        finally:
            close_old_connections()

    def stop(self) -> None:
        self.stopped.set()
