"""Celery beat's schedule as PayGo runs it: each entry's period, and how long what beat sends lives."""

from __future__ import annotations

from datetime import timedelta


def period_seconds(schedule) -> float:
    """An entry's period in seconds: a number, a timedelta or celery's schedule(run_every=...)."""
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    if isinstance(schedule, int | float):
        return float(schedule)
    run_every = getattr(schedule, "run_every", None)  # celery.schedules.schedule
    if isinstance(run_every, timedelta):
        return run_every.total_seconds()
    raise ValueError(f"Beat entries run every so many seconds here; {schedule!r} has no fixed period")


def beat_schedule_expiring(schedule: dict[str, dict]) -> dict[str, dict]:
    """Every entry's messages expire after its period, unless the entry says otherwise.

    Beat sends on time whether or not a worker takes the message: without an expiry, an hour of
    workers down (or busy) left every tick queued, and all ran at once when they came back (60
    billing sweeps, 360 rollups, 30 whole-ledger checks, ...), competing for Chipi's budget and the
    database pool. Every periodic task here catches up from the database when it next runs, so a
    tick that waited a whole period is worth nothing: the worker drops it, and at most the latest
    one waits for it.
    """
    for entry in schedule.values():
        options = entry.setdefault("options", {})
        if "expires" not in options:
            options["expires"] = period_seconds(entry["schedule"])
    return schedule
