"""The operators' admin: delivery state at a glance, escaped bodies, sending, re-sending failures."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from rest_framework.exceptions import ValidationError

from accounts.models import User
from accounts.services import user_create
from accounts.tests.conftest import while_writing
from conftest import PASSWORD, money_db
from notifications import notify, services
from notifications.models import DeliveryStatus, Notification
from notifications.tests.conftest import twilio_message, verify_phone

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/notifications/notification/"
SEND = "/admin/notifications/notification/send/"


def _token() -> dict[str, str]:
    """The form_token a send form is served with (a new one each time)."""
    return {"form_token": uuid.uuid4().hex}


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
    form = {"role": "user", "type": "payment", "title": "Fees change", "message": "From 1 July.", **_token()}

    with committed():
        response = admin_client_for(root).post(SEND, form, follow=True)

    assert response.redirect_chain[-1][0] == CHANGELIST
    assert "Notification sent to 2 user(s)." in response.content.decode()
    sent = Notification.objects.all()
    assert {n.user_id for n in sent} == {alice.pk, bob.pk}
    assert {n.sent_by_id for n in sent} == {root.pk}
    assert sorted(m.to[0] for m in mailoutbox) == [alice.email, bob.email]


def test_send_to_one_user(admin_client_for, root, alice, bob):
    form = {"user_email": "ALICE@example.com", "type": "system", "title": "Hello", "message": "Hi.", **_token()}

    response = admin_client_for(root).post(SEND, form)

    assert response.status_code == 302
    assert list(Notification.objects.values_list("user", flat=True)) == [alice.pk]


@pytest.mark.parametrize(
    "target",
    [{}, {"role": "user", "user_email": "alice@example.com"}, {"user_email": "nobody@example.com"}],
)
def test_send_form_refuses_a_bad_target(admin_client_for, root, alice, target):
    form = {**target, "type": "system", "title": "Hi", "message": "Hi.", **_token()}
    response = admin_client_for(root).post(SEND, form)

    assert response.status_code == 200  # the form again, with its errors
    assert response.context["form"].errors
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("text", "field"),
    [({"title": "\u200b", "message": "Hi."}, "title"), ({"title": "Hi", "message": "\u202e"}, "message")],
)
def test_send_form_refuses_invisible_text(admin_client_for, root, alice, text, field):
    """Text that shows nothing passed the form and the service refused it with a ValueError: a 500."""
    form = {"user_email": alice.email, "type": "system", **text, **_token()}
    response = admin_client_for(root).post(SEND, form)

    assert response.status_code == 200  # the form again, with its errors
    assert response.context["form"].errors == {
        field: ["Use visible characters only (no control, zero-width or text-direction characters)."]
    }
    assert not Notification.objects.exists()


def test_staff_need_the_permission_to_send(admin_client_for, alice):
    # Platform admins are superusers; a plain staff member needs the permission.
    olga = user_create(email="sam@example.com", password="x-Very-long-pw-1", name="Sam", is_staff=True)
    client = admin_client_for(olga)

    assert client.get(SEND).status_code == 403
    form = {"role": "user", "type": "system", "title": "Hi", "message": "Hi.", **_token()}
    assert client.post(SEND, form).status_code == 403
    assert not Notification.objects.exists()

    olga.user_permissions.add(Permission.objects.get(codename="add_notification"))

    assert Client().get(SEND).status_code == 302  # not logged in: to the login page
    assert admin_client_for(User.objects.get(pk=olga.pk)).get(SEND).status_code == 200


@pytest.mark.parametrize(
    "target", [{"role": "user"}, {"user_email": "alice@example.com"}], ids=["to a role", "to one user"]
)
def test_a_send_form_posted_twice_sends_once_and_says_so(
    admin_client_for, root, alice, bob, committed, mailoutbox, target
):
    """A double click (or a reload that sends the form again) sent every notification, email and
    SMS twice. The form is served with a token that the send records: the second post sends nothing
    and tells the operator why."""
    client = admin_client_for(root)
    page = client.get(SEND)
    token = page.context["form"]["form_token"].initial
    form = {**target, "type": "payment", "title": "Hi", "message": "Fees change tonight", "form_token": token}
    recipients = 2 if "role" in target else 1

    with committed():
        first = client.post(SEND, form, follow=True)
    with committed():
        again = client.post(SEND, form, follow=True)

    assert f'name="form_token" value="{token}"' in page.content.decode()
    assert f"Notification sent to {recipients} user(s)." in first.content.decode()
    assert again.redirect_chain[-1][0] == CHANGELIST
    assert f"This form was sent already, to {recipients} user(s): nothing was sent again." in again.content.decode()
    assert Notification.objects.filter(title="Hi").count() == recipients
    assert len(mailoutbox) == recipients
    assert client.get(SEND).context["form"]["form_token"].initial != token  # a new form sends again


def test_a_send_form_without_its_token_sends_nothing(admin_client_for, root, alice):
    form = {"role": "user", "type": "system", "title": "Hi", "message": "Hi."}

    response = admin_client_for(root).post(SEND, form)

    assert response.status_code == 200  # the form again
    assert "form_token" in response.context["form"].errors
    assert not Notification.objects.exists()


@money_db
def test_a_send_form_posted_twice_at_once_sends_once(olga, alice):
    """Two posts of one form at once: the second waits on the first's token until it commits."""
    token = uuid.uuid4().hex
    admin = Client(raise_request_exception=False)
    admin.force_login(olga)
    form = {"user_email": alice.email, "type": "system", "title": "Hi", "message": "Hi.", "form_token": token}
    send = dict(sent_by=olga, user_id=alice.pk, type="system", title="Hi", message="Hi.", form_token=token)

    answer = while_writing(lambda: services.notification_send(**send), lambda: admin.post(SEND, form))

    assert answer.status_code == 302
    assert [str(m) for m in get_messages(answer.wsgi_request)] == [
        "This form was sent already, to 1 user(s): nothing was sent again."
    ]
    assert Notification.objects.filter(user=alice, title="Hi").count() == 1


def test_a_send_that_fails_leaves_its_form_free_to_send(root, alice):
    token = uuid.uuid4().hex
    send = dict(sent_by=root, type="system", title="Hi", message="Hi.", form_token=token)
    alice.is_active = False
    alice.save(update_fields=["is_active"])

    with pytest.raises(ValidationError):
        services.notification_send(user_id=alice.pk, **send)
    alice.is_active = True
    alice.save(update_fields=["is_active"])

    assert services.notification_send(user_id=alice.pk, **send) == 1
    with pytest.raises(services.AlreadySent):
        services.notification_send(user_id=alice.pk, **send)
    assert Notification.objects.filter(user=alice).count() == 1


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


def test_a_twilio_message_sid_finds_its_notification(admin_client_for, root, alice, bob, committed, twilio):
    verify_phone(alice)
    verify_phone(bob)
    sid = "SM" + "0123456789abcdef" * 2
    twilio.respond(twilio_message(sid), twilio_message("SM" + "f" * 32))
    with committed():
        texted = notify(alice, "alert", "Low balance", "Top up.")
        notify(bob, "alert", "Low balance", "Top up.")
    notify(alice, "payment", "Paid", "Paid.")
    client = admin_client_for(root)

    for term in (sid, f"  {sid.upper()} ", "sm" + sid[2:]):
        found = client.get(CHANGELIST, {"q": term}).context["cl"].result_list
        assert [n.pk for n in found] == [texted.pk], term
    # A SID nobody was sent finds nothing; a partial one is not a SID (searched as a name: no one).
    assert not client.get(CHANGELIST, {"q": "SM" + "1" * 32}).context["cl"].result_list
    assert not client.get(CHANGELIST, {"q": sid[:20]}).context["cl"].result_list
    page = client.get(CHANGELIST).content.decode()
    assert "Twilio message SID" in page
