"""notify(): what is stored, which channels are planned, and what leaves only after commit."""

from __future__ import annotations

import logging
import threading
from decimal import Decimal

import pytest
from django.db import transaction
from rest_framework.exceptions import ValidationError

from accounts.tests.conftest import held_while_the_other_waits
from conftest import in_thread, money_db
from notifications import notify
from notifications.models import DeliveryStatus, Notification, NotificationPreference
from notifications.services import (
    InvalidNotification,
    notification_broadcast,
    notification_delete,
    notification_mark_read,
    notifications_read_in,
)
from notifications.tests.conftest import verify_phone

pytestmark = pytest.mark.django_db


def test_notify_stores_the_notification(alice):
    notification = notify(alice, "payment", "Payment received", "12.500000 USDC arrived.", {"amount": "12.5"})

    stored = Notification.objects.get(pk=notification.pk)
    assert stored.user == alice
    assert (stored.type, stored.title, stored.message) == ("payment", "Payment received", "12.500000 USDC arrived.")
    assert stored.data == {"amount": "12.5"}
    assert stored.read is False
    assert stored.read_at is None
    assert stored.sent_by is None


def test_notify_accepts_a_user_id(alice):
    notification = notify(alice.pk, "system", "Welcome", "Hello.")

    assert notification.user_id == alice.pk


@pytest.mark.parametrize(
    ("type", "email", "sms"),
    [
        ("session", "not_requested", "not_requested"),  # in-app only: two a session, to its user and its vendor
        ("payment", "pending", "not_requested"),
        ("consultation", "pending", "not_requested"),
        ("alert", "pending", "pending"),
        ("system", "not_requested", "not_requested"),
    ],
)
def test_default_channels(alice, type, email, sms):
    verify_phone(alice)

    notification = notify(alice, type, "Title", "Message")

    assert (notification.email_status, notification.sms_status) == (email, sms)


def test_sms_is_skipped_without_a_verified_phone(alice):
    alice.phone = "+15551230001"  # set, but not verified
    alice.save(update_fields=["phone"])

    notification = notify(alice, "alert", "Low balance", "About 4 minutes left.")

    assert notification.sms_status == DeliveryStatus.SKIPPED
    assert notification.sms_error == "No verified phone number."
    assert notification.email_status == DeliveryStatus.PENDING


def test_sms_is_skipped_when_verified_without_a_phone(alice):
    alice.is_verified = True
    alice.save(update_fields=["is_verified"])

    assert notify(alice, "alert", "Low balance", "About 4 minutes left.").sms_status == DeliveryStatus.SKIPPED


def test_preferences_turn_channels_off_and_on(alice):
    verify_phone(alice)
    NotificationPreference.objects.create(user=alice, type="alert", email=False, sms=False)
    NotificationPreference.objects.create(user=alice, type="system", email=True, sms=True)

    alert = notify(alice, "alert", "Low balance", "About 4 minutes left.")
    system = notify(alice, "system", "Maintenance", "Tonight at 2am UTC.")

    assert (alert.email_status, alert.sms_status) == ("not_requested", "not_requested")
    assert (system.email_status, system.sms_status) == ("pending", "pending")


def test_an_inactive_user_gets_the_record_and_no_email_or_sms(alice):
    verify_phone(alice)
    alice.is_active = False
    alice.save(update_fields=["is_active"])

    notification = notify(alice, "alert", "Low balance", "About 4 minutes left.")

    assert (notification.email_status, notification.sms_status) == ("skipped", "skipped")
    assert notification.email_error == "The account is not active."


def test_title_is_one_line_and_both_are_trimmed(alice):
    notification = notify(alice, "system", "  Line one\r\nBcc: evil@example.com ", "  body  ")

    assert notification.title == "Line one Bcc: evil@example.com"
    assert notification.message == "body"


def test_what_hides_or_reorders_text_does_not_reach_the_user(alice):
    """A name or other text stored before the rule of visible text (paygo.api.text) is put in a
    notification as it shows: direction overrides, zero-width and control characters are dropped, a
    tab is a space, the message's line breaks are kept and the emoji joiner too."""
    notification = notify(
        alice,
        "payment",
        "Transfer from \u202etroppuS oGyaP\u202c",
        "\u202etroppuS oGyaP\u202c sent you 1 USDC.\r\nVictor\u200b\tsays: hi \U0001f468\u200d\U0001f469\x07",
    )

    notification.refresh_from_db()
    assert notification.title == "Transfer from troppuS oGyaP"
    assert notification.message == "troppuS oGyaP sent you 1 USDC.\nVictor says: hi \U0001f468\u200d\U0001f469"


def test_overlong_title_and_message_are_truncated_not_refused(alice):
    notification = notify(alice, "system", "t" * 500, "m" * 9000)

    notification.refresh_from_db()
    assert len(notification.title) == 200
    assert notification.title.endswith("…")
    assert len(notification.message) == 5000


def test_data_is_stored_as_json(alice):
    notification = notify(alice, "payment", "Paid", "Paid.", {"amount": Decimal("1.50"), "ids": (1, 2)})

    assert notification.data == {"amount": "1.50", "ids": [1, 2]}
    notification.refresh_from_db()
    assert notification.data == {"amount": "1.50", "ids": [1, 2]}


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        (("payments", "Title", "Message"), "type", "'payments' is not a notification type."),
        (("payment", "  ", "Message"), "title", "A notification needs a title of visible characters."),
        (("payment", "\u200b\u202e", "Message"), "title", "A notification needs a title of visible characters."),
        (("payment", "Title", ""), "message", "A notification needs a message of visible characters."),
        (("payment", "Title", "\u2028\u200b"), "message", "A notification needs a message of visible characters."),
        (("payment", "Title", "Message", ["not", "a", "dict"]), "data", "Notification data must be a dict."),
        (("payment", "Title", "Message", {"when": object()}), "data", "Notification data must be JSON-serialisable"),
    ],
)
def test_a_callers_mistake_is_a_value_error_and_stores_nothing(alice, args, field, message):
    """A ValueError, as notify() promises its callers, and a ValidationError naming the field, so that
    a request that reaches it is a 400 and not a 500 (a title of invisible characters only was)."""
    with pytest.raises(InvalidNotification) as refused:
        notify(alice, *args)

    assert isinstance(refused.value, ValueError) and isinstance(refused.value, ValidationError)
    assert list(refused.value.detail) == [field]
    assert str(refused.value.detail[field][0]).startswith(message)
    assert not Notification.objects.exists()


def test_the_service_keeps_visible_text_and_drops_what_hides_in_it(alice):
    """Callers in other apps pass names stored before the rule of visible text held them: what hides
    is dropped, the rest kept."""
    notification = notify(alice, "payment", "From \u202eBob\u200b", "Line one\u200b\nline two")

    assert (notification.title, notification.message) == ("From Bob", "Line one\nline two")


def test_an_unknown_role_is_refused_naming_it(olga):
    with pytest.raises(InvalidNotification) as refused:
        notification_broadcast(role="superhero", type="system", title="Hi", message="Hi.", sent_by=olga)

    assert refused.value.detail == {"role": ["'superhero' is not a role."]}
    assert not Notification.objects.exists()


def test_notify_costs_two_queries(alice, django_assert_num_queries):
    with django_assert_num_queries(2):  # the preference, the insert
        notify(alice, "payment", "Paid", "Paid.")


def test_nothing_leaves_before_commit(alice, committed, mailoutbox):
    with committed() as callbacks, transaction.atomic():
        notify(alice, "payment", "Paid", "Paid.")
        assert mailoutbox == []  # still inside the caller's transaction

    assert len(callbacks) == 1
    assert len(mailoutbox) == 1


def test_a_rolled_back_notify_stores_pushes_and_sends_nothing(alice, committed, mailoutbox, no_twilio):
    verify_phone(alice)

    with committed() as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        notify(alice, "alert", "Low balance", "About 4 minutes left.")
        raise RuntimeError("the caller's payment failed")

    assert callbacks == []
    assert not Notification.objects.exists()
    assert mailoutbox == []
    assert no_twilio.requests == []


def test_a_broken_channel_layer_never_reaches_the_caller(alice, committed, mailoutbox, monkeypatch, caplog):
    class BrokenLayer:
        async def group_send(self, group, message):
            raise ConnectionError("redis is down")

    monkeypatch.setattr("paygo.ws.get_channel_layer", lambda: BrokenLayer())

    with caplog.at_level(logging.ERROR, logger="paygo.notifications"), committed():
        notification = notify(alice, "payment", "Paid", "Paid.")

    assert "Could not push a notification" in caplog.text
    notification.refresh_from_db()
    assert notification.email_status == DeliveryStatus.SENT  # the email still went out
    assert len(mailoutbox) == 1


def test_a_broker_outage_never_reaches_the_caller(alice, committed, mailoutbox, monkeypatch, caplog):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker is down")

    monkeypatch.setattr("notifications.tasks.deliver_email.delay", broker_down)

    with caplog.at_level(logging.ERROR, logger="paygo.notifications"), committed():
        notification = notify(alice, "payment", "Paid", "Paid.")

    assert "Could not queue notifications.deliver_email" in caplog.text
    notification.refresh_from_db()
    assert notification.email_status == DeliveryStatus.PENDING  # left for the sweeper
    assert mailoutbox == []


# --- Coalescing: one email or SMS per unread thread ---------------------------------------------------

HELD_BACK = "Not sent: an unread notification of the same conversation was already sent."


def new_message(user, text="Hello", *, thread="consultation:1", coalesce=True, type="alert"):
    return notify(user, type, "New message", text, thread=thread, coalesce=coalesce)


def deliveries(*notifications) -> list[tuple[str, str, str]]:
    """(email, sms, why email was not sent) of each notification, as stored."""
    rows = Notification.objects.in_bulk([n.pk for n in notifications])
    return [(rows[n.pk].email_status, rows[n.pk].sms_status, rows[n.pk].email_error) for n in notifications]


def test_a_coalesced_notification_is_not_emailed_nor_texted_while_one_of_its_thread_is_unread(alice):
    verify_phone(alice)
    first, second = new_message(alice), new_message(alice)
    other_thread, not_coalesced = new_message(alice, thread="consultation:2"), new_message(alice, coalesce=False)

    assert deliveries(first, second, other_thread, not_coalesced) == [
        ("pending", "pending", ""),
        ("skipped", "skipped", HELD_BACK),
        ("pending", "pending", ""),
        ("pending", "pending", ""),
    ]
    assert Notification.objects.filter(user=alice, thread="consultation:1").count() == 3  # all stored, in-app


def test_once_the_thread_is_read_or_dismissed_the_next_one_is_sent(alice, bob):
    new_message(bob)  # someone else's unread notification of a thread of the same name holds nothing back
    first = new_message(alice)
    notification_mark_read(notification=first, read=True)
    after_reading = new_message(alice)
    notification_delete(notification=after_reading)
    after_dismissing = new_message(alice)

    assert [status for status, _, _ in deliveries(first, after_reading, after_dismissing)] == ["pending"] * 3


def test_only_an_unread_notification_that_went_out_holds_the_next_one_back(alice):
    """Held back means an unread one of the thread was sent (or is on its way), as its reason says:
    one held back itself and left unread (read all at the instant it was stored, which cannot wait
    for every thread's lock) held back every later one, and nothing was emailed again though what
    had been emailed was read."""
    first = new_message(alice)
    held = new_message(alice)
    notification_mark_read(notification=first, read=True)  # the one emailed is read; `held` is not
    after = new_message(alice)

    assert [status for status, _, _ in deliveries(first, held, after)] == ["pending", "skipped", "pending"]


def test_reading_a_thread_reads_its_unread_notifications_only(alice, bob):
    mine = [new_message(alice), new_message(alice, coalesce=False)]
    other_thread, bobs = new_message(alice, thread="consultation:2"), new_message(bob)

    assert notifications_read_in(user=alice, thread="consultation:1") == 2
    assert notifications_read_in(user=alice, thread="consultation:1") == 0

    read = dict(Notification.objects.values_list("pk", "read"))
    assert [read[n.pk] for n in [*mine, other_thread, bobs]] == [True, True, False, False]


@money_db
def test_two_notifications_of_one_thread_at_once_send_one_email(alice, mailoutbox):
    """The second waits for the first's transaction (a lock on the user's thread) and sees it unread:
    without the lock, both found nothing unread before either committed, and both were emailed."""
    first_stored, release, second_done = threading.Event(), threading.Event(), threading.Event()

    @in_thread
    def first():
        with transaction.atomic():
            stored = new_message(alice, "The first of two", type="consultation")
            first_stored.set()
            release.wait(60)
        return stored

    @in_thread
    def second():
        try:
            first_stored.wait(60)
            return new_message(alice, "The second of two", type="consultation")
        finally:
            second_done.set()

    one, two = held_while_the_other_waits(first, second, held=first_stored, other_done=second_done, release=release)

    assert deliveries(one, two) == [("sent", "not_requested", ""), ("skipped", "not_requested", HELD_BACK)]
    assert len(mailoutbox) == 1
    assert "The first of two" in mailoutbox[0].body


@money_db
def test_a_thread_read_while_a_message_of_it_is_being_stored_reads_that_message_too(alice):
    """Reading waits for the lock a new notification of the thread holds until it commits, then
    reads it: without it, the read's UPDATE could not see the message not yet committed, which
    stayed unread (not emailed, held back by the thread read before it), and held back every later
    one, though everything had been read."""
    first = new_message(alice, "Before")  # emailed
    stored, release, read_done = threading.Event(), threading.Event(), threading.Event()

    @in_thread
    def arriving():
        with transaction.atomic():
            message = new_message(alice, "While reading")  # held back: "Before" is unread
            stored.set()
            release.wait(60)
        return message

    @in_thread
    def reading():
        try:
            stored.wait(60)
            return notifications_read_in(user=alice, thread="consultation:1")
        finally:
            read_done.set()

    message, read = held_while_the_other_waits(arriving, reading, held=stored, other_done=read_done, release=release)

    assert read == 2  # "Before" and the message that arrived as it was read
    assert not Notification.objects.filter(user=alice, read=False).exists()
    after = new_message(alice, "After")
    # No phone to text (skipped); "After" emailed, the thread having been read whole.
    assert deliveries(first, message, after) == [
        ("sent", "skipped", ""),
        ("skipped", "skipped", HELD_BACK),
        ("sent", "skipped", ""),
    ]
