"""Browsing the marketplace: visibility, every filter, ordering, pagination and query counts."""

from __future__ import annotations

import json

import pytest
import time_machine

from conftest import grant
from marketplace.models import Service

pytestmark = pytest.mark.django_db

SERVICES = "/api/v1/service"


def ids(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [s["id"] for s in response.json()["services"]]


@pytest.fixture
def catalogue(victor, wanda, make_service):
    """Five services made a day apart (oldest first), of two vendors, tokens and units."""
    made = {}
    specs = [
        (
            "tutor",
            victor,
            {
                "name": "Maths tutor",
                "category": "Time-Based",
                "subcategory": "Pay Per Hour",
                "type": "video",
                "unit": "per_hour",
                "rate": 20_000_000,
                "tags": ["education"],
            },
        ),
        (
            "api",
            victor,
            {
                "name": "Geocoding API",
                "category": "Usage-Based",
                "subcategory": "API Calls & Compute",
                "type": "data",
                "unit": "per_request",
                "rate": 1_000,
                "description": "Addresses to maps.",
            },
        ),
        (
            "storage",
            wanda,
            {
                "name": "Cold storage",
                "category": "Usage-Based",
                "subcategory": "Storage Services",
                "type": "data",
                "unit": "per_gb",
                "rate": 50_000,
            },
        ),
        (
            "stream",
            wanda,
            {
                "name": "Concert stream",
                "category": "Time-Based",
                "subcategory": "Live Streaming",
                "type": "audio",
                "unit": "per_minute",
                "rate": 5 * 10**15,
                "token": "ETH",
            },
        ),
        (
            "design",
            wanda,
            {
                "name": "Logo design",
                "category": "Specialized Services",
                "subcategory": "Creative Services",
                "type": "other",
                "unit": "per_session",
                "rate": 2 * 10**18,
                "token": "STRK",
                "tags": ["Branding", "logos"],
            },
        ),
    ]
    for day, (key, vendor, fields) in enumerate(specs, start=1):
        with time_machine.travel(f"2026-01-{day:02d} 12:00:00Z", tick=False):
            made[key] = make_service(vendor, **fields)
    return made


def test_lists_active_services_of_active_vendors_newest_first(anon, catalogue, victor, make_service):
    make_service(victor, name="Paused", is_active=False)

    response = anon.get(SERVICES)

    assert ids(response) == [catalogue[k].pk for k in ("design", "stream", "storage", "api", "tutor")]
    body = response.json()
    assert body["count"] == 5
    assert set(body) == {"services", "count", "page", "totalPages", "next", "previous"}


@pytest.mark.parametrize("who", ["anon", "alice", "victor", "wanda", "olga"])
def test_everyone_browses_the_same_marketplace(request, anon, api, catalogue, victor, make_service, who):
    make_service(victor, name="Paused", is_active=False)
    client = anon if who == "anon" else api(request.getfixturevalue(who))

    response = client.get(SERVICES)

    assert response.status_code == 200
    assert response.json()["count"] == 5


def test_services_of_a_deactivated_vendor_are_hidden(anon, catalogue, wanda):
    wanda.is_active = False
    wanda.save(update_fields=["is_active"])

    assert ids(anon.get(SERVICES)) == [catalogue["api"].pk, catalogue["tutor"].pk]


def test_the_vendor_is_shown_by_id_and_name_never_by_email(anon, catalogue, victor):
    body = anon.get(SERVICES).json()

    assert body["services"][-1]["vendor"] == {"id": victor.pk, "name": "Victor"}
    assert "@example.com" not in json.dumps(body)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("category=Usage-Based", ["storage", "api"]),
        ("category=usage-based", ["storage", "api"]),
        ("subcategory=Live%20Streaming", ["stream"]),
        ("type=data", ["storage", "api"]),
        ("unit=per_gb", ["storage"]),
        ("token=ETH", ["stream"]),
        ("token=USDC", ["storage", "api", "tutor"]),
        ("search=maps", ["api"]),  # description
        ("search=COLD", ["storage"]),  # name, any case
        ("search=branding", ["design"]),  # tags
        ("search=%5B", []),  # "[": tags are searched as words, not as their JSON
        ("search=%5B%5D", []),
        ("search=%22", []),
        ("search=%2C", []),
        ("search=nothing-like-this", []),
        ("category=Time-Based&type=video", ["tutor"]),
        # rates are compared in whole tokens, each service in its own token
        ("minRate=0.05", ["design", "storage", "tutor"]),
        ("minRate=0.05&token=USDC", ["storage", "tutor"]),
        ("maxRate=0.005", ["stream", "api"]),
        ("minRate=0.001&maxRate=0.001", ["api"]),  # bounds are inclusive
        ("minRate=1.5&maxRate=2", ["design"]),
        ("maxRate=0.0000001", []),  # finer than USDC: nothing costs less
        ("minRate=0&maxRate=0", []),
    ],
)
def test_filters(anon, catalogue, query, expected):
    assert ids(anon.get(f"{SERVICES}?{query}")) == [catalogue[k].pk for k in expected]


def test_filter_by_vendor(anon, catalogue, victor, wanda):
    assert ids(anon.get(f"{SERVICES}?vendorId={victor.pk}")) == [catalogue["api"].pk, catalogue["tutor"].pk]
    assert len(ids(anon.get(f"{SERVICES}?vendorId={wanda.pk}"))) == 3
    assert ids(anon.get(f"{SERVICES}?vendorId=999999")) == []


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("createdAt", ["tutor", "api", "storage", "stream", "design"]),
        ("-createdAt", ["design", "stream", "storage", "api", "tutor"]),
        ("created_at", ["tutor", "api", "storage", "stream", "design"]),
        ("name", ["storage", "stream", "api", "design", "tutor"]),
        ("-name", ["tutor", "design", "api", "stream", "storage"]),
        # 0.001 USDC < 0.005 ETH < 0.05 USDC < 2 STRK < 20 USDC
        ("rate", ["api", "stream", "storage", "design", "tutor"]),
        ("-rate", ["tutor", "design", "storage", "stream", "api"]),
    ],
)
def test_ordering(anon, catalogue, ordering, expected):
    assert ids(anon.get(f"{SERVICES}?ordering={ordering}")) == [catalogue[k].pk for k in expected]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("category=Astrology", "category"),
        ("subcategory=Nope", "subcategory"),
        ("type=film", "type"),
        ("unit=per_year", "unit"),
        ("token=DOGE", "token"),
        ("minRate=abc", "minRate"),
        ("minRate=-1", "minRate"),
        ("maxRate=NaN", "maxRate"),
        ("minRate=2&maxRate=1", "maxRate"),
        ("vendorId=abc", "vendorId"),
        ("ordering=password", "ordering"),
        ("includeInactive=maybe", "includeInactive"),
        (f"search={'x' * 101}", "search"),
    ],
)
def test_bad_filters_are_400(anon, catalogue, query, field):
    response = anon.get(f"{SERVICES}?{query}")

    assert response.status_code == 400
    assert field in response.json()["errors"]


@pytest.mark.parametrize("query", ["category=%00", "subcategory=%00", "category=Time-Based%00"])
def test_a_filter_holding_nul_is_400(anon, catalogue, query):
    response = anon.get(f"{SERVICES}?{query}")

    assert response.status_code == 400
    field = query.split("=")[0]
    assert response.json()["errors"] == {field: ["Must not contain the NUL character."]}


def test_pagination(anon, victor, make_service):
    for n in range(25):
        make_service(victor, name=f"S{n:02d}")

    first = anon.get(f"{SERVICES}?pageSize=10").json()
    third = anon.get(f"{SERVICES}?pageSize=10&page=3").json()
    second = anon.get(f"{SERVICES}?pageSize=5&page=2").json()
    default = anon.get(SERVICES).json()

    assert (first["count"], first["page"], first["totalPages"], len(first["services"])) == (25, 1, 3, 10)
    assert first["next"].endswith("page=2&pageSize=10")
    assert first["previous"] is None
    assert (third["page"], len(third["services"]), third["next"]) == (3, 5, None)
    assert [s["name"] for s in second["services"]] == ["S19", "S18", "S17", "S16", "S15"]
    assert len(default["services"]) == 20
    assert anon.get(f"{SERVICES}?page=9").status_code == 404


def test_filters_survive_pagination_links(anon, catalogue):
    body = anon.get(f"{SERVICES}?type=data&pageSize=1").json()

    assert body["count"] == 2
    assert "type=data" in body["next"]


# --- includeInactive ----------------------------------------------------------------------------


@pytest.fixture
def mixed(victor, wanda, make_service):
    return {
        "victor_active": make_service(victor, name="V active"),
        "victor_paused": make_service(victor, name="V paused", is_active=False),
        "wanda_active": make_service(wanda, name="W active"),
        "wanda_paused": make_service(wanda, name="W paused", is_active=False),
    }


def test_include_inactive_adds_the_vendors_own_inactive_services(api, victor, mixed):
    response = api(victor).get(f"{SERVICES}?includeInactive=true")

    assert set(ids(response)) == {mixed[k].pk for k in ("victor_active", "victor_paused", "wanda_active")}


def test_include_inactive_shows_staff_everything_including_deleted(api, victor, olga, mixed):
    api(victor).delete(f"{SERVICES}/{mixed['victor_active'].pk}")

    assert set(ids(api(olga).get(f"{SERVICES}?includeInactive=true"))) == {s.pk for s in mixed.values()}
    assert set(ids(api(olga).get(SERVICES))) == {mixed["wanda_active"].pk}


def test_include_inactive_false_is_the_plain_listing(api, alice, mixed):
    assert set(ids(api(alice).get(f"{SERVICES}?includeInactive=false"))) == {
        mixed["victor_active"].pk,
        mixed["wanda_active"].pk,
    }


def test_include_inactive_shows_staff_everything_with_the_view_permission(api, stan, mixed):
    assert set(ids(api(grant(stan, "marketplace.view_service")).get(f"{SERVICES}?includeInactive=true"))) == {
        s.pk for s in mixed.values()
    }


@pytest.mark.parametrize(("who", "status"), [("anon", 401), ("alice", 403), ("stan", 403)])
def test_include_inactive_is_refused_to_others(request, anon, api, mixed, who, status):
    client = anon if who == "anon" else api(request.getfixturevalue(who))

    response = client.get(f"{SERVICES}?includeInactive=true")

    assert response.status_code == status


# --- query counts -------------------------------------------------------------------------------


@pytest.mark.parametrize("how_many", [1, 30])
def test_list_queries_are_constant(anon, api, alice, victor, make_service, django_assert_num_queries, how_many):
    for n in range(how_many):
        make_service(victor, name=f"S{n}", subcategory="Pay Per Hour", token="ETH" if n % 2 else "USDC")
    client = api(alice)

    # count + page
    with django_assert_num_queries(2):
        assert anon.get(f"{SERVICES}?pageSize=100&ordering=rate").status_code == 200
    # + the caller, for an authenticated request, + the category named in the filter
    with django_assert_num_queries(4):
        response = client.get(f"{SERVICES}?pageSize=100&search=S&category=Time-Based")
    assert len(response.json()["services"]) == how_many


@pytest.mark.parametrize("how_many", [1, 30])
def test_my_services_queries_are_constant(api, victor, make_service, django_assert_num_queries, how_many):
    for n in range(how_many):
        make_service(victor, name=f"S{n}", subcategory="Pay Per Hour")
    client = api(victor)

    with django_assert_num_queries(3):
        response = client.get("/api/v1/service/vendor/my-services?pageSize=100")
    assert response.json()["count"] == how_many


def test_detail_queries(anon, victor, make_service, django_assert_num_queries):
    service = make_service(victor, subcategory="Pay Per Hour")

    with django_assert_num_queries(1):
        assert anon.get(f"{SERVICES}/{service.pk}").status_code == 200


def test_services_are_counted_once_with_no_duplicates(anon, victor, make_service):
    make_service(victor, name="Tag match", tags=["alpha", "alphabet"], description="alpha")

    assert anon.get(f"{SERVICES}?search=alpha").json()["count"] == 1
    assert Service.objects.count() == 1
