"""The embedded default's timer runs the very entries of Celery beat's schedule."""

from __future__ import annotations

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
