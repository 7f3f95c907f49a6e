"""Fixtures of the notifications tests: committed callbacks, a phone, and Twilio faked at its HTTP client."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import connection, transaction
from django.utils import timezone
from twilio.http import HttpClient
from twilio.http.response import Response

from notifications import senders
from paygo.celery import app as celery_app

TWILIO_SID = "AC00000000000000000000000000000001"
TWILIO_FROM = "+15005550006"


@pytest.fixture
def eager_retries(monkeypatch):
    """Run a task's retries, as a worker would, only without waiting out the countdown.

    Eager tasks that propagate errors let celery's Retry escape instead of re-running the task;
    without propagation, apply() re-runs it at once. But without propagation any other exception of
    an eager task becomes a FAILURE result that nobody reads: only the tests of retries ask for
    this, and every other test sees a task's error raised.
    """
    monkeypatch.setattr(celery_app.conf, "CELERY_TASK_EAGER_PROPAGATES", False)  # the namespaced key


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """`with committed():` runs what the block queued with on_commit, as a real commit would."""

    def run():
        return django_capture_on_commit_callbacks(execute=True)

    return run


def verify_phone(user, phone: str = "+15551230001"):
    user.phone = phone
    user.is_verified = True
    user.save(update_fields=["phone", "is_verified"])
    return user


class FakeTwilioHttp(HttpClient):
    """Twilio's HTTP boundary: records each request, answers from a script of responses.

    A response is (status, json body) or an exception to raise (a network error).
    """

    def __init__(self):
        super().__init__(logger=logging.getLogger("tests.twilio"), is_async=False)
        self.script: list = []
        self.requests: list[dict] = []

    def respond(self, *responses) -> FakeTwilioHttp:
        self.script.extend(responses)
        return self

    def request(self, method, url, params=None, data=None, headers=None, auth=None, timeout=None, **kwargs):
        self.requests.append({"method": method, "url": url, "data": dict(data or {}), "auth": auth})
        if not self.script:
            raise AssertionError(f"Unexpected Twilio request: {method} {url}")
        response = self.script.pop(0)
        if isinstance(response, Exception):
            raise response
        status, body = response
        return Response(status, json.dumps(body))


def twilio_message(sid: str = "SM00000000000000000000000000000001") -> tuple[int, dict]:
    return 201, {"sid": sid, "status": "queued", "account_sid": TWILIO_SID}


def twilio_error(status: int, code: int, message: str) -> tuple[int, dict]:
    return status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}"}


@pytest.fixture(autouse=True)
def no_twilio(settings, monkeypatch) -> FakeTwilioHttp:
    """By default Twilio is not configured, whatever the environment says, and the network is
    closed: the fake has no script, so a request reaching it fails the test."""
    settings.TWILIO_SID = settings.TWILIO_AUTH_TOKEN = settings.TWILIO_PHONE_NUMBER = ""
    fake = FakeTwilioHttp()
    monkeypatch.setattr(senders, "twilio_http_client", lambda: fake)
    return fake


@pytest.fixture
def twilio(no_twilio, settings) -> FakeTwilioHttp:
    """Twilio configured, its HTTP client replaced by a fake that answers as scripted."""
    settings.TWILIO_SID = TWILIO_SID
    settings.TWILIO_AUTH_TOKEN = "test-auth-token"
    settings.TWILIO_PHONE_NUMBER = TWILIO_FROM
    return no_twilio


def fill(user, count: int, *, created_at=None, read_at=None, deleted_at=None) -> None:
    """`count` notifications for `user` in one statement (a volume to read plans on), ids increasing
    with their creation, a second apart, the last one created at `created_at` (now by default); read at
    `read_at` (unread without it) and dismissed at `deleted_at` (not without it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO notifications_notification (user_id, type, title, message, data, read, read_at, created_at,
                deleted_at, email_status, email_attempts, email_error, sms_status, sms_attempts, sms_error, sms_sid,
                thread)
            SELECT %(user)s, 'session', 'Session ended', 'A session ended.', '{}', %(read_at)s::timestamptz IS NOT NULL,
                %(read_at)s, %(at)s::timestamptz - (%(count)s - n) * interval '1 second', %(deleted_at)s,
                'not_requested', 0, '', 'not_requested', 0, '', '', ''
            FROM generate_series(1, %(count)s) AS n
            """,
            {
                "user": user.pk,
                "count": count,
                "at": created_at or timezone.now(),
                "read_at": read_at,
                "deleted_at": deleted_at,
            },
        )
        cursor.execute("ANALYZE notifications_notification")


def settle() -> None:
    """VACUUM ANALYZE the notifications, as autovacuum keeps them in production (statistics fresh, the
    visibility map set, so that an index-only scan is worth its name). A transaction=True test only:
    VACUUM cannot run in a transaction."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE notifications_notification")


def _scans(node: dict):
    if "Scan" in node["Node Type"]:
        yield node
    for child in node.get("Plans", []):
        yield from _scans(child)


def rows_read(sql: str) -> tuple[int, list[str]]:
    """What a statement (as CaptureQueriesContext recorded it) reads, run under EXPLAIN ANALYZE and rolled
    back: the rows its scans went through (those kept and those filtered out), and which scans (node
    type and index). Rows, not time: what grows with the table, whatever the machine."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            (plan,) = cursor.fetchone()[0]
        transaction.set_rollback(True)
    scans = list(_scans(plan["Plan"]))
    read = sum(
        (scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0) + scan.get("Rows Removed by Index Recheck", 0))
        * scan["Actual Loops"]
        for scan in scans
        if scan["Node Type"] != "Bitmap Index Scan"  # its Bitmap Heap Scan counts the same rows
    )
    return read, [f"{scan['Node Type']} {scan.get('Index Name', '')}".strip() for scan in scans]
