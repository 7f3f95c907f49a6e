"""The embedded default's stand-in for Celery beat: a timer thread inside the server process.

It runs the very entries of CELERY_BEAT_SCHEDULE (tasks executed in-process with .apply()), so
there is one schedule whichever runner drives it. Used only when no REDIS_URL is set.

As beat does, an entry first runs one period after it is first seen, and each entry's last run is
kept (EMBEDDED_BEAT_FILE, beside the embedded database's data) across restarts: a development
server restarted every few hours still runs the daily cleanups, and one that was down for a day
runs what fell due once, soon after it starts.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections

from paygo.beat import period_seconds
from paygo.celery import app

logger = logging.getLogger("paygo.embedded")


class EmbeddedBeat(threading.Thread):
    def __init__(self, schedule: dict[str, dict] | None = None, state_file: Path | None = None):
        super().__init__(name="paygo-embedded-beat", daemon=True)
        self.schedule = schedule if schedule is not None else settings.CELERY_BEAT_SCHEDULE
        self.state_file = state_file if state_file is not None else settings.EMBEDDED_BEAT_FILE
        self.stopped = threading.Event()
        self.last_runs: dict[str, float] = {}  # wall-clock seconds, as written to the file
        self.deadlines: dict[str, float] = {}  # on the monotonic clock

    def run(self) -> None:
        # Celery discovers the apps' tasks.py lazily (a worker does it at start): do it here.
        app.loader.import_default_modules()
        self.start_schedule(time.time(), time.monotonic())
        while not self.stopped.wait(timeout=1.0):
            for name in self.due(time.time(), time.monotonic()):
                self._run_entry(name, self.schedule[name])

    def start_schedule(self, wall: float, mono: float) -> None:
        """Read the entries' last runs (wall-clock seconds, `wall` now) and turn each into a
        deadline on the monotonic clock (`mono` now), which the timer keeps to from then on: the
        wall clock may be set back or forward while the server runs (a laptop waking, NTP), and
        only what is written down for the next start is in its time. An entry never seen counts
        from now (its first run is one period away), and is written down at once so that a restart
        does not put it off again."""
        self.last_runs = self._read_state()
        self.deadlines = {}
        for name, entry in self.schedule.items():
            # A last run in the future (the clock was set back while the server was down) counts
            # from now.
            last = self.last_runs[name] = min(self.last_runs.get(name, wall), wall)
            self.deadlines[name] = mono + max(0.0, last + period_seconds(entry["schedule"]) - wall)
        self._write_state()

    def due(self, wall: float, mono: float) -> list[str]:
        """The entries due at `mono` (the monotonic clock), each marked as run now (`wall`, for the
        file)."""
        names = [name for name in self.schedule if mono >= self.deadlines[name]]
        for name in names:
            self.deadlines[name] = mono + period_seconds(self.schedule[name]["schedule"])
            self.last_runs[name] = wall
        if names:
            self._write_state()
        return names

    def _read_state(self) -> dict[str, float]:
        try:
            state = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            logger.warning("Embedded beat: %s unreadable (%s); every entry counts from now", self.state_file, error)
            return {}
        if not isinstance(state, dict):
            return {}
        return {
            name: float(at) for name, at in state.items() if isinstance(at, int | float) and not isinstance(at, bool)
        }

    def _write_state(self) -> None:
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}")
            temporary.write_text(json.dumps(self.last_runs, sort_keys=True))
            os.replace(temporary, self.state_file)  # whole or not at all: a crash leaves the last one
        except OSError as error:
            logger.warning("Embedded beat: could not write %s (%s)", self.state_file, error)

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
