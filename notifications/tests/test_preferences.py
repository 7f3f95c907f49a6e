"""GET and PATCH /notifications/preferences: each type's channels, defaults until the user chooses."""

from __future__ import annotations

import pytest

from notifications import notify
from notifications.models import NotificationPreference
from notifications.tests.conftest import verify_phone

pytestmark = pytest.mark.django_db

PREFERENCES = "/api/v1/notifications/preferences"

DEFAULTS = {
    "session": {"inApp": True, "email": False, "sms": False},
    "payment": {"inApp": True, "email": True, "sms": False},
    "alert": {"inApp": True, "email": True, "sms": True},
    "consultation": {"inApp": True, "email": True, "sms": False},
    "system": {"inApp": True, "email": False, "sms": False},
}


def test_defaults(api, alice):
    response = api(alice).get(PREFERENCES)

    assert response.status_code == 200
    assert response.json() == {"preferences": DEFAULTS, "verifiedPhone": False}
    assert not NotificationPreference.objects.exists()


def test_verified_phone_is_reported(api, alice):
    verify_phone(alice)

    assert api(alice).get(PREFERENCES).json()["verifiedPhone"] is True


def test_patch_changes_only_what_is_given(api, alice):
    response = api(alice).patch(
        PREFERENCES, {"preferences": {"payment": {"sms": True}, "alert": {"email": False}}}, format="json"
    )

    assert response.status_code == 200
    expected = {
        **DEFAULTS,
        "payment": {"inApp": True, "email": True, "sms": True},
        "alert": {"inApp": True, "email": False, "sms": True},
    }
    assert response.json()["preferences"] == expected
    assert api(alice).get(PREFERENCES).json()["preferences"] == expected

    api(alice).patch(PREFERENCES, {"preferences": {"payment": {"email": False}}}, format="json")

    payment = api(alice).get(PREFERENCES).json()["preferences"]["payment"]
    assert payment == {"inApp": True, "email": False, "sms": True}  # the earlier sms choice stays
    assert NotificationPreference.objects.filter(user=alice).count() == 2


def test_preferences_are_per_user(api, alice, bob):
    api(alice).patch(PREFERENCES, {"preferences": {"system": {"email": True}}}, format="json")

    assert api(bob).get(PREFERENCES).json()["preferences"] == DEFAULTS


def test_patch_drives_notify(api, alice, committed, mailoutbox):
    verify_phone(alice)
    api(alice).patch(PREFERENCES, {"preferences": {"alert": {"email": False, "sms": False}}}, format="json")

    with committed():
        notification = notify(alice, "alert", "Low balance", "About 4 minutes left.")

    notification.refresh_from_db()
    assert (notification.email_status, notification.sms_status) == ("not_requested", "not_requested")
    assert mailoutbox == []
    assert api(alice).get("/api/v1/notifications").json()["count"] == 1  # in-app is always on


@pytest.mark.parametrize(
    "body",
    [
        {"preferences": {"alert": {"inApp": False}}},
        {"preferences": {"bogus": {"email": True}}},
        {"preferences": {"alert": {"push": True}}},
        {"preferences": {"alert": {"email": "perhaps"}}},
        {"preferences": {"alert": True}},
        {"preferences": []},
        {},
    ],
)
def test_bad_patches_are_a_400_and_change_nothing(api, alice, body):
    response = api(alice).patch(PREFERENCES, body, format="json")

    assert response.status_code == 400
    assert "preferences" in response.json()["errors"]
    assert not NotificationPreference.objects.exists()


def test_in_app_true_is_accepted(api, alice):
    response = api(alice).patch(PREFERENCES, {"preferences": {"alert": {"inApp": True}}}, format="json")

    assert response.status_code == 200
    assert response.json()["preferences"] == DEFAULTS
    assert not NotificationPreference.objects.exists()


def test_preferences_need_a_login(anon):
    assert anon.get(PREFERENCES).status_code == 401
    assert anon.patch(PREFERENCES, {"preferences": {"alert": {"sms": False}}}, format="json").status_code == 401


def test_session_notifications_stay_in_app_by_default_money_ones_are_emailed(victor, committed, mailoutbox):
    """A vendor with a thousand sessions a day was sent two thousand emails ("New session", "Session
    ended"): by default a session's start and end are in-app only; payments and alerts are emailed."""
    with committed():
        started = notify(victor, "session", "New session", "Alice started a session on Lessons.")
        paid = notify(victor, "payment", "Payout sent", "12.500000 USDC left for your bank.")

    started.refresh_from_db()
    paid.refresh_from_db()
    assert (started.email_status, started.sms_status) == ("not_requested", "not_requested")
    assert paid.email_status == "sent"
    assert [message.subject for message in mailoutbox] == ["Payout sent"]


def test_a_choice_made_under_the_old_default_is_kept(api, victor, committed, mailoutbox):
    """Only the default changed: a stored choice (session emails on) is the user's, and stays."""
    NotificationPreference.objects.create(user=victor, type="session", email=True, sms=False)

    with committed():
        started = notify(victor, "session", "New session", "Alice started a session on Lessons.")

    started.refresh_from_db()
    assert started.email_status == "sent"
    assert api(victor).get(PREFERENCES).json()["preferences"]["session"] == {"inApp": True, "email": True, "sms": False}
