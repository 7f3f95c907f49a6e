"""PATCH /consultations/<id>/status: every allowed and every refused transition, by each side."""

from __future__ import annotations

import itertools

import pytest

from consultations.models import Consultation, ConsultationStatus
from consultations.selectors import running_call_of
from consultations.tests.conftest import service_unavailable, status_url
from notifications.models import Notification
from streaming.models import SessionStatus, StopReason, StreamingSession

pytestmark = pytest.mark.django_db

STATUSES = ConsultationStatus.values
ALLOWED = {
    ("pending", "accepted", "vendor"),
    ("pending", "rejected", "vendor"),
    ("pending", "cancelled", "user"),
    ("accepted", "completed", "vendor"),
    ("accepted", "cancelled", "user"),
    ("active", "completed", "vendor"),
}
REFUSED = sorted(set(itertools.product(STATUSES, STATUSES, ["user", "vendor"])) - ALLOWED)


def snapshot(consultation: Consultation) -> tuple:
    consultation = Consultation.objects.get(pk=consultation.pk)
    running = running_call_of(consultation)
    return (
        consultation.status,
        consultation.updated_at,
        consultation.accepted_at,
        consultation.closed_at,
        running.pk if running else None,
        Notification.objects.count(),
        StreamingSession.objects.filter(status=SessionStatus.ACTIVE).count(),
    )


@pytest.mark.parametrize(("before", "after", "side"), sorted(ALLOWED))
def test_allowed_transitions(api, alice, victor, consult, before, after, side):
    consultation = consult(before)
    actor, other = (victor, alice) if side == "vendor" else (alice, victor)
    notified_before = Notification.objects.filter(user=other, type="consultation").count()
    actor_notified_before = Notification.objects.filter(user=actor, type="consultation").count()

    response = api(actor).patch(status_url(consultation), {"status": after}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["consultation"]["status"] == after
    assert response.json()["message"] == f"Consultation {after}."
    consultation.refresh_from_db()
    assert consultation.status == after
    assert (consultation.accepted_at is not None) == (after == "accepted" or before in ("accepted", "active"))
    assert (consultation.closed_at is not None) == (after != "accepted")
    # The other participant hears about it; the one who changed it does not.
    notification = Notification.objects.filter(user=other, type="consultation").latest("id")
    assert Notification.objects.filter(user=other, type="consultation").count() == notified_before + 1
    assert notification.title == f"Consultation {after}"
    assert notification.data == {"consultationId": consultation.pk, "status": after}
    assert Notification.objects.filter(user=actor, type="consultation").count() == actor_notified_before


@pytest.mark.parametrize(("before", "after", "side"), REFUSED)
def test_every_other_transition_is_a_409_and_changes_nothing(api, alice, victor, consult, before, after, side):
    consultation = consult(before)
    state = snapshot(consultation)

    response = api(victor if side == "vendor" else alice).patch(
        status_url(consultation), {"status": after}, format="json"
    )

    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "invalid_transition"
    assert response.json()["status"] == before
    assert snapshot(consultation) == state


def test_the_refusal_says_why(api, alice, victor, consult):
    rejected, consultation = consult("rejected"), consult()

    by_user = api(alice).patch(status_url(consultation), {"status": "accepted"}, format="json").json()
    closed = api(victor).patch(status_url(rejected), {"status": "accepted"}, format="json").json()

    assert by_user["message"] == "Only the consultation's vendor can make it accepted."
    assert closed["message"] == "A consultation that is rejected cannot become accepted."


def test_completing_during_a_call_stops_the_call_first(api, alice, victor, consult):
    consultation = consult("active")
    session = running_call_of(consultation)

    response = api(victor).patch(status_url(consultation), {"status": "completed"}, format="json")

    assert response.status_code == 200
    session.refresh_from_db()
    assert session.status == SessionStatus.STOPPED
    assert session.stop_reason == StopReason.VENDOR
    (call,) = response.json()["consultation"]["calls"]
    assert call["status"] == "stopped"
    assert call["endTime"] is not None


@service_unavailable
def test_a_consultation_whose_service_takes_no_calls_is_not_accepted(api, victor, consult, make_service, unavailable):
    # Accepted, it would be a dead end: every call on it is refused (service_unavailable).
    consultation = consult(service=make_service(token="USDT"))
    unavailable(service=consultation.service)
    state = snapshot(consultation)

    response = api(victor).patch(status_url(consultation), {"status": "accepted"}, format="json")

    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "service_unavailable"
    assert response.json()["message"] == "This consultation's service is no longer offered."
    assert snapshot(consultation) == state
    # What is left to do with it still works: the vendor declines it (or its user cancels it).
    assert api(victor).patch(status_url(consultation), {"status": "rejected"}, format="json").status_code == 200


@pytest.mark.parametrize("status", ["archived", "", "ACCEPTED", None, 1, ["accepted"]])
def test_unknown_statuses_are_a_400(api, victor, consult, status):
    consultation = consult()
    state = snapshot(consultation)

    response = api(victor).patch(status_url(consultation), {"status": status}, format="json")

    assert response.status_code == 400
    assert "status" in response.json()["errors"]
    assert snapshot(consultation) == state


@pytest.mark.parametrize("who", ["bob", "wanda", "stan"])
def test_outsiders_get_a_404(api, bob, wanda, stan, consult, who):
    consultation = consult()
    state = snapshot(consultation)

    response = api({"bob": bob, "wanda": wanda, "stan": stan}[who]).patch(
        status_url(consultation), {"status": "cancelled"}, format="json"
    )

    assert response.status_code == 404
    assert snapshot(consultation) == state


def test_staff_cannot_change_it(api, olga, consult):
    consultation = consult()
    state = snapshot(consultation)

    response = api(olga).patch(status_url(consultation), {"status": "accepted"}, format="json")

    assert response.status_code == 403
    assert snapshot(consultation) == state


def test_anonymous_is_401(anon, consult):
    consultation = consult()

    assert anon.patch(status_url(consultation), {"status": "cancelled"}, format="json").status_code == 401
    assert Consultation.objects.get().status == "pending"
