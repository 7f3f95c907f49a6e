"""Email delivery through Django's mail backend: sent, retried when the error can heal, failed when not."""

from __future__ import annotations

import smtplib

import pytest
from django.core.mail.backends.base import BaseEmailBackend

from notifications import notify
from notifications.models import DeliveryStatus, Notification, NotificationPreference

pytestmark = pytest.mark.django_db


class ScriptedBackend(BaseEmailBackend):
    """A mail backend that fails as scripted (an exception per call) and then sends."""

    script: list[Exception] = []
    sent: list = []

    def send_messages(self, email_messages):
        if ScriptedBackend.script:
            raise ScriptedBackend.script.pop(0)
        ScriptedBackend.sent.extend(email_messages)
        return len(email_messages)


@pytest.fixture
def smtp(settings):
    settings.EMAIL_BACKEND = f"{__name__}.ScriptedBackend"
    ScriptedBackend.script, ScriptedBackend.sent = [], []
    return ScriptedBackend


def test_email_is_sent_after_commit(alice, committed, mailoutbox, settings):
    with committed():
        notification = notify(alice, "payment", "Payment received", "12.500000 USDC arrived in your wallet.")

    (email,) = mailoutbox
    assert email.to == [alice.email]
    assert email.from_email == settings.DEFAULT_FROM_EMAIL
    assert email.subject == "Payment received"
    assert "12.500000 USDC arrived in your wallet." in email.body
    assert "Hello Alice" in email.body
    notification.refresh_from_db()
    assert notification.email_status == DeliveryStatus.SENT
    assert notification.email_attempts == 1
    assert notification.email_sent_at is not None
    assert notification.email_error == ""
    assert notification.email_claimed_until is None


def test_no_email_when_the_user_turned_it_off(alice, committed, mailoutbox):
    NotificationPreference.objects.create(user=alice, type="payment", email=False, sms=False)

    with committed():
        notification = notify(alice, "payment", "Paid", "Paid.")

    assert mailoutbox == []
    notification.refresh_from_db()
    assert (notification.email_status, notification.email_attempts) == ("not_requested", 0)


def test_no_email_for_system_notifications_by_default(alice, committed, mailoutbox):
    with committed():
        notify(alice, "system", "Maintenance", "Tonight.")

    assert mailoutbox == []


@pytest.mark.parametrize(
    "error",
    [
        smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
        smtplib.SMTPResponseException(451, b"Try again later"),
        smtplib.SMTPRecipientsRefused({"alice@example.com": (450, b"Mailbox busy")}),
        TimeoutError("timed out"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
@pytest.mark.usefixtures("eager_retries")
def test_an_error_that_can_heal_is_retried(alice, committed, smtp, error):
    smtp.script = [error]

    with committed():
        notification = notify(alice, "payment", "Paid", "Paid.")

    notification.refresh_from_db()
    assert notification.email_status == DeliveryStatus.SENT
    assert notification.email_attempts == 2
    assert notification.email_error == ""
    assert len(smtp.sent) == 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (smtplib.SMTPRecipientsRefused({"alice@example.com": (550, b"No such user")}), "refused the recipient: [550]"),
        (smtplib.SMTPSenderRefused(553, b"Sender not allowed", "no-reply@paygo.local"), "answered 553"),
        (smtplib.SMTPAuthenticationError(535, b"Bad credentials"), "answered 535"),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported"), "SMTPNotSupportedError"),
    ],
)
def test_an_error_that_cannot_heal_fails_at_once(alice, committed, smtp, error, reason):
    smtp.script = [error]

    with committed():
        notification = notify(alice, "payment", "Paid", "Paid.")

    notification.refresh_from_db()
    assert notification.email_status == DeliveryStatus.FAILED
    assert notification.email_attempts == 1
    assert reason in notification.email_error
    assert smtp.sent == []


@pytest.mark.usefixtures("eager_retries")
def test_retries_end_in_failure(alice, committed, smtp):
    smtp.script = [smtplib.SMTPServerDisconnected("down")] * 6

    with committed():
        notification = notify(alice, "payment", "Paid", "Paid.")

    notification.refresh_from_db()
    assert notification.email_status == DeliveryStatus.FAILED
    assert notification.email_attempts == 6  # the first try and five retries
    assert notification.email_error.startswith("Gave up after 6 attempts: The mail server disconnected")
    assert smtp.sent == []
    assert smtp.script == []


def test_a_bug_in_sending_is_recorded_not_raised(alice, committed, smtp):
    smtp.script = [KeyError("oops")]

    with committed():
        notification = notify(alice, "payment", "Paid", "Paid.")

    notification.refresh_from_db()
    assert notification.email_status == DeliveryStatus.FAILED
    assert notification.email_error == "Unexpected error: KeyError: 'oops'"
    assert Notification.objects.count() == 1


def test_the_time_limit_arriving_as_a_sent_email_is_recorded_does_not_send_it_again(
    alice, committed, mailoutbox, monkeypatch
):
    """Celery's soft time limit is a signal: landing after the mail server took the message, while
    its sending is being recorded, it read as "not sent, try again", and the retry sent it twice."""
    from celery.exceptions import SoftTimeLimitExceeded

    from notifications import services

    record = services.delivery_finish
    interrupted = []

    def finish(**kwargs):
        if kwargs["status"] == DeliveryStatus.SENT and not interrupted:
            interrupted.append(kwargs)
            raise SoftTimeLimitExceeded()
        return record(**kwargs)

    monkeypatch.setattr(services, "delivery_finish", finish)

    with committed():
        notification = notify(alice, "payment", "Payment received", "12.500000 USDC arrived.")

    notification.refresh_from_db()
    assert interrupted
    assert (len(mailoutbox), notification.email_status, notification.email_attempts) == (1, "sent", 1)
