"""The operators' admin: delivery state at a glance, escaped bodies, sending, re-sending failures."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.models import User
from accounts.services import user_create
from conftest import PASSWORD
from notifications import notify
from notifications.models import DeliveryStatus, Notification
from notifications.tests.conftest import twilio_message, verify_phone

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/notifications/notification/"
SEND = "/admin/notifications/notification/send/"


@pytest.fixture
def root(db) -> User:
    return User.objects.create_superuser(email="root@example.com", password=PASSWORD, name="Root")


@pytest.fixture
def admin_client_for():
    def login(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return login


def test_changelist_shows_delivery_state(admin_client_for, root, alice):
    notify(alice, "alert", "Low balance", "Top up.")

    response = admin_client_for(root).get(CHANGELIST)

    assert response.status_code == 200
    content = response.content.decode()
    assert "Low balance" in content
    assert "alice@example.com" in content
    assert "Send a notification" in content
    (row,) = response.context["cl"].result_list
    assert (row.email_status, row.sms_status) == ("pending", "skipped")


def test_bodies_are_escaped(admin_client_for, root, alice):
    notification = notify(alice, "system", "<script>alert('t')</script>", "<img src=x onerror=alert('m')>")

    listing = admin_client_for(root).get(CHANGELIST).content.decode()
    detail = admin_client_for(root).get(f"{CHANGELIST}{notification.pk}/change/").content.decode()

    assert "<script>alert('t')</script>" not in listing
    assert "&lt;script&gt;" in listing
    assert "<img src=x onerror" not in detail
    assert "&lt;img src=x onerror=alert(&#x27;m&#x27;)&gt;" in detail


def test_filters_and_search(admin_client_for, root, alice, bob, committed, twilio):
    verify_phone(alice)
    twilio.respond((400, {"code": 21211, "message": "Invalid 'To' number."}))
    with committed():
        failed = notify(alice, "alert", "Low balance", "Top up.")
    other = notify(bob, "payment", "Paid", "Paid.")
    client = admin_client_for(root)

    by_status = client.get(CHANGELIST, {"sms_status__exact": "failed"}).context["cl"].result_list
    by_type = client.get(CHANGELIST, {"type__exact": "payment"}).context["cl"].result_list
    by_search = client.get(CHANGELIST, {"q": "bob@example"}).context["cl"].result_list

    assert [n.pk for n in by_status] == [failed.pk]
    assert [n.pk for n in by_type] == [other.pk]
    assert [n.pk for n in by_search] == [other.pk]


def test_notifications_cannot_be_added_edited_or_deleted(admin_client_for, root, alice):
    notification = notify(alice, "system", "Hello", "Hi.")
    client = admin_client_for(root)

    assert client.get(f"{CHANGELIST}add/").status_code == 403
    assert client.get(f"{CHANGELIST}{notification.pk}/delete/").status_code == 403
    client.post(f"{CHANGELIST}{notification.pk}/change/", {"title": "Edited"})
    notification.refresh_from_db()
    assert notification.title == "Hello"


def test_send_to_a_role(admin_client_for, root, alice, bob, victor, committed, mailoutbox):
    form = {"role": "user", "type": "payment", "title": "Fees change", "message": "From 1 July."}

    with committed():
        response = admin_client_for(root).post(SEND, form, follow=True)

    assert response.redirect_chain[-1][0] == CHANGELIST
    assert "Notification sent to 2 user(s)." in response.content.decode()
    sent = Notification.objects.all()
    assert {n.user_id for n in sent} == {alice.pk, bob.pk}
    assert {n.sent_by_id for n in sent} == {root.pk}
    assert sorted(m.to[0] for m in mailoutbox) == [alice.email, bob.email]


def test_send_to_one_user(admin_client_for, root, alice, bob):
    form = {"user_email": "ALICE@example.com", "type": "system", "title": "Hello", "message": "Hi."}

    response = admin_client_for(root).post(SEND, form)

    assert response.status_code == 302
    assert list(Notification.objects.values_list("user", flat=True)) == [alice.pk]


@pytest.mark.parametrize(
    "target",
    [{}, {"role": "user", "user_email": "alice@example.com"}, {"user_email": "nobody@example.com"}],
)
def test_send_form_refuses_a_bad_target(admin_client_for, root, alice, target):
    response = admin_client_for(root).post(SEND, {**target, "type": "system", "title": "Hi", "message": "Hi."})

    assert response.status_code == 200  # the form again, with its errors
    assert response.context["form"].errors
    assert not Notification.objects.exists()


def test_staff_need_the_permission_to_send(admin_client_for, alice):
    # Platform admins are superusers; a plain staff member needs the permission.
    olga = user_create(email="sam@example.com", password="x-Very-long-pw-1", name="Sam", is_staff=True)
    client = admin_client_for(olga)

    assert client.get(SEND).status_code == 403
    assert client.post(SEND, {"role": "user", "type": "system", "title": "Hi", "message": "Hi."}).status_code == 403
    assert not Notification.objects.exists()

    olga.user_permissions.add(Permission.objects.get(codename="add_notification"))

    assert Client().get(SEND).status_code == 302  # not logged in: to the login page
    assert admin_client_for(User.objects.get(pk=olga.pk)).get(SEND).status_code == 200


def test_retry_failed_deliveries_action(admin_client_for, root, alice, committed, twilio):
    verify_phone(alice)
    twilio.respond((400, {"code": 21211, "message": "Invalid 'To' number."}))
    with committed():
        notification = notify(alice, "alert", "Low balance", "Top up.")
    twilio.respond(twilio_message("SM42"))

    with committed():
        response = admin_client_for(root).post(
            CHANGELIST, {"action": "retry_failed_deliveries", "_selected_action": [notification.pk]}, follow=True
        )

    assert "1 failed delivery(ies) queued again." in response.content.decode()
    notification.refresh_from_db()
    assert (notification.sms_status, notification.sms_sid) == (DeliveryStatus.SENT, "SM42")
