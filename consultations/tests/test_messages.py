"""POST /consultations/<id>/message: participants write in open consultations; the other side hears."""

from __future__ import annotations

import pytest

from conftest import grant
from consultations.models import Consultation, Message
from consultations.tests.conftest import message_url
from notifications.models import Notification
from paygo.api.text import INVISIBLE_MESSAGE

pytestmark = pytest.mark.django_db


def send(client, consultation, text):
    return client.post(message_url(consultation), {"message": text}, format="json")


def test_the_user_writes_and_the_vendor_hears(api, alice, victor, consult, mailoutbox):
    consultation = consult()
    Notification.objects.all().delete()
    mailoutbox.clear()

    response = send(api(alice), consultation, "Are you free at 3?")

    assert response.status_code == 201, response.json()
    message = Message.objects.latest("id")
    assert response.json() == {
        "message": "Message sent.",
        "sentMessage": {
            "id": message.pk,
            "consultationId": consultation.pk,
            "senderId": alice.pk,
            "body": "Are you free at 3?",
            "createdAt": message.created_at.isoformat().replace("+00:00", "Z"),
            "readAt": None,
        },
    }
    consultation.refresh_from_db()
    assert consultation.last_message_at == message.created_at
    (notification,) = Notification.objects.all()
    assert (notification.user, notification.type) == (victor, "consultation")
    assert notification.title == "New message from Alice"
    assert notification.message == "Are you free at 3?"
    assert notification.data == {"consultationId": consultation.pk, "messageId": message.pk}
    assert [email.to for email in mailoutbox] == [["victor@example.com"]]


def test_the_vendor_writes_and_the_user_hears(api, alice, victor, consult):
    consultation = consult("accepted")
    Notification.objects.all().delete()

    response = send(api(victor), consultation, "Yes, call me when you are ready.")

    assert response.status_code == 201
    assert Message.objects.latest("id").sender == victor
    (notification,) = Notification.objects.all()
    assert (notification.user, notification.title) == (alice, "New message from Victor")


def test_a_long_message_is_previewed_in_the_notification(api, alice, consult):
    consultation = consult()

    send(api(alice), consultation, "word " * 1000)

    notification = Notification.objects.latest("id")
    assert len(notification.message) == 200 and notification.message.endswith("…")
    assert Message.objects.latest("id").body == " ".join(["word"] * 1000)


@pytest.mark.parametrize("status", ["pending", "accepted", "active"])
def test_open_consultations_take_messages(api, alice, victor, consult, status):
    consultation = consult(status)

    assert send(api(alice), consultation, "from the user").status_code == 201
    assert send(api(victor), consultation, "from the vendor").status_code == 201


@pytest.mark.parametrize("status", ["completed", "cancelled", "rejected"])
def test_closed_consultations_take_none(api, alice, victor, consult, status):
    consultation = consult(status)
    before = (Message.objects.count(), Notification.objects.count())

    for caller in (alice, victor):
        response = send(api(caller), consultation, "hello?")
        assert response.status_code == 409
        assert response.json()["code"] == "closed"
        assert response.json()["message"] == f"This consultation is {status}; it takes no more messages."
    assert (Message.objects.count(), Notification.objects.count()) == before


@pytest.mark.parametrize("text", ["", "  \n ", "x" * 5001, None, 42, ["a"]])
def test_bad_messages_are_a_400_and_store_nothing(api, alice, consult, text):
    consultation = consult()
    before = (Message.objects.count(), Notification.objects.count())

    response = api(alice).post(message_url(consultation), {"message": text}, format="json")

    assert response.status_code == 400
    assert "message" in response.json()["errors"]
    assert (Message.objects.count(), Notification.objects.count()) == before


def test_a_missing_body_is_a_400(api, alice, consult):
    consultation = consult()

    response = api(alice).post(message_url(consultation), {}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"message": ["This field is required."]}


def test_bodies_are_returned_json_encoded(api, alice, victor, consult):
    consultation = consult()
    text = '</script><img src=x onerror="alert(1)">\nindented & "quoted"'

    sent = send(api(alice), consultation, text)
    read = api(victor).get(f"/api/v1/consultations/{consultation.pk}")

    assert Message.objects.latest("id").body == text
    assert sent.json()["sentMessage"]["body"] == text
    assert read["Content-Type"] == "application/json"
    assert read.json()["messages"][0]["body"] == text
    # JSON-encoded: the raw response carries no newline nor unescaped quote of the body.
    assert b'onerror=\\"alert(1)\\">\\nindented' in read.content


def test_a_body_is_visible_text_in_one_form_and_keeps_its_lines(api, alice, victor, consult):
    """As a transfer's memo and a notification's message: its lines kept (each as one newline), its
    spaces as one, in one Unicode form (NFKC: a full-width "Foo" as "Foo", "Café" typed either way)."""
    consultation = consult()
    text = "  Rent, March\r\n\tflat 2 \u2014 thanks!  \U0001f468\u200d\U0001f469\n\nCaf\u0065\u0301 \uff26\uff4f\uff4f"

    sent = send(api(alice), consultation, text)

    assert sent.status_code == 201, sent.json()
    kept = "Rent, March\nflat 2 \u2014 thanks! \U0001f468\u200d\U0001f469\n\nCaf\u00e9 Foo"
    assert Message.objects.latest("id").body == kept
    assert sent.json()["sentMessage"]["body"] == kept
    assert api(victor).get(f"/api/v1/consultations/{consultation.pk}").json()["messages"][0]["body"] == kept


HIDING = pytest.mark.parametrize(
    "text",
    [
        "Pay to \u202eTDSU 001\u202c now",
        "\u200b\u200b",
        "Pay\u200bGo",
        "ding\x07",
        "\u2066isolated\u2069",
        "\x1b[31mred",
        "\ue000",
    ],
    ids=["direction-override", "zero-width-only", "zero-width", "bell", "direction-isolate", "escape", "private-use"],
)


@HIDING
def test_a_body_with_what_hides_or_reorders_text_is_a_400_and_writes_nothing(api, alice, consult, mailoutbox, text):
    """Shown as written, a direction override made "Pay to \u202eTDSU 001\u202c" read "Pay to 100 USDT";
    a body of zero-width spaces alone was a message that shows nothing (and its notification a
    confusing 400 of the notifications' own)."""
    consultation = consult()
    mailoutbox.clear()
    before = (Message.objects.count(), Notification.objects.count(), consultation.last_message_at)

    response = send(api(alice), consultation, text)

    assert response.status_code == 400, response.json()
    assert response.json() == {
        "message": f"message: {INVISIBLE_MESSAGE}",
        "statusCode": 400,
        "code": "invisible",
        "errors": {"message": [INVISIBLE_MESSAGE]},
    }
    consultation.refresh_from_db()
    assert (Message.objects.count(), Notification.objects.count(), consultation.last_message_at) == before
    assert mailoutbox == []


def test_a_body_too_long_once_in_its_one_form_is_a_400(api, alice, consult):
    """NFKC may lengthen text ("\ufdfa", one character, is 18): the limit is the stored body's."""
    consultation = consult()

    response = send(api(alice), consultation, "\ufdfa" * 300)

    assert response.status_code == 400, response.json()
    assert response.json()["errors"] == {"message": ["Ensure this field has no more than 5000 characters."]}
    assert Message.objects.count() == 1


@pytest.mark.parametrize("who", ["bob", "wanda", "stan"])
def test_outsiders_get_a_404(api, bob, wanda, stan, consult, who):
    consultation = consult()
    before = Message.objects.count()

    response = send(api({"bob": bob, "wanda": wanda, "stan": stan}[who]), consultation, "let me in")

    assert response.status_code == 404
    assert Message.objects.count() == before


def test_staff_read_but_do_not_write(api, olga, consult):
    consultation = consult()
    before = Message.objects.count()

    response = send(api(olga), consultation, "staff here")

    assert response.status_code == 403
    assert Message.objects.count() == before


def test_staff_who_may_read_it_do_not_write_either(api, stan, consult):
    consultation = consult()
    reader = grant(
        stan, "consultations.view_consultation", "consultations.view_message", "consultations.view_consultationcall"
    )

    assert send(api(reader), consultation, "staff here").status_code == 403


def test_anonymous_is_401_and_unknown_is_404(api, anon, alice, consult):
    consultation = consult()

    assert send(anon, consultation, "hi").status_code == 401
    assert api(alice).post("/api/v1/consultations/999999/message", {"message": "hi"}, format="json").status_code == 404


def test_the_database_refuses_an_empty_or_overlong_body(alice, consult):
    from django.db import IntegrityError, transaction

    consultation: Consultation = consult()
    for body in ("", "x" * 5001):
        with pytest.raises(IntegrityError), transaction.atomic():
            Message.objects.create(consultation=consultation, sender=alice, body=body)
