"""The delivery tasks' idempotency and claims, the stuck-delivery sweeper, and re-sending failures."""

from __future__ import annotations

import logging
import smtplib
import threading
from datetime import timedelta

import pytest
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection
from django.utils import timezone

from notifications import notify, services, tasks
from notifications.delivery import deliver
from notifications.models import DeliveryStatus, Notification
from notifications.services import delivery_retry_failed
from notifications.tests.conftest import twilio_error, twilio_message, verify_phone
from notifications.tests.test_email import ScriptedBackend
from paygo.celery import app as celery_app

pytestmark = pytest.mark.django_db


def test_a_task_run_again_for_a_sent_delivery_does_nothing(alice, committed, mailoutbox):
    with committed():
        notification = notify(alice, "payment", "Paid", "Paid.")

    result = tasks.deliver_email.delay(notification.pk)

    assert result.get() == "nothing_to_do"
    assert len(mailoutbox) == 1
    notification.refresh_from_db()
    assert (notification.email_status, notification.email_attempts) == ("sent", 1)


def test_a_task_for_a_channel_not_requested_does_nothing(alice, mailoutbox, no_twilio):
    notification = notify(alice, "payment", "Paid", "Paid.")  # sms not requested for payments

    assert tasks.deliver_sms.delay(notification.pk).get() == "nothing_to_do"
    assert no_twilio.requests == []
    notification.refresh_from_db()
    assert notification.sms_attempts == 0


def test_a_task_for_a_missing_notification_does_nothing():
    assert tasks.deliver_email.delay(424242).get() == "nothing_to_do"


@pytest.mark.usefixtures("eager_retries")
def test_a_delivery_claimed_by_another_worker_is_not_sent_twice(alice, mailoutbox):
    notification = notify(alice, "payment", "Paid", "Paid.")
    claimed_until = timezone.now() + timedelta(minutes=1)
    Notification.objects.filter(pk=notification.pk).update(email_claimed_until=claimed_until)

    result = tasks.deliver_email.delay(notification.pk)

    assert result.get() == "busy"  # after looking again on every retry
    assert mailoutbox == []
    notification.refresh_from_db()
    assert (notification.email_status, notification.email_attempts) == ("pending", 0)
    assert notification.email_claimed_until == claimed_until


def test_an_expired_claim_is_taken_over(alice, mailoutbox):
    notification = notify(alice, "payment", "Paid", "Paid.")
    Notification.objects.filter(pk=notification.pk).update(
        email_claimed_until=timezone.now() - timedelta(seconds=1), email_attempts=1
    )

    assert tasks.deliver_email.delay(notification.pk).get() == "sent"
    assert len(mailoutbox) == 1
    notification.refresh_from_db()
    assert notification.email_attempts == 2


def test_embedded_mode_leaves_a_retry_to_the_sweeper(alice, committed, settings, monkeypatch, caplog):
    """The project's own eager settings propagate errors: a retry cannot wait there, so the delivery
    stays pending, released, for the sweeper; the caller is not troubled."""
    monkeypatch.setattr(celery_app.conf, "CELERY_TASK_EAGER_PROPAGATES", True)
    settings.EMAIL_BACKEND = "notifications.tests.test_email.ScriptedBackend"
    ScriptedBackend.script, ScriptedBackend.sent = [smtplib.SMTPServerDisconnected("down")], []

    with caplog.at_level(logging.INFO, logger="paygo.notifications"), committed():
        notification = notify(alice, "payment", "Paid", "Paid.")  # does not raise

    notification.refresh_from_db()
    assert notification.email_status == DeliveryStatus.PENDING
    assert notification.email_claimed_until is None
    assert notification.email_error == "The mail server disconnected: down"
    assert "will be retried by the stuck-delivery sweeper" in caplog.text


# --- The sweeper ------------------------------------------------------------------------------------------


def _aged(notification, **age) -> Notification:
    Notification.objects.filter(pk=notification.pk).update(created_at=timezone.now() - timedelta(**age))
    return notification


def test_sweeper_requeues_a_lost_delivery(alice, mailoutbox, twilio):
    verify_phone(alice)
    twilio.respond(twilio_message())
    lost = _aged(notify(alice, "alert", "Low balance", "Top up."), minutes=31)  # its tasks were never queued
    recent = _aged(notify(alice, "payment", "Paid", "Paid."), minutes=5)  # its task may still be on its way

    counts = tasks.requeue_stuck_deliveries.delay().get()

    assert counts == {"requeued": 2, "given_up": 0, "outcome_unknown": 0}  # lost's email and SMS
    assert [m.subject for m in mailoutbox] == ["Low balance"]
    assert len(twilio.requests) == 1
    lost.refresh_from_db()
    recent.refresh_from_db()
    assert (lost.email_status, lost.sms_status) == ("sent", "sent")
    assert recent.email_status == DeliveryStatus.PENDING


def test_a_delivery_sent_later_goes_out_only_on_a_channel_still_on(api, alice, mailoutbox, twilio):
    """The owner turned email off for payments after the notification was made; its email, re-queued
    by the sweeper, is not sent. The SMS, still on, is."""
    verify_phone(alice)
    twilio.respond(twilio_message())
    api(alice).patch("/api/v1/notifications/preferences", {"preferences": {"payment": {"sms": True}}}, format="json")
    lost = _aged(notify(alice, "payment", "Paid", "Paid."), minutes=31)  # its tasks were never queued
    assert (lost.email_status, lost.sms_status) == (DeliveryStatus.PENDING, DeliveryStatus.PENDING)

    response = api(alice).patch(
        "/api/v1/notifications/preferences", {"preferences": {"payment": {"email": False}}}, format="json"
    )
    assert response.status_code == 200

    assert tasks.requeue_stuck_deliveries.delay().get() == {"requeued": 2, "given_up": 0, "outcome_unknown": 0}
    assert mailoutbox == []
    assert len(twilio.requests) == 1
    lost.refresh_from_db()
    assert (lost.email_status, lost.sms_status) == (DeliveryStatus.SKIPPED, DeliveryStatus.SENT)
    assert lost.email_error == "Turned off in the notification preferences since."


def test_sweeper_leaves_a_delivery_with_a_live_claim(alice, mailoutbox):
    notification = _aged(notify(alice, "payment", "Paid", "Paid."), minutes=31)
    Notification.objects.filter(pk=notification.pk).update(email_claimed_until=timezone.now() + timedelta(minutes=1))

    assert tasks.requeue_stuck_deliveries.delay().get() == {"requeued": 0, "given_up": 0, "outcome_unknown": 0}
    assert mailoutbox == []


def test_sweeper_gives_up_after_a_day(alice, mailoutbox):
    notification = _aged(notify(alice, "payment", "Paid", "Paid."), hours=25)

    assert tasks.requeue_stuck_deliveries.delay().get() == {"requeued": 0, "given_up": 1, "outcome_unknown": 0}
    assert mailoutbox == []
    notification.refresh_from_db()
    assert notification.email_status == DeliveryStatus.FAILED
    assert notification.email_error == "Not delivered within 24 hours; given up."


class WorkerKilled(BaseException):
    """The worker's process ends here (the hard time limit, the OOM killer, a deploy): nothing after runs."""


def _killed_once_twilio_took_the_sms(notification, twilio, monkeypatch) -> None:
    """A worker sends the SMS, Twilio takes it, and the worker is gone before it records so."""
    twilio.respond(twilio_message("SM1"), twilio_message("SM2"))

    def killed(**kwargs):
        raise WorkerKilled

    with monkeypatch.context() as patched:
        patched.setattr(services, "delivery_finish", killed)
        with pytest.raises(WorkerKilled):
            deliver(channel="sms", notification_id=notification.pk, final_attempt=False)
    assert len(twilio.requests) == 1
    notification.refresh_from_db()
    assert notification.sms_status == DeliveryStatus.PENDING
    assert notification.sms_sending_at is not None


def test_sweeper_does_not_send_again_an_sms_whose_worker_died_while_sending_it(
    alice, mailoutbox, twilio, monkeypatch, time_machine
):
    """Its claim expires with it pending: the sweeper re-queued it and Twilio got it a second time.
    Twilio may have sent it; it is recorded as failed with why, as an answer lost is."""
    verify_phone(alice)
    notification = notify(alice, "alert", "Low balance", "Top up.")  # its tasks were never queued
    _killed_once_twilio_took_the_sms(notification, twilio, monkeypatch)
    time_machine.move_to(timezone.now() + timedelta(minutes=31))

    counts = tasks.requeue_stuck_deliveries.delay().get()

    assert len(twilio.requests) == 1
    assert counts == {"requeued": 1, "given_up": 0, "outcome_unknown": 1}  # the email, re-queued, went out
    assert len(mailoutbox) == 1
    notification.refresh_from_db()
    assert (notification.sms_status, notification.sms_attempts, notification.sms_claimed_until) == ("failed", 1, None)
    assert notification.sms_error.startswith("The worker sending it stopped before Twilio's answer was recorded")
    assert "may have sent the message" in notification.sms_error
    assert tasks.requeue_stuck_deliveries.delay().get() == {"requeued": 0, "given_up": 0, "outcome_unknown": 0}


def test_a_redelivered_task_does_not_send_again_an_sms_whose_worker_died_while_sending_it(
    alice, twilio, monkeypatch, time_machine
):
    """The delivery tasks are acks_late: the broker hands a dead worker's task to another, which
    claimed the SMS once the claim expired and sent it again."""
    verify_phone(alice)
    notification = notify(alice, "alert", "Low balance", "Top up.")
    _killed_once_twilio_took_the_sms(notification, twilio, monkeypatch)
    time_machine.move_to(timezone.now() + services.CLAIM_DURATION + timedelta(seconds=1))

    assert tasks.deliver_sms.delay(notification.pk).get() == "nothing_to_do"

    assert len(twilio.requests) == 1
    notification.refresh_from_db()
    assert (notification.sms_status, notification.sms_attempts) == ("failed", 1)
    assert "may have sent the message" in notification.sms_error


def test_sweeper_leaves_an_sms_being_sent(alice, twilio, monkeypatch, time_machine):
    """While its worker's claim lasts, an SMS marked as being sent is that worker's to record."""
    verify_phone(alice)
    notification = _aged(notify(alice, "alert", "Low balance", "Top up."), minutes=31)
    _killed_once_twilio_took_the_sms(notification, twilio, monkeypatch)

    assert tasks.requeue_stuck_deliveries.delay().get() == {"requeued": 1, "given_up": 0, "outcome_unknown": 0}
    notification.refresh_from_db()
    assert notification.sms_status == DeliveryStatus.PENDING
    assert len(twilio.requests) == 1


# --- Operators re-send failures ---------------------------------------------------------------------------


def test_retry_failed_resends_only_the_failed_channels(alice, bob, committed, twilio, mailoutbox):
    verify_phone(alice)
    twilio.respond(twilio_error(400, 21211, "Invalid 'To' number."))
    with committed():
        failed = notify(alice, "alert", "Low balance", "Top up.")
        sent = notify(bob, "payment", "Paid", "Paid.")
    failed.refresh_from_db()
    assert (failed.email_status, failed.sms_status) == ("sent", "failed")
    twilio.respond(twilio_message("SM789"))

    with committed():
        queued = delivery_retry_failed(notifications=Notification.objects.all())

    assert queued == 1
    failed.refresh_from_db()
    assert (failed.sms_status, failed.sms_sid, failed.sms_attempts, failed.sms_error) == ("sent", "SM789", 2, "")
    assert len(mailoutbox) == 2  # nobody got a second email
    sent.refresh_from_db()
    assert sent.email_attempts == 1


# --- Two workers, one delivery ------------------------------------------------------------------------------

_other_worker_done = threading.Event()


class SlowBackend(BaseEmailBackend):
    """Holds a send until the other worker has finished its attempt."""

    sent: list = []

    def send_messages(self, email_messages):
        _other_worker_done.wait(timeout=5)
        SlowBackend.sent.extend(email_messages)
        return len(email_messages)


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_one_delivery_send_once(alice, settings):
    """Both attempts start together; the one that claims the delivery holds its send until the other
    has returned. Without the claim, both would send."""
    settings.EMAIL_BACKEND = f"{__name__}.SlowBackend"
    SlowBackend.sent = []
    _other_worker_done.clear()
    notification = Notification.objects.create(
        user=alice, type="payment", title="Paid", message="Paid.", email_status=DeliveryStatus.PENDING
    )
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def worker():
        try:
            start.wait(timeout=5)
            outcomes.append(deliver(channel="email", notification_id=notification.pk, final_attempt=True))
        finally:
            _other_worker_done.set()
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
        assert not thread.is_alive(), "a worker never finished"

    assert sorted(outcomes) == ["busy", "sent"]
    assert len(SlowBackend.sent) == 1
    notification.refresh_from_db()
    assert (notification.email_status, notification.email_attempts) == ("sent", 1)
