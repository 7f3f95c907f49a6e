"""What the other side hears of a consultation: every request and message in the app, and by email
(or SMS, if they chose it) only while they have nothing unread of that consultation: one "you have
new messages" until they read it, not one email per message with the sender's text."""

from __future__ import annotations

import pytest

from consultations.tests.conftest import LIST, detail_url, message_url, status_url
from notifications.models import DeliveryStatus, Notification
from notifications.tests.conftest import no_twilio, twilio, twilio_message, verify_phone  # noqa: F401

pytestmark = pytest.mark.django_db

NOTIFICATIONS = "/api/v1/notifications"
HELD_BACK = "Not sent: an unread notification of the same conversation was already sent."


def send(client, consultation, text):
    response = client.post(message_url(consultation), {"message": text}, format="json")
    assert response.status_code == 201, response.json()


def emails_to(mailoutbox, user) -> int:
    return sum(user.email in email.to for email in mailoutbox)


def news_of(user, consultation) -> list[tuple[str, str]]:
    """(title, email status) of each of the user's notifications of the consultation, oldest first."""
    return list(
        Notification.objects.filter(user=user, data__consultationId=consultation.pk)
        .order_by("pk")
        .values_list("title", "email_status")
    )


def test_forty_messages_email_the_vendor_once_until_he_reads_them(api, alice, victor, consult, mailoutbox):
    consultation = consult()  # the request: emailed to victor, unread
    assert emails_to(mailoutbox, victor) == 1
    client = api(alice)

    for index in range(40):
        send(client, consultation, f"buy cheap stuff at evil.example {index}")

    assert emails_to(mailoutbox, victor) == 1
    news = news_of(victor, consultation)
    assert (
        news
        == [("New consultation request", DeliveryStatus.SENT)]
        + [("New message from Alice", DeliveryStatus.SKIPPED)] * 40
    )
    held_back = Notification.objects.filter(user=victor, title="New message from Alice")
    assert set(held_back.values_list("email_error", flat=True)) == {HELD_BACK}


def test_once_he_read_them_the_next_message_emails_again_and_only_that_one(api, alice, victor, consult, mailoutbox):
    consultation = consult()
    client = api(alice)
    send(client, consultation, "first")
    assert api(victor).post(f"{NOTIFICATIONS}/read-all").status_code == 200
    mailoutbox.clear()

    send(client, consultation, "second")
    send(client, consultation, "third")

    assert emails_to(mailoutbox, victor) == 1
    assert "second" in mailoutbox[0].body
    assert [status for _, status in news_of(victor, consultation)][-2:] == [DeliveryStatus.SENT, DeliveryStatus.SKIPPED]


def test_reading_the_one_notification_is_reading_them(api, alice, victor, consult, mailoutbox):
    """One unread notification of the consultation holds email back, whichever: read, the next emails."""
    consultation = consult()
    request = Notification.objects.get(user=victor)
    assert api(victor).patch(f"{NOTIFICATIONS}/{request.pk}", {"read": True}, format="json").status_code == 200
    mailoutbox.clear()

    send(api(alice), consultation, "are you there?")

    assert emails_to(mailoutbox, victor) == 1


def test_opening_the_consultation_reads_its_notifications(api, alice, victor, consult, make_service, mailoutbox):
    """Read in the consultation itself (where the email leads), its messages were still unread
    notifications, and no message emailed again."""
    consultation, elsewhere = consult(), consult(service=make_service())
    client = api(alice)
    send(client, consultation, "first")
    send(client, elsewhere, "elsewhere")

    assert api(victor).get(detail_url(consultation)).status_code == 200

    unread = Notification.objects.filter(user=victor, read=False)
    assert sorted(unread.values_list("data__consultationId", flat=True)) == [elsewhere.pk, elsewhere.pk]
    mailoutbox.clear()
    send(client, consultation, "second")
    send(client, elsewhere, "elsewhere again")
    assert emails_to(mailoutbox, victor) == 1
    assert "second" in mailoutbox[0].body


def test_staff_reading_the_consultation_read_nobodys_notifications(api, olga, alice, victor, consult):
    consultation = consult()
    send(api(alice), consultation, "first")

    assert api(olga).get(detail_url(consultation)).status_code == 200

    assert Notification.objects.filter(user=victor, read=False).count() == 2


def test_each_consultation_and_each_recipient_counts_apart(api, alice, victor, make_service, consult, mailoutbox):
    """Another consultation's unread notifications hold nothing back, nor do the sender's own: each
    new request (about another service: one open at a time per service) emails, and a reply emails
    the user who has nothing unread there."""
    client = api(alice)
    for index in range(3):
        response = client.post(
            LIST,
            {"vendorId": victor.pk, "serviceId": make_service().pk, "initialMessage": f"hello {index}"},
            format="json",
        )
        assert response.status_code == 201
    consultation = consult()
    send(client, consultation, "and one more thing")
    mailoutbox.clear()

    send(api(victor), consultation, "sure")

    assert (emails_to(mailoutbox, alice), emails_to(mailoutbox, victor)) == (1, 0)
    assert Notification.objects.filter(user=victor, email_status=DeliveryStatus.SENT).count() == 4


def test_a_status_change_emails_whatever_is_unread(api, alice, victor, consult, mailoutbox):
    """Not a message: "accepted", "completed" and the like are news of their own, each emailed."""
    consultation = consult()
    send(api(victor), consultation, "let me check my calendar")  # alice: emailed, unread
    mailoutbox.clear()

    response = api(victor).patch(status_url(consultation), {"status": "accepted"}, format="json")

    assert response.status_code == 200
    assert emails_to(mailoutbox, alice) == 1
    send(api(victor), consultation, "accepted: call me when you like")  # unread news of it: held back
    assert emails_to(mailoutbox, alice) == 1


def test_sms_too_goes_once_until_read(api, alice, victor, consult, twilio):  # noqa: F811
    """For a recipient who chose SMS for consultations: one SMS, then none until they read."""
    verify_phone(victor, "+15551230002")
    response = api(victor).patch(
        f"{NOTIFICATIONS}/preferences", {"preferences": {"consultation": {"sms": True}}}, format="json"
    )
    assert response.status_code == 200
    twilio.respond(twilio_message("SM1"), twilio_message("SM2"))
    consultation = consult()  # the request: SM1

    for index in range(5):
        send(api(alice), consultation, f"message {index}")
    api(victor).post(f"{NOTIFICATIONS}/read-all")
    send(api(alice), consultation, "after reading")  # SM2
    send(api(alice), consultation, "and again")

    assert [request["data"]["To"] for request in twilio.requests] == ["+15551230002"] * 2
    assert "after reading" in twilio.requests[1]["data"]["Body"]
    sms = list(Notification.objects.filter(user=victor).order_by("pk").values_list("sms_status", flat=True))
    assert sms == ["sent"] + ["skipped"] * 5 + ["sent", "skipped"]
