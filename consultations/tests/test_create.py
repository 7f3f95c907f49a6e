"""POST /consultations: a user asks a vendor about one of the vendor's active services."""

from __future__ import annotations

import pytest

from consultations.models import Consultation, Message
from consultations.tests.conftest import LIST, token_deactivate
from marketplace.services import service_delete, service_set_active
from notifications.models import Notification
from paygo.api.text import INVISIBLE_MESSAGE

pytestmark = pytest.mark.django_db


def body(service, text="Can you review my portfolio?") -> dict:
    return {"vendorId": service.vendor_id, "serviceId": service.pk, "initialMessage": text}


def test_a_user_asks_a_vendor(api, alice, victor, service, mailoutbox):
    response = api(alice).post(LIST, body(service), format="json")

    assert response.status_code == 201, response.json()
    data = response.json()
    consultation = Consultation.objects.get()
    message = Message.objects.get()
    assert data["message"] == "Consultation requested."
    assert data["consultation"] == {
        "id": consultation.pk,
        "user": {"id": alice.pk, "name": "Alice"},
        "vendor": {"id": victor.pk, "name": "Victor"},
        "service": {
            "id": service.pk,
            "name": service.name,
            "unit": "per_minute",
            "token": "USDC",
            "rate": "1.000000",
            "priceVersion": 1,
        },
        "status": "pending",
        "date": data["consultation"]["createdAt"],
        "createdAt": data["consultation"]["createdAt"],
        "lastMessage": {
            "id": message.pk,
            "consultationId": consultation.pk,
            "senderId": alice.pk,
            "body": "Can you review my portfolio?",
            "createdAt": data["consultation"]["createdAt"],
            "readAt": None,
        },
        "unreadCount": 0,
    }
    assert (consultation.user, consultation.vendor, consultation.service) == (alice, victor, service)
    assert (message.sender, message.body, message.read_at) == (alice, "Can you review my portfolio?", None)

    # The vendor hears about it, in the app and by email; the user who asked does not.
    (notification,) = Notification.objects.all()
    assert notification.user == victor
    assert notification.type == "consultation"
    assert notification.title == "New consultation request"
    assert "Alice asks for a consultation about" in notification.message
    assert notification.data == {"consultationId": consultation.pk, "messageId": message.pk, "status": "pending"}
    assert [email.to for email in mailoutbox] == [["victor@example.com"]]


def test_the_first_message_is_visible_text_in_one_form(api, alice, service):
    text = "  <script>alert('hi')</script> &  \"quotes\"\r\n\n  \u00fcn\u00efc\u00f6d\u00e9 \U0001f642  "

    response = api(alice).post(LIST, body(service, text), format="json")

    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    kept = "<script>alert('hi')</script> & \"quotes\"\n\n\u00fcn\u00efc\u00f6d\u00e9 \U0001f642"
    assert response.json()["consultation"]["lastMessage"]["body"] == kept
    assert Message.objects.get().body == kept


@pytest.mark.parametrize("text", ["\u200b\u200b", "Pay to \u202eTDSU 001\u202c now", "hi\x07"])
def test_a_first_message_with_what_hides_or_reorders_text_is_a_400_and_opens_nothing(
    api, alice, service, mailoutbox, text
):
    response = api(alice).post(LIST, body(service, text), format="json")

    assert response.status_code == 400, response.json()
    assert response.json() == {
        "message": f"initialMessage: {INVISIBLE_MESSAGE}",
        "statusCode": 400,
        "code": "invisible",
        "errors": {"initialMessage": [INVISIBLE_MESSAGE]},
    }
    assert not Consultation.objects.exists()
    assert not Message.objects.exists()
    assert not Notification.objects.exists()
    assert mailoutbox == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"initialMessage": ""}, "initialMessage"),
        ({"initialMessage": "   \n\t "}, "initialMessage"),
        ({"initialMessage": "x" * 5001}, "initialMessage"),
        ({"initialMessage": None}, "initialMessage"),
        ({"initialMessage": 42}, "initialMessage"),
        ({"initialMessage": "nul \x00 byte"}, "initialMessage"),
        ({"vendorId": None}, "vendorId"),
        ({"vendorId": "victor"}, "vendorId"),
        ({"serviceId": -1}, "serviceId"),
        ({"serviceId": 10**30}, "serviceId"),
    ],
)
def test_bad_input_is_a_400_and_stores_nothing(api, alice, service, change, field):
    response = api(alice).post(LIST, {**body(service), **change}, format="json")

    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert not Consultation.objects.exists()
    assert not Message.objects.exists()
    assert not Notification.objects.exists()


def test_missing_fields_are_named(api, alice):
    response = api(alice).post(LIST, {}, format="json")

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"vendorId", "serviceId", "initialMessage"}


def test_a_message_of_exactly_5000_characters_is_fine(api, alice, service):
    response = api(alice).post(LIST, body(service, "é" * 5000), format="json")

    assert response.status_code == 201
    assert len(Message.objects.get().body) == 5000


def _refused(response, field: str) -> None:
    assert response.status_code == 400, response.json()
    data = response.json()
    assert list(data["errors"]) == [field]
    assert data["message"].startswith(f"{field}: ")
    assert not Consultation.objects.exists()
    assert not Message.objects.exists()
    assert not Notification.objects.exists()


def test_unknown_vendor(api, alice, service):
    response = api(alice).post(LIST, {**body(service), "vendorId": 999_999}, format="json")

    _refused(response, "vendorId")
    assert response.json()["errors"]["vendorId"] == ["No such vendor."]


@pytest.mark.parametrize("who", ["bob", "olga", "alice"])
def test_a_user_who_is_not_a_vendor_is_an_unknown_vendor(api, alice, bob, olga, service, who):
    someone = {"bob": bob, "olga": olga, "alice": alice}[who]

    response = api(alice).post(LIST, {**body(service), "vendorId": someone.pk}, format="json")

    _refused(response, "vendorId")


def test_a_deactivated_vendor_is_an_unknown_vendor(api, alice, victor, service):
    victor.is_active = False
    victor.save(update_fields=["is_active"])

    _refused(api(alice).post(LIST, body(service), format="json"), "vendorId")


def test_unknown_service(api, alice, victor):
    response = api(alice).post(
        LIST, {"vendorId": victor.pk, "serviceId": 999_999, "initialMessage": "Hi"}, format="json"
    )

    _refused(response, "serviceId")
    assert response.json()["errors"]["serviceId"] == ["No such service."]


def test_a_deleted_service_is_unknown(api, alice, service):
    service_delete(service=service)

    _refused(api(alice).post(LIST, body(service), format="json"), "serviceId")


def test_an_inactive_service_is_unknown_whoever_is_named_its_vendor(api, alice, victor, wanda, service):
    """Off sale, a service is unknown to users, as its page is (404): the answers told an inactive
    service apart from none, and its vendor from another."""
    service_set_active(service=service, is_active=False)

    answers = [
        api(alice).post(LIST, {"vendorId": vendor.pk, "serviceId": service_id, "initialMessage": "Hi"}, format="json")
        for vendor, service_id in ((victor, service.pk), (wanda, service.pk), (victor, 10**12))
    ]

    for response in answers:
        _refused(response, "serviceId")
    assert len({str(response.json()) for response in answers}) == 1
    assert answers[0].json()["errors"]["serviceId"] == ["No such service."]


def test_a_service_whose_token_staff_deactivated_takes_no_consultation(api, alice, make_service):
    """It takes no call, and its vendor could not accept it (409): opened, it was a dead end."""
    service = make_service(token="USDT")
    token_deactivate(service=service)

    response = api(alice).post(LIST, body(service), format="json")

    _refused(response, "serviceId")
    assert response.json()["errors"]["serviceId"] == ["This service is not available."]


def test_a_service_of_another_vendor(api, alice, victor, wanda, make_service):
    wandas = make_service(vendor=wanda)

    response = api(alice).post(
        LIST, {"vendorId": victor.pk, "serviceId": wandas.pk, "initialMessage": "Hi"}, format="json"
    )

    _refused(response, "serviceId")
    assert response.json()["errors"]["serviceId"] == ["This service is not offered by this vendor."]


@pytest.mark.parametrize("who", ["victor", "wanda", "olga"])
def test_only_users_ask(api, victor, wanda, olga, service, who):
    caller = {"victor": victor, "wanda": wanda, "olga": olga}[who]

    response = api(caller).post(LIST, body(service), format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert not Consultation.objects.exists()


def test_anonymous_is_401(anon, service):
    response = anon.post(LIST, body(service), format="json")

    assert response.status_code == 401
    assert not Consultation.objects.exists()


# --- One open consultation per user and service --------------------------------------------------


def _open_refused(response, consultation) -> None:
    assert response.status_code == 409, response.json()
    assert response.json() == {
        "message": "You already have an open consultation about this service; write in it instead. Nothing was sent.",
        "statusCode": 409,
        "code": "consultation_open",
        "consultationId": consultation.pk,
    }


@pytest.mark.parametrize("status", ["pending", "accepted", "active"])
def test_asking_again_while_a_consultation_is_open_is_a_409_that_names_it_and_writes_nothing(
    api, alice, service, consult, mailoutbox, status
):
    """Tapping "ask" twice (or a client retrying without an Idempotency-Key) opened a second request
    each time: the vendor had two pending requests about one service from one user to answer."""
    open_one = consult(status)
    messages, notifications, emails = Message.objects.count(), Notification.objects.count(), len(mailoutbox)

    response = api(alice).post(LIST, body(service, "Me again"), format="json")

    _open_refused(response, open_one)
    assert list(Consultation.objects.values_list("pk", flat=True)) == [open_one.pk]
    assert (Message.objects.count(), Notification.objects.count(), len(mailoutbox)) == (messages, notifications, emails)
    assert not Message.objects.filter(body="Me again").exists()


@pytest.mark.parametrize("status", ["rejected", "cancelled", "completed"])
def test_a_closed_consultation_does_not_keep_the_user_from_asking_again(api, alice, service, consult, status):
    closed = consult(status)

    response = api(alice).post(LIST, body(service, "Can we talk again?"), format="json")

    assert response.status_code == 201, response.json()
    again = Consultation.objects.get(pk=response.json()["consultation"]["id"])
    assert again.pk != closed.pk
    assert (again.status, Consultation.objects.get(pk=closed.pk).status) == ("pending", status)
    # And that one, open, holds the next request back in turn.
    _open_refused(api(alice).post(LIST, body(service), format="json"), again)


def test_the_outsider_asks_about_the_same_service_though_alice_has_it_open(api, alice, bob, service, consult):
    """One open consultation per user and service: another user's does not hold bob back, nor tell him
    anything of it."""
    alices = consult("pending")

    response = api(bob).post(LIST, body(service), format="json")

    assert response.status_code == 201, response.json()
    bobs = Consultation.objects.get(user=bob)
    assert response.json()["consultation"]["id"] == bobs.pk != alices.pk
    assert Consultation.objects.filter(status="pending").count() == 2


def test_an_open_consultation_holds_back_only_its_own_service(api, alice, victor, service, make_service, consult):
    consult("pending")
    other = make_service("per_minute", vendor=victor)

    response = api(alice).post(LIST, body(other), format="json")

    assert response.status_code == 201, response.json()
    assert Consultation.objects.filter(user=alice, status="pending").count() == 2
