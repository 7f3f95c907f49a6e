"""The embedded default's timer runs the very entries of Celery beat's schedule."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.conf import settings

from paygo.beat import period_seconds
from paygo.celery import app
from paygo.embedded import EmbeddedBeat


def test_every_scheduled_task_exists_once_tasks_are_discovered():
    app.loader.import_default_modules()

    missing = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"] not in app.tasks]

    assert missing == []
    assert "streaming.billing_sweep" in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}


@pytest.mark.parametrize(("schedule", "seconds"), [(60, 60.0), (2.5, 2.5), (timedelta(minutes=2), 120.0)])
def test_schedules_in_seconds(schedule, seconds):
    assert period_seconds(schedule) == seconds


def test_a_failing_entry_is_logged_and_does_not_stop_the_timer(caplog, django_db_blocker):
    beat = EmbeddedBeat(schedule={})

    # A run closes the connections left stale (one an earlier test of this process may have
    # opened): the database may be looked at, though nothing here queries it.
    with django_db_blocker.unblock():
        beat._run_entry("broken", {"task": "no.such.task"})  # raises inside; must not propagate

    assert [record.getMessage() for record in caplog.records] == ["Embedded periodic task broken failed"]


DAILY = {"cleanup": {"task": "accounts.sign_ins_forget", "schedule": 86400.0}}
MINUTELY = {"sweep": {"task": "streaming.billing_sweep", "schedule": 60.0}}


def _started(state_file, schedule, at: float) -> EmbeddedBeat:
    """A beat as the server starts it at `at` (wall-clock seconds), its thread not running; its
    monotonic clock starts at 1,000 (any origin: a process's own)."""
    beat = EmbeddedBeat(schedule=schedule, state_file=state_file)
    beat.start_schedule(at, 1000.0)
    beat.started_at = at
    return beat


def _due(beat: EmbeddedBeat, at: float, *, clock_moved: float = 0.0) -> list[str]:
    """beat.due() `at - started_at` seconds after it started, its wall clock `clock_moved` off."""
    return beat.due(at + clock_moved, 1000.0 + at - beat.started_at)


def test_a_daily_entry_runs_a_day_after_it_was_first_seen_however_often_the_server_restarts(tmp_path):
    state_file, start = tmp_path / "var" / "embedded-beat.json", 1_800_000_000.0
    beat = _started(state_file, {**DAILY, **MINUTELY}, start)

    assert _due(beat, start + 59) == []
    assert _due(beat, start + 60) == ["sweep"]
    # Restarted every six hours: the day counts from the first start, not from each restart.
    for hours in (6, 12, 18):
        beat = _started(state_file, {**DAILY, **MINUTELY}, start + hours * 3600)
        assert "cleanup" not in _due(beat, start + hours * 3600 + 60)
    beat = _started(state_file, {**DAILY, **MINUTELY}, start + 86_400)
    assert _due(beat, start + 86_400) == ["cleanup", "sweep"]
    assert _due(beat, start + 86_401) == []  # marked as run: not again for a day (a minute, the sweep)
    assert json.loads(state_file.read_text()) == {"cleanup": start + 86_400, "sweep": start + 86_400}


def test_a_server_down_for_days_runs_what_fell_due_once_when_it_starts(tmp_path):
    state_file, start = tmp_path / "embedded-beat.json", 1_800_000_000.0
    state_file.write_text(json.dumps({"cleanup": start - 3 * 86_400, "gone": start}))

    beat = _started(state_file, DAILY, start)

    assert _due(beat, start) == ["cleanup"]
    assert _due(beat, start + 3600) == []


@pytest.mark.parametrize(
    "content", ["{not json", '["a list"]', '{"cleanup": "yesterday"}', '{"cleanup": true}', "\x00\x01"]
)
def test_an_unreadable_state_counts_every_entry_from_now(tmp_path, content):
    state_file, start = tmp_path / "embedded-beat.json", 1_800_000_000.0
    state_file.write_text(content)

    beat = _started(state_file, DAILY, start)

    assert _due(beat, start + 86_399) == []
    assert _due(beat, start + 86_400) == ["cleanup"]


def test_a_last_run_after_now_counts_from_now(tmp_path):
    state_file, start = tmp_path / "embedded-beat.json", 1_800_000_000.0
    state_file.write_text(json.dumps({"cleanup": start + 10 * 86_400}))  # the clock was set back

    beat = _started(state_file, DAILY, start)

    assert _due(beat, start + 86_400) == ["cleanup"]


def test_the_wall_clock_set_back_or_forward_while_the_server_runs_does_not_move_the_timer(tmp_path):
    """A laptop waking, a VM resumed, NTP stepping the clock: the running timer keeps its periods
    (the monotonic clock); only the file is in wall-clock time."""
    state_file, start = tmp_path / "embedded-beat.json", 1_800_000_000.0
    beat = _started(state_file, {**DAILY, **MINUTELY}, start)

    assert _due(beat, start + 60, clock_moved=-3600) == ["sweep"]  # set back an hour: the sweep still runs
    assert _due(beat, start + 90, clock_moved=+86_400) == []  # forward a day: nothing runs early
    assert _due(beat, start + 120, clock_moved=+86_400) == ["sweep"]
    assert json.loads(state_file.read_text())["sweep"] == start + 120 + 86_400
