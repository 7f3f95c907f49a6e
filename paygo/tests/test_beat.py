"""What Celery beat sends: every entry's message expires within its period, so that an outage of the
workers leaves at most one run of each entry waiting, not one per tick missed; and every task of
ours is time-limited, softly first."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from celery.beat import Scheduler
from celery.worker.request import Request
from django.conf import settings
from django.utils import timezone
from kombu import Connection, Queue

from paygo.beat import period_seconds
from paygo.celery import app
from wallets.models import IdempotencyKey


def test_every_beat_entry_expires_within_its_period():
    schedule = settings.CELERY_BEAT_SCHEDULE

    expiries = {
        name: (entry.get("options", {}).get("expires"), period_seconds(entry["schedule"]))
        for name, entry in schedule.items()
    }

    assert {name for name, (expires, _) in expiries.items() if expires is None} == set()
    assert {name for name, (expires, period) in expiries.items() if not 0 < expires <= period} == set()
    assert expiries["dashboards-rollup"] == (10.0, 10.0)
    assert expiries["dashboards-ledger-health"] == (120.0, 120.0)


@pytest.fixture
def broker(settings):
    """An in-memory broker for beat to send to, and Celery sending for real (not eagerly)."""
    settings.CELERY_TASK_ALWAYS_EAGER = False  # what app.conf reads (its CELERY_ namespace first)
    with Connection("memory://") as connection:
        queue = Queue(app.conf.task_default_queue).bind(connection.default_channel)
        queue.declare()
        yield connection.Producer(), queue


def _beat_sends(entry_name: str, producer):
    """One tick of Celery's own scheduler for the entry, as `celery -A paygo beat` runs it (which
    imports the apps' tasks at start, and so sends each through its task's apply_async)."""
    app.loader.import_default_modules()
    scheduler = Scheduler(app=app, lazy=True)
    scheduler.setup_schedule()
    scheduler.apply_entry(scheduler.schedule[entry_name], producer=producer)


@pytest.mark.django_db
@pytest.mark.parametrize("late", [timedelta(seconds=-1), timedelta(seconds=1)], ids=["in_time", "expired"])
def test_a_beat_message_that_waited_past_its_period_is_dropped_by_the_worker(broker, alice, late):
    producer, queue = broker
    with time_machine.travel(timezone.now(), tick=False) as clock:
        IdempotencyKey.objects.create(
            user=alice, key="old", method="POST", path="/x", fingerprint="f", response_status=201, response_body={}
        )
        clock.shift(timedelta(days=8))
        _beat_sends("idempotency-expire", producer)
        message = queue.get(no_ack=False)
        assert message is not None, "beat sent nothing"
        assert message.headers["expires"] == (timezone.now() + timedelta(days=1)).isoformat()

        clock.shift(timedelta(days=1) + late)  # the workers were down all that while
        Request(message, app=app).execute()

    expired = late > timedelta(0)
    assert IdempotencyKey.objects.filter(key="old").exists() == expired


def test_every_task_of_ours_has_a_soft_limit_below_its_hard_one_and_speaks_json():
    app.loader.import_default_modules()
    ours = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}

    limits = {name: (task.soft_time_limit, task.time_limit, task.serializer) for name, task in ours.items()}

    assert len(ours) >= 15
    assert {name for name, (soft, hard, _) in limits.items() if not (soft and hard and soft < hard)} == set()
    assert {name for name, (_, _, serializer) in limits.items() if serializer != "json"} == set()
