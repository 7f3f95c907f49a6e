"""The service layer's own rules (for callers other than the API) and the database's backstops."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions

from consultations import services
from consultations.models import Consultation, Message
from paygo.api.errors import Conflict
from paygo.api.text import INVISIBLE_MESSAGE

pytestmark = pytest.mark.django_db


def test_only_users_open_consultations(victor, wanda, service):
    with pytest.raises(exceptions.PermissionDenied):
        services.consultation_create(user=wanda, vendor_id=victor.pk, service_id=service.pk, initial_message="Hi")
    assert not Consultation.objects.exists()


@pytest.mark.parametrize("body", ["", " \n", "x" * 5001, None])
def test_bodies_are_checked_by_the_service_too(alice, consult, body):
    consultation = consult()

    with pytest.raises(exceptions.ValidationError):
        services.message_send(consultation=consultation, sender=alice, body=body)
    assert Message.objects.count() == 1


@pytest.mark.parametrize("body", ["\u200b", "Pay to \u202eTDSU 001\u202c now", "a\x00b"])
def test_bodies_are_visible_text_whoever_calls(alice, victor, service, consult, body):
    consultation = consult()

    with pytest.raises(exceptions.ValidationError) as sent:
        services.message_send(consultation=consultation, sender=alice, body=body)
    with pytest.raises(exceptions.ValidationError) as opened:
        services.consultation_create(user=alice, vendor_id=victor.pk, service_id=service.pk, initial_message=body)

    assert sent.value.detail == {"message": [INVISIBLE_MESSAGE]}
    assert opened.value.detail == {"initial_message": [INVISIBLE_MESSAGE]}
    assert (Consultation.objects.count(), Message.objects.count()) == (1, 1)


def test_the_service_stores_a_body_in_its_one_form(alice, consult):
    message = services.message_send(consultation=consult(), sender=alice, body="  \uff26\uff4f\uff4f\r\n  bar  ")

    assert message.body == Message.objects.get(pk=message.pk).body == "Foo\nbar"


def test_outsiders_and_staff_cannot_act_through_the_service(bob, olga, consult):
    consultation = consult("accepted")

    for someone in (bob, olga):
        with pytest.raises(exceptions.PermissionDenied):
            services.message_send(consultation=consultation, sender=someone, body="hi")
        with pytest.raises(exceptions.PermissionDenied):
            services.consultation_status_change(consultation=consultation, actor=someone, status="completed")
        with pytest.raises(exceptions.PermissionDenied):
            services.consultation_call_start(consultation=consultation, actor=someone)
        with pytest.raises(exceptions.PermissionDenied):
            services.consultation_call_stop(consultation=consultation, actor=someone)
    assert services.messages_mark_read(consultation=consultation, reader=olga) == 0
    assert Message.objects.count() == 1


def test_an_unknown_status_is_refused_by_the_service(victor, consult):
    consultation = consult()

    with pytest.raises(exceptions.ValidationError):
        services.consultation_status_change(consultation=consultation, actor=victor, status="archived")


@pytest.mark.parametrize(
    "change",
    [
        {"status": "active"},  # derived, never stored
        {"status": "completed"},  # closed without closed_at
        {"closed_at": timezone.now()},  # open with closed_at
        {"status": "bogus", "closed_at": timezone.now()},
    ],
)
def test_the_database_keeps_statuses_consistent(consult, change):
    consultation = consult("accepted")

    with pytest.raises(IntegrityError), transaction.atomic():
        Consultation.objects.filter(pk=consultation.pk).update(**change)


def test_the_database_refuses_a_consultation_with_oneself(victor, consult):
    consultation = consult()

    with pytest.raises(IntegrityError), transaction.atomic():
        Consultation.objects.filter(pk=consultation.pk).update(user=victor)


def test_a_user_asking_twice_about_one_service_gets_the_open_consultation_back_not_a_second(alice, victor, service):
    """Two creates left two open rows: the vendor had the same request twice to accept or decline."""
    first, _ = services.consultation_create(
        user=alice, vendor_id=victor.pk, service_id=service.pk, initial_message="Hi"
    )

    with pytest.raises(Conflict) as refused:
        services.consultation_create(user=alice, vendor_id=victor.pk, service_id=service.pk, initial_message="Hi?")

    assert refused.value.detail["code"] == "consultation_open"
    assert refused.value.extra == {"consultationId": first.pk}
    assert list(Consultation.objects.values_list("pk", flat=True)) == [first.pk]
    assert list(Message.objects.values_list("body", flat=True)) == ["Hi"]


@pytest.mark.parametrize("status", ["pending", "accepted"])
def test_the_database_keeps_one_open_consultation_per_user_and_service(consult, status):
    """Whoever writes (the admin, a script): a second open row is refused by a partial unique index."""
    second = consult("cancelled" if status == "pending" else "rejected")
    consultation = consult(status)

    with pytest.raises(IntegrityError, match="consultation_one_open_per_user_service"), transaction.atomic():
        Consultation.objects.filter(pk=second.pk).update(status=status, closed_at=None)
    assert consultation.status == status
