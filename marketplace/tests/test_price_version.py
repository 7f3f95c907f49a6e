"""A service's price_version: what a user was shown is named by it, and it moves with every change of
the price terms a session copies at its start (and with nothing else), so that a start can tell a
price the user never saw (streaming/tests/test_price_version.py)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from marketplace import services
from marketplace.models import PRICE_TERMS, Service
from marketplace.tests.conftest import category

pytestmark = pytest.mark.django_db

SERVICES = "/api/v1/service"
USDC = 1_000_000


def version_of(service: Service) -> int:
    return Service.objects.values_list("price_version", flat=True).get(pk=service.pk)


def test_a_new_service_is_at_its_first_price(victor, make_service):
    assert make_service(victor).price_version == 1


def test_the_price_terms_are_what_a_session_copies_at_its_start():
    assert set(PRICE_TERMS) == {
        "rate",
        "token",
        "unit",
        "minimum_charge",
        "free_seconds",
        "max_session_cost",
        "max_event_quantity",
    }
    # What a start reads under the service's lock and bills the session by: the same terms.
    assert [f.name for f in fields(services.PriceTerms)] == ["service_id", "price_version", *PRICE_TERMS]


@pytest.mark.parametrize(
    ("start", "change"),
    [
        ({}, {"rate": 2 * USDC}),
        ({}, {"unit": "per_second"}),
        ({}, {"token": "USDT", "rate": USDC}),  # the same figure, another token: another price
        ({}, {"minimum_charge": 1}),
        ({}, {"free_seconds": 30}),
        ({"unit": "per_request"}, {"max_session_cost": 50 * USDC}),
        ({"unit": "per_request"}, {"max_event_quantity": 5}),
        ({}, {"unit": "per_request"}),  # its bounds appear with the unit (the defaults)
    ],
    ids=[
        "rate",
        "unit",
        "token",
        "minimum_charge",
        "free_seconds",
        "max_session_cost",
        "max_event_quantity",
        "to_usage",
    ],
)
def test_every_change_of_a_price_term_moves_the_version_once(victor, make_service, start, change):
    service = make_service(victor, **start)

    updated = services.service_update(service=service, **change)

    assert updated.price_version == version_of(service) == 2


@pytest.mark.parametrize(
    "change",
    [
        {"name": "Renamed"},
        {"description": "Now with a view."},
        {"tags": ["new"]},
        {"metadata": {"room": "B"}},
        {"type": "video"},
        {"category": "Usage-Based"},
        {"is_active": False},
        {"rate": USDC, "free_seconds": 0},  # the same terms again: nothing changed
    ],
    ids=["name", "description", "tags", "metadata", "type", "category", "is_active", "same_terms"],
)
def test_what_is_not_the_price_leaves_the_version(victor, make_service, change):
    service = make_service(victor)
    if "category" in change:
        change = {**change, "category": category(change["category"])}

    services.service_update(service=service, **change)

    assert version_of(service) == 1


def test_activating_deactivating_and_toggling_leave_the_version(victor, make_service):
    service = make_service(victor)

    services.service_set_active(service=service, is_active=False)
    services.service_toggle_status(service=service)

    assert version_of(service) == 1


def test_two_updates_from_copies_read_before_either_each_move_the_version(victor, make_service):
    """Counted in the database (F()), not from the copy in memory: two vendors' tabs that read the
    service at version 1 and each change its price leave it at 3, never at 2 (a price the second
    tab's reader would wrongly take as the one he was shown)."""
    service = make_service(victor)
    first, second = Service.objects.get(pk=service.pk), Service.objects.get(pk=service.pk)

    services.service_update(service=first, rate=2 * USDC)
    services.service_update(service=second, rate=3 * USDC)

    assert version_of(service) == 3
    assert (first.price_version, second.price_version) == (2, 3)


def test_the_api_shows_the_version_everywhere_it_shows_the_service(api, anon, victor, make_service):
    service = make_service(victor)
    services.service_update(service=service, rate=2 * USDC)

    listed = anon.get(SERVICES).json()
    shown = anon.get(f"{SERVICES}/{service.pk}").json()
    mine = api(victor).get(f"{SERVICES}/vendor/my-services").json()
    updated = api(victor).patch(f"{SERVICES}/{service.pk}", {"rate": "3"}, format="json").json()

    assert [s["priceVersion"] for s in listed["services"]] == [2]
    assert shown["service"]["priceVersion"] == 2
    assert [s["priceVersion"] for s in mine["services"]] == [2]
    assert updated["service"]["priceVersion"] == 3


def test_a_client_cannot_set_the_version(api, victor, make_service):
    service = make_service(victor)

    response = api(victor).patch(f"{SERVICES}/{service.pk}", {"priceVersion": 99, "name": "New"}, format="json")

    assert response.status_code == 200
    assert response.json()["service"]["priceVersion"] == version_of(service) == 1


def test_an_api_change_of_the_price_moves_the_version_and_a_change_of_words_does_not(api, victor, make_service):
    service = make_service(victor)
    client = api(victor)

    worded = client.patch(f"{SERVICES}/{service.pk}", {"description": "Better words"}, format="json")
    priced = client.patch(f"{SERVICES}/{service.pk}", {"minimumCharge": "0.5"}, format="json")

    assert worded.json()["service"]["priceVersion"] == 1
    assert priced.json()["service"]["priceVersion"] == 2


def test_the_admin_shows_the_version_and_cannot_change_the_price(client, olga, victor, make_service):
    """The admin's service page is read-only (staff act through actions that never touch the price):
    it shows the version, and a posted change of the rate is refused and changes nothing."""
    olga.is_superuser = True
    olga.save(update_fields=["is_superuser"])
    client.force_login(olga)
    service = make_service(victor)
    services.service_update(service=service, rate=2 * USDC)
    url = f"/admin/marketplace/service/{service.pk}/change/"

    page = client.get(url)
    posted = client.post(url, {"rate": "1", "name": service.name})

    assert page.status_code == 200
    assert b"Price version" in page.content
    assert posted.status_code == 403
    assert Service.objects.values_list("rate", "price_version").get(pk=service.pk) == (2 * USDC, 2)
