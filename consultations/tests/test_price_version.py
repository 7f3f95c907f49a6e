"""A consultation's call starts on the price its user was shown, as any session does
(streaming/tests/test_price_version.py): a stale priceVersion is a 409 price_changed that starts,
holds and charges nothing and leaves the consultation accepted."""

from __future__ import annotations

import pytest

from consultations.models import ConsultationCall
from consultations.tests.conftest import call_url, detail_url
from marketplace.models import Service
from marketplace.services import service_update
from streaming.models import StreamingSession
from streaming.tests.conftest import USDC
from streaming.tests.test_price_version import money_state

pytestmark = pytest.mark.django_db


def call_start(client, consultation, data):
    return client.post(call_url(consultation, "start"), data, format="json")


def test_the_consultation_shows_its_services_price_version(api, alice, consult, service):
    consultation = consult("accepted")
    service_update(service=Service.objects.get(pk=service.pk), rate=2 * USDC)

    shown = api(alice).get(detail_url(consultation)).json()
    listed = api(alice).get("/api/v1/consultations").json()

    assert shown["consultation"]["service"]["priceVersion"] == 2
    assert listed["consultations"][0]["service"]["priceVersion"] == 2


def test_a_call_on_the_price_shown_starts(api, alice, fund, consult):
    fund(alice, 10 * USDC)
    consultation = consult("accepted")

    response = call_start(api(alice), consultation, {"priceVersion": 1})

    assert response.status_code == 201, response.json()
    assert response.json()["session"]["rate"] == "1.000000"


def test_a_call_on_a_price_changed_since_it_was_shown_is_409_and_moves_nothing(api, alice, fund, consult, service):
    fund(alice, 10 * USDC)
    consultation = consult("accepted")
    service_update(service=Service.objects.get(pk=service.pk), rate=4 * USDC, free_seconds=5)
    before = money_state()

    response = call_start(api(alice), consultation, {"priceVersion": 1})

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "price_changed"
    assert (body["priceVersion"], body["rate"], body["unit"], body["token"], body["freeSeconds"]) == (
        2,
        "4.000000",
        "per_minute",
        "USDC",
        5,
    )
    assert money_state() == before
    assert not ConsultationCall.objects.exists()
    assert api(alice).get(detail_url(consultation)).json()["consultation"]["status"] == "accepted"


def test_a_call_that_names_no_version_starts_on_the_current_price(api, alice, fund, consult, service):
    fund(alice, 10 * USDC)
    consultation = consult("accepted")
    service_update(service=Service.objects.get(pk=service.pk), rate=2 * USDC)

    response = call_start(api(alice), consultation, {})

    assert response.status_code == 201
    assert StreamingSession.objects.get().rate == 2 * USDC


def test_the_outsider_rule_holds_for_a_call(api, bob, fund, consult, service):
    """Someone else's consultation is unknown (404) whatever the body names, its price included."""
    fund(bob, 10 * USDC)
    consultation = consult("accepted")
    service_update(service=Service.objects.get(pk=service.pk), rate=2 * USDC)
    before = money_state()

    response = call_start(api(bob), consultation, {"priceVersion": 1})

    assert response.status_code == 404
    assert "rate" not in response.json()
    assert money_state() == before
