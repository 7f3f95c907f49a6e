"""SMS through Twilio, faked at its HTTP client: what Twilio receives, retries, failures, no credentials."""

from __future__ import annotations

import logging

import pytest
import requests
from celery.exceptions import SoftTimeLimitExceeded
from urllib3.exceptions import MaxRetryError, NewConnectionError

from notifications import notify, senders
from notifications.models import DeliveryStatus
from notifications.tests.conftest import TWILIO_FROM, TWILIO_SID, twilio_error, twilio_message, verify_phone

pytestmark = pytest.mark.django_db

MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"


def alert(user):
    return notify(user, "alert", "Low balance", "About 4 minutes of your session are left. Top up to continue.")


def test_twilio_receives_the_message(alice, committed, twilio):
    verify_phone(alice, "+15551230001")
    twilio.respond(twilio_message("SM123"))

    with committed():
        notification = alert(alice)

    (request,) = twilio.requests
    assert (request["method"], request["url"]) == ("POST", MESSAGES_URL)
    assert request["auth"] == (TWILIO_SID, "test-auth-token")
    assert request["data"] == {
        "To": "+15551230001",
        "From": TWILIO_FROM,
        "Body": "PayGo: Low balance\nAbout 4 minutes of your session are left. Top up to continue.",
    }
    notification.refresh_from_db()
    assert notification.sms_status == DeliveryStatus.SENT
    assert notification.sms_sid == "SM123"
    assert notification.sms_attempts == 1
    assert notification.sms_sent_at is not None


def test_a_long_message_is_cut_to_two_segments(alice, committed, twilio):
    verify_phone(alice)
    twilio.respond(twilio_message())

    with committed():
        notify(alice, "alert", "Low balance", "x" * 1000)

    body = twilio.requests[0]["data"]["Body"]
    assert len(body) == 320
    assert body.endswith("...")


def test_without_credentials_nothing_is_sent_and_the_sms_is_logged(alice, committed, no_twilio, caplog):
    verify_phone(alice, "+15551230001")

    with caplog.at_level(logging.INFO, logger="paygo.notifications"), committed():
        notification = alert(alice)

    assert no_twilio.requests == []
    assert "SMS not sent (Twilio is not configured) to ***0001: PayGo: Low balance" in caplog.text
    assert "+15551230001" not in caplog.text
    notification.refresh_from_db()
    assert notification.sms_status == DeliveryStatus.SKIPPED
    assert notification.sms_error.startswith("Twilio is not configured")
    assert notification.sms_error.endswith("The message was logged, not sent.")


def test_no_sms_without_a_verified_phone(alice, committed, twilio):
    alice.phone = "+15551230001"
    alice.save(update_fields=["phone"])

    with committed():
        notification = alert(alice)

    assert twilio.requests == []
    notification.refresh_from_db()
    assert (notification.sms_status, notification.sms_attempts) == ("skipped", 0)


def test_no_sms_when_the_user_turned_it_off(api, alice, committed, twilio):
    verify_phone(alice)
    api(alice).patch("/api/v1/notifications/preferences", {"preferences": {"alert": {"sms": False}}}, format="json")

    with committed():
        notification = alert(alice)

    assert twilio.requests == []
    notification.refresh_from_db()
    assert notification.sms_status == DeliveryStatus.NOT_REQUESTED


@pytest.mark.parametrize(
    "first",
    [
        twilio_error(500, 20500, "Internal Server Error"),
        twilio_error(503, 20503, "Service Unavailable"),
        twilio_error(429, 20429, "Too Many Requests"),
        requests.ConnectTimeout("Connection to api.twilio.com timed out"),
        requests.ConnectionError(
            MaxRetryError(None, "/Messages.json", NewConnectionError(None, "[Errno 111] Connection refused"))
        ),
        requests.ConnectionError(NewConnectionError(None, "Failed to resolve 'api.twilio.com'")),
    ],
)
@pytest.mark.usefixtures("eager_retries")
def test_an_error_that_can_heal_is_retried_and_sent(alice, committed, twilio, first):
    verify_phone(alice)
    twilio.respond(first, twilio_message("SM456"))

    with committed():
        notification = alert(alice)

    assert len(twilio.requests) == 2
    notification.refresh_from_db()
    assert notification.sms_status == DeliveryStatus.SENT
    assert notification.sms_sid == "SM456"
    assert notification.sms_attempts == 2
    assert notification.sms_error == ""


@pytest.mark.parametrize(
    "lost",
    [
        requests.ReadTimeout("Read timed out. (read timeout=10)"),
        requests.ConnectionError("('Connection aborted.', RemoteDisconnected('Remote end closed connection'))"),
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
    ],
)
def test_an_answer_lost_after_the_request_left_is_not_sent_again(alice, committed, twilio, lost):
    """Twilio may have made the message before its answer was lost: a retry would send a second
    SMS. It is recorded as failed with why, once."""
    verify_phone(alice)
    twilio.respond(lost, twilio_message("SM456"))

    with committed():
        notification = alert(alice)

    assert len(twilio.requests) == 1
    notification.refresh_from_db()
    assert (notification.sms_status, notification.sms_attempts) == (DeliveryStatus.FAILED, 1)
    assert "may have sent the message" in notification.sms_error


def test_the_time_limit_arriving_while_twilio_answers_does_not_send_the_sms_again(alice, committed, twilio):
    """Celery's soft time limit is a signal: landing once the request has left, while Twilio's answer
    is awaited, it is as much an answer lost as a read timeout. It was retried as an error that can
    heal, and Twilio was asked for the same SMS twice."""
    verify_phone(alice)
    twilio.respond(SoftTimeLimitExceeded(), twilio_message("SM456"))  # the request left, then the limit

    with committed():
        notification = alert(alice)

    assert len(twilio.requests) == 1
    notification.refresh_from_db()
    assert (notification.sms_status, notification.sms_attempts) == (DeliveryStatus.FAILED, 1)
    assert notification.sms_error.startswith("The time limit ran out while waiting for Twilio's answer")
    assert "may have sent the message" in notification.sms_error


@pytest.mark.usefixtures("eager_retries")
def test_the_time_limit_arriving_before_the_request_left_is_retried_and_sent(alice, committed, twilio, monkeypatch):
    """Before the request is handed to the HTTP client nothing can have reached Twilio: retried."""
    verify_phone(alice)
    twilio.respond(twilio_message("SM456"))
    limits = [SoftTimeLimitExceeded()]

    def http_client():
        if limits:
            raise limits.pop()
        return twilio

    monkeypatch.setattr(senders, "twilio_http_client", http_client)

    with committed():
        notification = alert(alice)

    assert len(twilio.requests) == 1
    notification.refresh_from_db()
    assert (notification.sms_status, notification.sms_sid, notification.sms_attempts) == ("sent", "SM456", 2)
    assert notification.sms_error == ""


def test_an_invalid_number_fails_at_once_and_the_caller_is_unaffected(alice, committed, twilio, mailoutbox):
    verify_phone(alice, "+1555")
    twilio.respond(twilio_error(400, 21211, "The 'To' number +1555 is not a valid phone number."))

    with committed():
        notification = alert(alice)  # does not raise

    assert len(twilio.requests) == 1  # not retried
    notification.refresh_from_db()
    assert notification.sms_status == DeliveryStatus.FAILED
    assert notification.sms_attempts == 1
    assert notification.sms_error == (
        "Twilio answered 400 (code 21211): Unable to create record: The 'To' number +1555 is not a valid phone number."
    )
    assert notification.email_status == DeliveryStatus.SENT  # the other channel is independent
    assert len(mailoutbox) == 1


@pytest.mark.usefixtures("eager_retries")
def test_retries_end_in_failure(alice, committed, twilio):
    verify_phone(alice)
    twilio.respond(*[twilio_error(500, 20500, "Internal Server Error")] * 6)

    with committed():
        notification = alert(alice)

    assert len(twilio.requests) == 6
    notification.refresh_from_db()
    assert notification.sms_status == DeliveryStatus.FAILED
    assert notification.sms_attempts == 6
    assert notification.sms_error.startswith("Gave up after 6 attempts: Twilio answered 500 (code 20500)")


def test_the_phone_is_checked_again_at_send_time(alice, committed, twilio):
    verify_phone(alice)
    notification = alert(alice)  # planned while the phone was verified...
    alice.is_verified = False
    alice.save(update_fields=["is_verified"])

    with committed():
        from notifications.services import notifications_dispatch

        notifications_dispatch([notification])  # ...sent after it no longer is

    assert twilio.requests == []
    notification.refresh_from_db()
    assert notification.sms_status == DeliveryStatus.SKIPPED
    assert notification.sms_error == "No verified phone number."
    assert notification.sms_attempts == 1
