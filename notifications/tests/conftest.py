"""Fixtures of the notifications tests: committed callbacks, a phone, and Twilio faked at its HTTP client."""

from __future__ import annotations

import json
import logging

import pytest
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
