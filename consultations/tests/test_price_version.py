"""A consultation's call starts on the price its user was shown, as any session does
(streaming/tests/test_price_version.py): a stale priceVersion is a 409 price_changed that starts,
holds and charges nothing and leaves the consultation accepted."""

from __future__ import annotations

import pytest

from accounts.tests.conftest import while_writing
from conftest import client_for, money_db
from consultations.models import ConsultationCall
from consultations.tests.conftest import call_url, detail_url
from marketplace.models import Service
from marketplace.services import service_update
from streaming.models import StreamingSession
from streaming.tests.conftest import USDC
from streaming.tests.test_price_version import eth_priced_service, money_state, reprice_in_usdc
from wallets.tests.conftest import fund_wallet

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


@money_db
def test_a_calls_max_cost_is_read_in_the_token_of_the_terms_the_call_locked(alice, victor, make_service, consult):
    """As a session's (streaming/tests/test_price_version.py): the view converted maxCost with the
    decimals of the service's token read before the lock, and the call opened in the token the
    locked terms named: 0.01 ETH's 10^16 minor units became a cap of ten billion USDC."""
    service = eth_priced_service(make_service)
    consultation = consult("accepted", service=service)
    fund_wallet(alice, 10 * USDC)
    client = client_for(alice)

    response = while_writing(
        lambda: reprice_in_usdc(service), lambda: call_start(client, consultation, {"maxCost": "0.01"})
    )

    assert response.status_code == 201, response.json()
    session = StreamingSession.objects.select_related("asset", "hold").get()
    assert (session.asset.code, session.max_cost, session.hold.amount) == ("USDC", 10_000, 10_000)
    assert response.json()["session"]["maxCost"] == "0.010000"


@money_db
def test_a_calls_max_cost_too_precise_for_the_token_the_call_locked_is_400_and_moves_nothing(
    alice, victor, make_service, consult
):
    service = eth_priced_service(make_service)
    consultation = consult("accepted", service=service)
    fund_wallet(alice, 10 * USDC)
    client = client_for(alice)
    before = money_state()

    response = while_writing(
        lambda: reprice_in_usdc(service), lambda: call_start(client, consultation, {"maxCost": "0.0000001"})
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["errors"] == {"maxCost": ["Must have at most 6 decimal places."]}
    assert money_state() == before
    assert not ConsultationCall.objects.exists()
