"""Retention: what was read or dismissed long ago goes, and so does anything much older, in batches
of bounded statements, hourly from beat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.models import Notification
from notifications.services import notifications_expire
from notifications.tasks import notifications_expire_task
from notifications.tests.conftest import fill, rows_read

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture
def retention(settings):
    settings.NOTIFICATION_RETENTION_DAYS = 90
    settings.NOTIFICATION_UNREAD_RETENTION_DAYS = 365


def _kinds(user) -> dict[str, int]:
    now = timezone.now()
    kinds = {
        "read 100 days ago": {"created_at": now - 120 * DAY, "read_at": now - 100 * DAY},
        "read 10 days ago, created 200 days ago": {"created_at": now - 200 * DAY, "read_at": now - 10 * DAY},
        "dismissed 100 days ago, unread": {"created_at": now - 120 * DAY, "deleted_at": now - 100 * DAY},
        "read 200 days ago, dismissed 10 days ago": {
            "created_at": now - 300 * DAY,
            "read_at": now - 200 * DAY,
            "deleted_at": now - 10 * DAY,
        },
        "dismissed 10 days ago, unread": {"created_at": now - 120 * DAY, "deleted_at": now - 10 * DAY},
        "unread, created 400 days ago": {"created_at": now - 400 * DAY},
        "unread, created 200 days ago": {"created_at": now - 200 * DAY},
        "unread, new": {},
    }
    made = {kind: 2**index for index, kind in enumerate(kinds)}  # any sum of them tells which kinds
    for kind, fields in kinds.items():
        fill(user, made[kind], **fields)
    return made


def test_what_goes_and_what_stays(retention, alice):
    made = _kinds(alice)
    gone = {
        "read 100 days ago",
        "read 200 days ago, dismissed 10 days ago",  # dealt with when read
        "dismissed 100 days ago, unread",
        "unread, created 400 days ago",
    }

    deleted = notifications_expire(batch=7)

    assert deleted == sum(made[kind] for kind in gone)
    assert Notification.objects.count() == sum(count for kind, count in made.items() if kind not in gone)
    assert notifications_expire(batch=7) == 0


def test_each_batch_is_one_statement_that_reads_about_a_batch(retention, alice, bob):
    """Replayed on the table as it was, each DELETE reads its batch through an index, not the table."""
    now = timezone.now()
    fill(alice, 250, created_at=now - 120 * DAY, read_at=now - 100 * DAY)
    fill(alice, 150, created_at=now - 400 * DAY)
    fill(bob, 5000)  # recent, unread: what a sequential scan would read for nothing

    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            assert notifications_expire(batch=100) == 400
        transaction.set_rollback(True)

    statements = [q["sql"] for q in queries.captured_queries if '"notifications_notification"' in q["sql"]]
    deletes = [sql for sql in statements if sql.startswith("DELETE")]
    assert len(deletes) == 3 + 2  # read or dismissed: 100, 100, 50; old: 100, 50
    for sql in statements:
        read, scans = rows_read(sql)
        assert read <= 100, (read, scans, sql[:300])
        assert not any(scan.startswith("Seq Scan") for scan in scans), (scans, sql[:300])


def test_the_task_runs_hourly_from_beat(retention, alice):
    fill(alice, 3, created_at=timezone.now() - 400 * DAY)

    assert notifications_expire_task.apply().get() == 3
    entry = django_settings.CELERY_BEAT_SCHEDULE["notifications-expire"]
    assert (entry["task"], entry["schedule"]) == ("notifications.expire", 3600.0)
