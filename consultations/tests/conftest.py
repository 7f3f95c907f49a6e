"""Consultation fixtures: victor's service, consultations in any status, committed side effects."""

from __future__ import annotations

from functools import partial

import pytest
from django.test import TestCase

from consultations import services
from consultations.models import Consultation, ConsultationStatus
from marketplace.services import service_delete, service_set_active
from streaming.tests.conftest import USDC, clock, make_service  # noqa: F401
from wallets.models import Asset

LIST = "/api/v1/consultations"
INBOX = "/api/v1/consultations/vendor/inbox"


def detail_url(consultation) -> str:
    return f"{LIST}/{consultation.pk}"


def message_url(consultation) -> str:
    return f"{LIST}/{consultation.pk}/message"


def status_url(consultation) -> str:
    return f"{LIST}/{consultation.pk}/status"


def call_url(consultation, action: str) -> str:
    return f"{LIST}/{consultation.pk}/call/{action}"


def token_deactivate(*, service) -> None:
    """Staff deactivate the token a service is sold in (in the admin). Not USDC: the default token
    stays active."""
    Asset.objects.filter(code=service.token).update(is_active=False)


# Each way a consultation's service stops taking calls: unavailable(service=...).
service_unavailable = pytest.mark.parametrize(
    "unavailable",
    [partial(service_set_active, is_active=False), service_delete, token_deactivate],
    ids=["deactivated", "deleted", "token_deactivated"],
)


def committed():
    """`with committed():` runs what the block queued with on_commit, as a real commit would."""
    return TestCase.captureOnCommitCallbacks(execute=True)


@pytest.fixture
def service(make_service):  # noqa: F811 (the fixture imported above)
    """Victor's consultation service: 1 USDC a minute."""
    return make_service("per_minute", rate=USDC)


@pytest.fixture
def consult(alice, service):
    """consult(status="pending", user=alice, service=victor's, text=...) -> a Consultation brought to
    `status` through the services (an `active` one has a funded running call)."""

    def make(status: str = ConsultationStatus.PENDING, *, user=None, service=service, text="Hello, can we talk?"):
        user = user or alice
        vendor = service.vendor
        with committed():
            consultation, _ = services.consultation_create(
                user=user, vendor_id=vendor.pk, service_id=service.pk, initial_message=text
            )
            steps = {
                ConsultationStatus.PENDING: [],
                ConsultationStatus.ACCEPTED: [(vendor, ConsultationStatus.ACCEPTED)],
                ConsultationStatus.ACTIVE: [(vendor, ConsultationStatus.ACCEPTED)],
                ConsultationStatus.REJECTED: [(vendor, ConsultationStatus.REJECTED)],
                ConsultationStatus.CANCELLED: [(user, ConsultationStatus.CANCELLED)],
                ConsultationStatus.COMPLETED: [
                    (vendor, ConsultationStatus.ACCEPTED),
                    (vendor, ConsultationStatus.COMPLETED),
                ],
            }[status]
            for actor, step in steps:
                services.consultation_status_change(consultation=consultation, actor=actor, status=step)
            if status == ConsultationStatus.ACTIVE:
                from wallets.tests.conftest import fund_wallet

                fund_wallet(user, 10 * USDC)
                services.consultation_call_start(consultation=consultation, actor=user)
        return Consultation.objects.get(pk=consultation.pk)

    return make
