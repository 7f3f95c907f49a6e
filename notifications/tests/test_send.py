"""Staff sending: POST /notifications to one user or to every active user of a role (a broadcast)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from accounts.services import user_create, user_deactivate
from notifications.models import Notification, NotificationPreference
from notifications.services import notification_broadcast
from notifications.tests.conftest import twilio_message, verify_phone

pytestmark = pytest.mark.django_db

SEND = "/api/v1/notifications"


def test_staff_notifies_one_user(api, olga, alice, bob, committed, mailoutbox):
    body = {"userId": alice.pk, "type": "payment", "title": "Refund", "message": "Refunded.", "data": {"refundId": 9}}

    with committed():
        response = api(olga).post(SEND, body)

    assert response.status_code == 201
    assert response.json() == {"message": "Notification sent to 1 user.", "created": 1}
    notification = Notification.objects.get()
    assert (notification.user, notification.sent_by, notification.type) == (alice, olga, "payment")
    assert notification.data == {"refundId": 9}  # as the staff member wrote it
    assert [m.to for m in mailoutbox] == [[alice.email]]
    assert not Notification.objects.filter(user=bob).exists()


def test_type_defaults_to_system(api, olga, alice):
    response = api(olga).post(SEND, {"userId": alice.pk, "title": "Hello", "message": "Welcome."})

    assert response.status_code == 201
    assert Notification.objects.get().type == "system"


def test_staff_broadcasts_to_a_role(api, olga, alice, bob, victor, wanda, committed, mailoutbox):
    carol = user_create(email="carol@example.com", password=None, name="Carol")
    user_deactivate(user=carol)

    with committed():
        response = api(olga).post(SEND, {"role": "vendor", "type": "alert", "title": "Payouts", "message": "Delayed."})

    assert response.status_code == 201
    assert response.json() == {"message": "Notification sent to 2 users.", "created": 2}
    assert set(Notification.objects.values_list("user__email", flat=True)) == {victor.email, wanda.email}
    assert sorted(m.to[0] for m in mailoutbox) == sorted([victor.email, wanda.email])


def test_broadcast_skips_inactive_users(api, olga, alice, bob):
    user_deactivate(user=bob)

    response = api(olga).post(SEND, {"role": "user", "title": "Hello", "message": "Hi."})

    assert response.json()["created"] == 1
    assert list(Notification.objects.values_list("user", flat=True)) == [alice.pk]


def test_broadcast_respects_each_users_preferences(olga, alice, bob, committed, mailoutbox, twilio):
    verify_phone(alice, "+15551230001")
    verify_phone(bob, "+15551230002")
    NotificationPreference.objects.create(user=bob, type="alert", email=False, sms=False)
    twilio.respond(twilio_message())

    with committed():
        created = notification_broadcast(role="user", type="alert", title="Outage", message="Payments are slow.")

    assert created == 2
    by_user = {n.user_id: n for n in Notification.objects.all()}
    assert (by_user[alice.pk].email_status, by_user[alice.pk].sms_status) == ("sent", "sent")
    assert (by_user[bob.pk].email_status, by_user[bob.pk].sms_status) == ("not_requested", "not_requested")
    assert [m.to for m in mailoutbox] == [[alice.email]]
    assert [r["data"]["To"] for r in twilio.requests] == ["+15551230001"]


def _users(count: int) -> None:
    for index in range(count):
        user_create(email=f"user{index}@example.com", password=None, name=f"User {index}")


@pytest.mark.parametrize("count", [2, 40])
def test_broadcast_is_set_based(olga, count, django_assert_num_queries):
    _users(count)

    # savepoint, the users, their preferences, one insert, the empty next batch, release
    with django_assert_num_queries(6):
        created = notification_broadcast(role="user", type="payment", title="Hello", message="Hi.")

    assert created == count


def test_broadcast_batches(olga, monkeypatch, committed, mailoutbox):
    monkeypatch.setattr("notifications.services.BROADCAST_BATCH", 3)
    monkeypatch.setattr("notifications.services.DISPATCH_CHUNK", 2)
    _users(7)

    with committed():
        created = notification_broadcast(role="user", type="payment", title="Hello", message="Hi.")

    assert created == 7
    assert Notification.objects.filter(email_status="sent").count() == 7
    assert len(mailoutbox) == 7


def test_outsiders_cannot_send(api, alice, victor):
    for user in (alice, victor):
        response = api(user).post(SEND, {"userId": user.pk, "title": "Free money", "message": "Click here."})

        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
    assert not Notification.objects.exists()


@pytest.fixture
def sam(db):
    """A plain staff member: may log into the admin, holds no permission (olga is a superuser)."""
    return user_create(email="sam@example.com", password=None, name="Sam", is_staff=True)


def test_staff_without_the_send_permission_cannot_send(api, sam, alice, bob, mailoutbox):
    for target in ({"role": "user"}, {"userId": alice.pk}):
        response = api(sam).post(SEND, {**target, "title": "Hi", "message": "Hi."})

        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
    assert not Notification.objects.exists()
    assert mailoutbox == []


def test_staff_granted_the_send_permission_can_send(api, sam, alice, victor, wanda, committed, mailoutbox):
    sam.user_permissions.add(
        Permission.objects.get(content_type__app_label="notifications", codename="add_notification")
    )

    with committed():
        response = api(sam).post(SEND, {"role": "vendor", "title": "Hi", "message": "Hi."})

    assert response.status_code == 201
    assert response.json()["created"] == 2
    assert set(Notification.objects.values_list("user", "sent_by")) == {(victor.pk, sam.pk), (wanda.pk, sam.pk)}


def test_anonymous_cannot_send(anon, alice):
    assert anon.post(SEND, {"userId": alice.pk, "title": "Hi", "message": "Hi."}).status_code == 401
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "superhero", "title": "Hi", "message": "Hi."}, "role"),
        ({"role": "user", "type": "spam", "title": "Hi", "message": "Hi."}, "type"),
        ({"role": "user", "message": "Hi."}, "title"),
        ({"role": "user", "title": "x" * 201, "message": "Hi."}, "title"),
        ({"role": "user", "title": "Hi", "message": ""}, "message"),
        ({"role": "user", "title": "Hi", "message": "Hi.", "data": [1]}, "data"),
        ({"role": "user", "title": "Hi", "message": "Hi.", "data": {"blob": "x" * 5000}}, "data"),
    ],
)
def test_bad_requests_are_a_400(api, olga, alice, body, field):
    response = api(olga).post(SEND, body)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ({"title": "\u200b", "message": "Hello"}, "title"),  # a zero-width space
        ({"title": "Hello", "message": "\u202e"}, "message"),  # a right-to-left override
        ({"title": "\u2060\u00ad", "message": "Hello"}, "title"),  # a word joiner, a soft hyphen
        ({"title": "Refund", "message": "\u200bHello\u202e dlrow"}, "message"),  # visible text, and what hides in it
        ({"title": "Re\u200bfund", "message": "Hello"}, "title"),
    ],
)
@pytest.mark.parametrize("target", ["userId", "role"])
def test_a_title_or_message_with_invisible_characters_is_a_400_and_sends_nothing(
    api, olga, alice, mailoutbox, text, field, target
):
    """The fields took any text and the service dropped what shows nothing: a title of nothing else
    was then empty, and its ValueError a 500. They are visible text, as every text people read."""
    to = {"userId": alice.pk} if target == "userId" else {"role": "user"}

    response = api(olga).post(SEND, {**to, **text})

    assert response.status_code == 400, response.json()
    assert response.json()["statusCode"] == 400
    assert response.json()["errors"] == {
        field: ["Use visible characters only (no control, zero-width or text-direction characters)."]
    }
    assert not Notification.objects.exists()
    assert mailoutbox == []


def test_the_title_is_one_line_and_the_message_keeps_its_lines(api, olga, alice):
    response = api(olga).post(
        SEND, {"userId": alice.pk, "title": "Fees\n  change", "message": "From 1 July.\r\n\r\nThank you."}
    )

    assert response.status_code == 201
    assert Notification.objects.values_list("title", "message").get() == ("Fees change", "From 1 July.\n\nThank you.")


@pytest.mark.parametrize(
    "data",
    [
        {"note": "a\u0000b"},
        {"no\u0000te": 1},
        {"items": [{"id": 1, "tags": ["ok", "\u0000"]}]},
        {"a": {"b\u0000": None}},
    ],
)
@pytest.mark.parametrize("target", ["userId", "role"])
def test_data_holding_nul_is_a_400_and_sends_nothing(api, olga, alice, mailoutbox, data, target):
    to = {"userId": alice.pk} if target == "userId" else {"role": "user"}

    response = api(olga).post(SEND, {**to, "title": "Hi", "message": "Hi.", "data": data})

    assert response.status_code == 400
    assert response.json()["errors"] == {"data": ["Must not contain the NUL character."]}
    assert not Notification.objects.exists()
    assert mailoutbox == []


def test_data_holding_a_lone_surrogate_is_a_400_and_sends_nothing(api, olga, alice, mailoutbox):
    raw = f'{{"userId": {alice.pk}, "title": "Hi", "message": "Hi.", "data": {{"note": ["\\ud800"]}}}}'

    response = api(olga).post(SEND, data=raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "lone_surrogate"  # the body's (paygo/tests/test_lone_surrogates.py)
    assert not Notification.objects.exists()
    assert mailoutbox == []


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_data_holding_a_number_json_cannot_hold_is_a_400_and_sends_nothing(api, olga, alice, mailoutbox, number):
    raw = f'{{"userId": {alice.pk}, "title": "Hi", "message": "Hi.", "data": {{"score": {number}}}}}'

    response = api(olga).post(SEND, data=raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["message"].startswith("JSON parse error")
    assert not Notification.objects.exists()
    assert mailoutbox == []


@pytest.mark.parametrize("target", [{}, {"userId": 1, "role": "user"}])
def test_exactly_one_target(api, olga, target):
    response = api(olga).post(SEND, {**target, "title": "Hi", "message": "Hi."})

    assert response.status_code == 400
    assert response.json()["message"] == "Give either userId (one user) or role (every active user of it)."
    assert not Notification.objects.exists()


def test_unknown_or_inactive_user_is_a_400(api, olga, alice):
    user_deactivate(user=alice)

    for user_id in (alice.pk, 999999):
        response = api(olga).post(SEND, {"userId": user_id, "title": "Hi", "message": "Hi."})

        assert response.status_code == 400
        assert response.json()["errors"] == {"userId": ["No active user with this id."]}
    assert not Notification.objects.exists()
