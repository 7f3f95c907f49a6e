"""The service endpoints: who may do what, ownership, validation, update, toggle and soft delete."""

from __future__ import annotations

import json

import pytest

from conftest import grant
from marketplace.models import Category, Service

pytestmark = pytest.mark.django_db

SERVICES = "/api/v1/service"
MY_SERVICES = "/api/v1/service/vendor/my-services"


def detail(service) -> str:
    return f"{SERVICES}/{getattr(service, 'pk', service)}"


def toggle(service) -> str:
    return f"{detail(service)}/toggle-status"


def body(**overrides):
    return {
        "name": "Live tutoring",
        "description": "Maths, one to one.",
        "category": "Time-Based",
        "subcategory": "Pay Per Hour",
        "type": "video",
        "rate": "12.5",
        "token": "USDC",
        "unit": "per_hour",
        "minimumCharge": "1",
        "freeSeconds": 60,
        "metadata": {"language": "en"},
        "tags": ["maths", "tutoring"],
        **overrides,
    }


@pytest.fixture
def as_(request, anon, api):
    """as_("anon" | "alice" | "victor" | "wanda" | "olga" | "stan") -> a client for that member of the cast."""

    def client(who: str):
        return anon if who == "anon" else api(request.getfixturevalue(who))

    return client


@pytest.fixture
def service(victor, make_service):
    """Victor's service, with every field set."""
    return make_service(
        victor,
        name="Victor's studio",
        description="Recording time.",
        category="Time-Based",
        subcategory="Pay Per Hour",
        type="audio",
        rate=2_500_000,
        minimum_charge=500_000,
        free_seconds=30,
        metadata={"room": "A"},
        tags=["studio"],
    )


def messages_of(errors) -> list[str]:
    """Every message in a field's errors, however nested (list fields nest by index)."""
    if isinstance(errors, dict):
        return [m for value in errors.values() for m in messages_of(value)]
    if isinstance(errors, list):
        return [m for value in errors for m in messages_of(value)]
    return [errors]


def snapshot(service: Service) -> dict:
    service.refresh_from_db()
    return {
        f.attname: getattr(service, f.attname)
        for f in Service._meta.concrete_fields
        if f.attname not in ("updated_at",)
    } | {"updated_at": service.updated_at}


# --- create -------------------------------------------------------------------------------------


def test_vendor_creates_a_service(api, victor):
    response = api(victor).post(SERVICES, body(), format="json")

    assert response.status_code == 201
    answer = response.json()
    assert answer["message"] == "Service created."
    service = Service.objects.get()
    assert answer["service"] == {
        "id": service.pk,
        "vendor": {"id": victor.pk, "name": "Victor"},
        "name": "Live tutoring",
        "description": "Maths, one to one.",
        "category": "Time-Based",
        "subcategory": "Pay Per Hour",
        "type": "video",
        "rate": "12.500000",
        "token": "USDC",
        "unit": "per_hour",
        "minimumCharge": "1.000000",
        "freeSeconds": 60,
        "maxSessionCost": None,  # usage bounds: usage-metered services only
        "maxEventQuantity": None,
        "metadata": {"language": "en"},
        "tags": ["maths", "tutoring"],
        "isActive": True,
        "priceVersion": 1,
        "createdAt": service.created_at.isoformat().replace("+00:00", "Z"),
        "updatedAt": service.updated_at.isoformat().replace("+00:00", "Z"),
    }
    assert service.vendor == victor
    assert service.rate == 12_500_000
    assert service.minimum_charge == 1_000_000
    assert service.deleted_at is None


def test_create_defaults(api, victor):
    response = api(victor).post(
        SERVICES, {"name": "Bare", "category": "Usage-Based", "rate": 0.1, "unit": "per_request"}, format="json"
    )

    assert response.status_code == 201
    service = response.json()["service"]
    assert service["token"] == "USDC"
    assert service["rate"] == "0.100000"
    assert service["type"] == "other"
    assert service["subcategory"] is None
    assert service["minimumCharge"] == "0.000000"
    assert service["freeSeconds"] == 0
    assert service["maxSessionCost"] == "10.000000"  # a hundred units at its rate
    assert service["maxEventQuantity"] == 100
    assert service["metadata"] == {}
    assert service["tags"] == []
    assert service["isActive"] is True
    assert service["description"] == ""


def test_a_vendor_declares_a_usage_services_bounds(api, victor):
    response = api(victor).post(
        SERVICES,
        {
            "name": "Geocoding",
            "category": "Usage-Based",
            "rate": "0.002",
            "unit": "per_request",
            "maxSessionCost": "5",
            "maxEventQuantity": 1000,
        },
        format="json",
    )

    assert response.status_code == 201
    assert (response.json()["service"]["maxSessionCost"], response.json()["service"]["maxEventQuantity"]) == (
        "5.000000",
        1000,
    )
    service = Service.objects.get()
    assert (service.max_session_cost, service.max_event_quantity) == (5_000_000, 1000)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"unit": "per_minute", "maxSessionCost": "5"}, "maxSessionCost"),
        ({"unit": "per_minute", "maxEventQuantity": 10}, "maxEventQuantity"),
        ({"unit": "per_request", "maxSessionCost": "0"}, "maxSessionCost"),
        ({"unit": "per_request", "maxEventQuantity": 0}, "maxEventQuantity"),
        ({"unit": "per_request", "maxSessionCost": "0.0000001"}, "maxSessionCost"),
        # A cap below one unit's price: every report over it, the service charges nothing.
        ({"unit": "per_request", "maxSessionCost": "0.999999"}, "maxSessionCost"),
        # A minimum the cap could never let a session pay.
        ({"unit": "per_request", "maxSessionCost": "2", "minimumCharge": "500"}, "minimumCharge"),
    ],
)
def test_usage_bounds_out_of_place_or_out_of_range_are_400_and_create_nothing(api, victor, extra, field):
    response = api(victor).post(
        SERVICES, {"name": "Bounded", "category": "Usage-Based", "rate": "1", **extra}, format="json"
    )

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {field}
    assert not Service.objects.exists()


NOT_TIME_BASED = ["per_session", "per_gb", "per_request", "per_transaction"]
FREE_SECONDS_REFUSED = "Only time-metered services (per second, minute or hour) have free seconds."


@pytest.mark.parametrize("unit", NOT_TIME_BASED)
def test_free_seconds_on_a_unit_not_metered_by_time_are_400_and_create_nothing(api, victor, unit):
    """They were accepted and shown, and never honoured: a per-session fee was charged at the start
    whatever freeSeconds said."""
    response = api(victor).post(SERVICES, body(unit=unit, category="Usage-Based", subcategory=None), format="json")

    assert response.status_code == 400
    answer = response.json()
    assert (answer["code"], answer["errors"]) == ("invalid", {"freeSeconds": [FREE_SECONDS_REFUSED]})
    assert not Service.objects.exists()


@pytest.mark.parametrize("unit", NOT_TIME_BASED)
def test_a_unit_not_metered_by_time_shows_no_free_seconds(api, victor, unit):
    created = api(victor).post(
        SERVICES, body(unit=unit, category="Usage-Based", subcategory=None, freeSeconds=0), format="json"
    )
    left_out = api(victor).post(
        SERVICES, {"name": "Pass", "category": "Usage-Based", "rate": "2", "unit": unit}, format="json"
    )

    assert (created.status_code, left_out.status_code) == (201, 201)
    assert created.json()["service"]["freeSeconds"] == left_out.json()["service"]["freeSeconds"] == 0


@pytest.mark.parametrize("method", ["patch", "put"])
def test_free_seconds_given_to_a_per_session_service_are_400_and_change_nothing(api, victor, make_service, method):
    service = make_service(victor, unit="per_session")
    change = {"freeSeconds": 30} if method == "patch" else body(unit="per_session", freeSeconds=30)

    response = getattr(api(victor), method)(detail(service), change, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"freeSeconds": [FREE_SECONDS_REFUSED]}
    kept = Service.objects.get(pk=service.pk)
    assert (kept.free_seconds, kept.price_version, kept.updated_at) == (0, 1, service.updated_at)


def test_a_service_moved_off_time_drops_its_free_seconds_or_is_refused_with_them(api, victor, make_service):
    """Its free seconds mean nothing per session: they go with the unit, as a new unit's usage bounds
    come with it, unless the change itself names some."""
    client = api(victor)
    timed = make_service(victor, unit="per_minute", free_seconds=30)
    other = make_service(victor, unit="per_minute", free_seconds=30)

    moved = client.patch(detail(timed), {"unit": "per_session"}, format="json")
    refused = client.patch(detail(other), {"unit": "per_request", "freeSeconds": 30}, format="json")

    assert moved.status_code == 200
    assert (moved.json()["service"]["unit"], moved.json()["service"]["freeSeconds"]) == ("per_session", 0)
    assert moved.json()["service"]["priceVersion"] == 2
    assert refused.status_code == 400 and refused.json()["errors"] == {"freeSeconds": [FREE_SECONDS_REFUSED]}
    assert Service.objects.values_list("unit", "free_seconds").get(pk=other.pk) == ("per_minute", 30)


def test_category_names_are_case_insensitive_and_answered_canonically(api, victor):
    response = api(victor).post(SERVICES, body(category="time-based", subcategory="PAY PER HOUR"), format="json")

    assert response.status_code == 201
    assert response.json()["service"]["category"] == "Time-Based"
    assert response.json()["service"]["subcategory"] == "Pay Per Hour"


def test_eighteen_decimal_token_is_stored_exactly(api, victor):
    response = api(victor).post(
        SERVICES, body(token="ETH", rate="0.000000000000000001", minimumCharge="1.5"), format="json"
    )

    assert response.status_code == 201
    assert response.json()["service"]["rate"] == "0.000000000000000001"
    assert response.json()["service"]["minimumCharge"] == "1.500000000000000000"
    service = Service.objects.get()
    assert service.rate == 1
    assert service.minimum_charge == 1_500_000_000_000_000_000


def test_large_eighteen_decimal_rate_fits(api, victor):
    response = api(victor).post(SERVICES, body(token="STRK", rate="999999999999.999999999999999999"), format="json")

    assert response.status_code == 201
    assert Service.objects.get().rate == 999_999_999_999_999_999_999_999_999_999


def test_metadata_keys_are_kept_exactly_as_written(api, victor):
    metadata = {"max_resolution": "4k", "camelKey": {"inner_key": [{"deep_er": 1}]}}

    response = api(victor).post(SERVICES, body(metadata=metadata), format="json")

    assert response.status_code == 201
    assert response.json()["service"]["metadata"] == metadata
    assert Service.objects.get().metadata == metadata


def test_tags_are_trimmed_and_deduplicated(api, victor):
    response = api(victor).post(SERVICES, body(tags=[" Maths ", "maths", "kids"]), format="json")

    assert response.json()["service"]["tags"] == ["Maths", "kids"]


@pytest.mark.parametrize(
    ("who", "status"),
    [("anon", 401), ("alice", 403), ("olga", 403), ("stan", 403), ("victor", 201), ("wanda", 201)],
)
def test_create_role_matrix(as_, who, status):
    response = as_(who).post(SERVICES, body(), format="json")

    assert response.status_code == status
    assert Service.objects.count() == (1 if status == 201 else 0)
    if status == 403:
        assert response.json()["message"] == "Only vendors can do this."


def test_vendor_service_names_are_unique_whatever_the_case(api, victor, service):
    response = api(victor).post(SERVICES, body(name="VICTOR'S STUDIO"), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "service_name_taken"
    assert response.json()["errors"] == {"name": ["You already have a service with this name."]}
    assert Service.objects.count() == 1


def test_another_vendor_may_use_the_same_name(api, wanda, service):
    response = api(wanda).post(SERVICES, body(name="Victor's studio"), format="json")

    assert response.status_code == 201


def test_a_deleted_service_frees_its_name(api, victor, service):
    assert api(victor).delete(detail(service)).status_code == 200

    response = api(victor).post(SERVICES, body(name="Victor's studio"), format="json")

    assert response.status_code == 201
    assert Service.objects.filter(name="Victor's studio").count() == 2


BIG_METADATA = {"blob": "x" * 8200}


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"rate": "0"}, "rate", "Must be greater than zero."),
        ({"rate": 0}, "rate", "Must be greater than zero."),
        ({"rate": "-1"}, "rate", "Must not be negative."),
        ({"rate": "NaN"}, "rate", "Must be a finite number."),
        ({"rate": "Infinity"}, "rate", "Must be a finite number."),
        ({"rate": "twelve"}, "rate", "Must be a number or a decimal string."),
        ({"rate": None}, "rate", "This field may not be null."),
        ({"rate": "1.0000001"}, "rate", "Must have at most 6 decimal places."),
        ({"rate": "1.0000000000000000001", "token": "ETH"}, "rate", "Must have at most 18 decimal places."),
        ({"rate": "1e12"}, "rate", "Must be less than 1,000,000,000,000."),
        ({"minimumCharge": "-0.5"}, "minimum_charge", "Must not be negative."),
        ({"minimumCharge": "0.0000001"}, "minimum_charge", "Must have at most 6 decimal places."),
        ({"category": "Astrology"}, "category", "Unknown category 'Astrology'."),
        ({"category": "Pay Per Hour"}, "category", "Unknown category 'Pay Per Hour'."),
        ({"category": 7}, "category", "Give the category's name as a string."),
        ({"subcategory": "Nope"}, "subcategory", "Unknown subcategory 'Nope'."),
        ({"subcategory": "Data Services"}, "subcategory", "'Data Services' is not a subcategory of 'Time-Based'."),
        ({"unit": "per_year"}, "unit", '"per_year" is not a valid choice.'),
        ({"type": "film"}, "type", '"film" is not a valid choice.'),
        ({"token": "DOGE"}, "token", '"DOGE" is not a valid choice.'),
        ({"name": "x" * 121}, "name", "Ensure this field has no more than 120 characters."),
        ({"name": "   "}, "name", "This field may not be blank."),
        ({"description": "x" * 2001}, "description", "Ensure this field has no more than 2000 characters."),
        ({"metadata": ["a"]}, "metadata", "Must be a JSON object."),
        ({"metadata": "text"}, "metadata", "Must be a JSON object."),
        ({"metadata": BIG_METADATA}, "metadata", "Must be at most 8192 bytes of JSON; it is 8211."),
        ({"tags": [1, 2]}, "tags", "Tags must be strings."),
        ({"tags": [{"a": 1}]}, "tags", "Tags must be strings."),
        ({"tags": ["x" * 33]}, "tags", "Ensure this field has no more than 32 characters."),
        ({"tags": [""]}, "tags", "This field may not be blank."),
        ({"tags": [f"t{n}" for n in range(21)]}, "tags", "Ensure this field has no more than 20 elements."),
        ({"tags": "maths"}, "tags", 'Expected a list of items but got type "str".'),
        ({"freeSeconds": -1}, "free_seconds", "Ensure this value is greater than or equal to 0."),
        ({"freeSeconds": 86_401}, "free_seconds", "Ensure this value is less than or equal to 86400."),
    ],
)
def test_create_refuses_bad_input(api, victor, overrides, field, message):
    response = api(victor).post(SERVICES, body(**overrides), format="json")

    assert response.status_code == 400
    answer = response.json()
    # A name that is no category's is well formed: its code says which rule refused it.
    assert answer["code"] == ("unknown_category" if message.startswith("Unknown ") else "invalid")
    camel = field.split("_")[0] + "".join(p.title() for p in field.split("_")[1:])
    assert message in messages_of(answer["errors"][camel])
    assert Service.objects.count() == 0


NUL_FIELDS = [
    ("category", "Time-\u0000Based"),
    ("category", "\u0000"),
    ("subcategory", "Pay Per Hour\u0000"),
    ("metadata", {"language": "e\u0000n"}),
    ("metadata", {"lang\u0000uage": "en"}),
    ("metadata", {"deep": [{"er": {"still": ["ok", "\u0000"]}}]}),
    ("metadata", {"deep": {"k\u0000": None}}),
]


@pytest.mark.parametrize(("field", "value"), NUL_FIELDS)
def test_create_refuses_the_nul_character(api, victor, field, value):
    response = api(victor).post(SERVICES, body(**{field: value}), format="json")

    assert response.status_code == 400
    answer = response.json()
    assert answer["code"] == "invalid"
    assert answer["errors"] == {field: ["Must not contain the NUL character."]}
    assert Service.objects.count() == 0


@pytest.mark.parametrize(("field", "value"), NUL_FIELDS)
def test_patch_refuses_the_nul_character(api, victor, service, field, value):
    before = snapshot(service)

    response = api(victor).patch(detail(service), {field: value}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {field: ["Must not contain the NUL character."]}
    assert snapshot(service) == before


@pytest.mark.parametrize(
    ("field", "escaped"),
    [("category", '"Time\\ud800"'), ("subcategory", '"\\udfff"'), ("metadata", '{"k": ["\\ud800"]}')],
)
def test_create_refuses_a_lone_surrogate(api, victor, field, escaped):
    # Only a JSON escape can carry a lone surrogate: it is not UTF-8, and the database refuses it.
    raw = json.dumps(body(**{field: "SURROGATE"})).replace('"SURROGATE"', escaped)

    response = api(victor).post(SERVICES, data=raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "lone_surrogate"  # the body's (paygo/tests/test_lone_surrogates.py)
    assert Service.objects.count() == 0


@pytest.mark.parametrize("missing", ["name", "category", "rate", "unit"])
def test_create_requires_fields(api, victor, missing):
    payload = body()
    del payload[missing]

    response = api(victor).post(SERVICES, payload, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][missing] == ["This field is required."]
    assert Service.objects.count() == 0


def test_create_refuses_malformed_json(api, victor):
    response = api(victor).post(SERVICES, data='{"name": ', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


# --- read ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["anon", "alice", "victor", "wanda", "olga"])
def test_anyone_reads_an_active_service(as_, who, service):
    response = as_(who).get(detail(service))

    assert response.status_code == 200
    assert response.json()["service"]["id"] == service.pk
    assert response.json()["service"]["vendor"] == {"id": service.vendor_id, "name": "Victor"}
    assert "email" not in json.dumps(response.json())


@pytest.mark.parametrize(
    ("who", "status"),
    [("anon", 404), ("alice", 404), ("victor", 200), ("wanda", 404), ("olga", 200), ("stan", 404)],
)
def test_an_inactive_service_is_seen_by_its_vendor_and_staff_only(as_, who, status, service):
    service.is_active = False
    service.save(update_fields=["is_active"])

    assert as_(who).get(detail(service)).status_code == status


@pytest.mark.parametrize(
    ("who", "status"),
    [("anon", 404), ("alice", 404), ("victor", 404), ("wanda", 404), ("olga", 200), ("stan", 404)],
)
def test_a_deleted_service_is_seen_by_staff_only(api, as_, who, status, victor, service):
    api(victor).delete(detail(service))

    assert as_(who).get(detail(service)).status_code == status


def test_the_service_of_a_deactivated_vendor_is_hidden(api, alice, victor, service):
    victor.is_active = False
    victor.save(update_fields=["is_active"])

    assert api(alice).get(detail(service)).status_code == 404


def test_unknown_service_is_404(anon):
    assert anon.get(detail(999_999)).status_code == 404
    assert anon.get(f"{SERVICES}/not-a-number").status_code == 404


# --- update -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    # Staff, superusers included, edit no service's fields (the admin edits none): only its vendor.
    [("anon", 401), ("alice", 403), ("victor", 200), ("wanda", 404), ("olga", 403), ("stan", 403)],
)
def test_patch_role_matrix(as_, who, status, service):
    before = snapshot(service)

    response = as_(who).patch(detail(service), {"name": "Renamed", "rate": "3"}, format="json")

    assert response.status_code == status
    if status == 200:
        assert response.json()["message"] == "Service updated."
        assert response.json()["service"]["name"] == "Renamed"
        assert response.json()["service"]["rate"] == "3.000000"
        service.refresh_from_db()
        assert (service.name, service.rate, service.vendor_id) == ("Renamed", 3_000_000, before["vendor_id"])
    else:
        assert snapshot(service) == before


@pytest.mark.parametrize(
    ("who", "status"),
    [("anon", 401), ("alice", 403), ("victor", 200), ("wanda", 404), ("olga", 403), ("stan", 403)],
)
def test_put_role_matrix(as_, who, status, service):
    before = snapshot(service)

    response = as_(who).put(detail(service), body(name="Replaced"), format="json")

    assert response.status_code == status
    if status == 200:
        service.refresh_from_db()
        assert service.name == "Replaced"
        assert service.tags == ["maths", "tutoring"]
        assert service.vendor_id == before["vendor_id"]
    else:
        assert snapshot(service) == before


def test_put_requires_the_whole_service(api, victor, service):
    before = snapshot(service)

    response = api(victor).put(detail(service), {"name": "Only a name"}, format="json")

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"category", "rate", "unit"}
    assert snapshot(service) == before


def test_put_resets_optional_fields_but_keeps_the_active_state(api, victor, service):
    service.is_active = False
    service.save(update_fields=["is_active"])

    response = api(victor).put(
        detail(service), {"name": "Plain", "category": "Usage-Based", "rate": "1", "unit": "per_gb"}, format="json"
    )

    assert response.status_code == 200
    service.refresh_from_db()
    assert (service.tags, service.metadata, service.minimum_charge, service.free_seconds) == ([], {}, 0, 0)
    assert service.subcategory is None
    assert service.is_active is False
    # Now usage-metered: it declares the default bounds (100 GB a report, 100 GB's worth a session).
    assert (service.max_session_cost, service.max_event_quantity) == (100 * 1_000_000, 100 * 10**9)


def test_patch_validates_like_create(api, victor, service):
    before = snapshot(service)

    for payload in ({"rate": "0"}, {"unit": "per_year"}, {"metadata": [1]}, {"subcategory": "Data Services"}):
        response = api(victor).patch(detail(service), payload, format="json")
        assert response.status_code == 400, payload

    assert snapshot(service) == before


def test_patch_rate_uses_the_current_token(api, victor, make_service):
    eth = make_service(victor, token="ETH", rate=10**18)

    response = api(victor).patch(detail(eth), {"rate": "0.000000000000000002"}, format="json")

    assert response.status_code == 200
    eth.refresh_from_db()
    assert eth.rate == 2


def test_changing_the_token_needs_the_rate_in_the_new_token(api, victor, service):
    before = snapshot(service)

    response = api(victor).patch(detail(service), {"token": "ETH"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"rate": ["Give the rate in the new token when changing the token."]}
    assert snapshot(service) == before


def test_changing_the_token_needs_the_minimum_charge_too_when_there_is_one(api, victor, service):
    response = api(victor).patch(detail(service), {"token": "ETH", "rate": "0.001"}, format="json")

    assert response.status_code == 400
    assert "minimumCharge" in response.json()["errors"]

    response = api(victor).patch(
        detail(service), {"token": "ETH", "rate": "0.001", "minimumCharge": "0"}, format="json"
    )

    assert response.status_code == 200
    service.refresh_from_db()
    assert (service.token, service.rate, service.minimum_charge) == ("ETH", 10**15, 0)
    assert response.json()["service"]["rate"] == "0.001000000000000000"


def test_renaming_onto_another_of_ones_own_services_is_409(api, victor, service, make_service):
    other = make_service(victor, name="Second")

    response = api(victor).patch(detail(other), {"name": "victor's STUDIO"}, format="json")

    assert response.status_code == 409
    other.refresh_from_db()
    assert other.name == "Second"


def test_patch_keeping_the_same_name_is_fine(api, victor, service):
    response = api(victor).patch(detail(service), {"name": "Victor's studio", "description": "New."}, format="json")

    assert response.status_code == 200
    service.refresh_from_db()
    assert service.description == "New."


def test_a_deleted_service_cannot_be_changed(api, victor, olga, service):
    api(victor).delete(detail(service))
    before = snapshot(service)

    assert api(victor).patch(detail(service), {"isActive": True}, format="json").status_code == 404
    assert api(victor).patch(toggle(service)).status_code == 404
    assert api(olga).patch(toggle(service)).status_code == 404
    assert snapshot(service) == before


# --- delete -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [("anon", 401), ("alice", 403), ("victor", 200), ("wanda", 404), ("olga", 200), ("stan", 403)],
)
def test_delete_role_matrix(as_, who, status, service):
    before = snapshot(service)

    response = as_(who).delete(detail(service))

    assert response.status_code == status
    if status == 200:
        assert response.json() == {"message": "Service deleted."}
        service.refresh_from_db()
        assert service.deleted_at is not None
        assert service.is_active is False
    else:
        assert snapshot(service) == before


def test_delete_is_soft_and_hides_the_service_everywhere(api, anon, alice, victor, service, make_service):
    kept = make_service(victor, name="Kept")

    api(victor).delete(detail(service))

    assert Service.objects.filter(pk=service.pk).exists()  # the row and its history stay
    assert [s["id"] for s in anon.get(SERVICES).json()["services"]] == [kept.pk]
    assert [s["id"] for s in api(victor).get(MY_SERVICES).json()["services"]] == [kept.pk]
    assert [s["id"] for s in api(victor).get(f"{SERVICES}?includeInactive=true").json()["services"]] == [kept.pk]
    assert api(alice).get(detail(service)).status_code == 404
    assert api(victor).delete(detail(service)).status_code == 404  # already gone


# --- toggle-status ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [("anon", 401), ("alice", 403), ("victor", 200), ("wanda", 404), ("olga", 200), ("stan", 403)],
)
def test_toggle_role_matrix(as_, who, status, service):
    before = snapshot(service)

    response = as_(who).patch(toggle(service))

    assert response.status_code == status
    service.refresh_from_db()
    if status == 200:
        assert response.json() == {"message": "Service deactivated.", "isActive": False}
        assert service.is_active is False
    else:
        assert snapshot(service) == before


def test_toggle_flips_back_and_forth(api, victor, service):
    client = api(victor)

    assert client.patch(toggle(service)).json() == {"message": "Service deactivated.", "isActive": False}
    assert client.patch(toggle(service)).json() == {"message": "Service activated.", "isActive": True}
    service.refresh_from_db()
    assert service.is_active is True


def test_toggle_only_answers_patch(api, victor, service):
    assert api(victor).post(toggle(service)).status_code == 405


# --- staff: the permissions the admin asks --------------------------------------------------------


def test_staff_with_the_change_permission_may_only_do_what_the_admin_does(api, stan, service):
    """The admin's change permission (de)activates a service; its page edits no field. Through the
    API likewise: the toggle, but neither the name nor the rate of another vendor's service."""
    staff = api(grant(stan, "marketplace.change_service"))
    before = snapshot(service)

    assert staff.delete(detail(service)).status_code == 403
    for method, body in (("patch", {"name": "Renamed"}), ("patch", {"rate": "9"}), ("put", {"name": "Renamed"})):
        response = getattr(staff, method)(detail(service), body, format="json")
        assert response.status_code == 403
        assert response.json()["message"] == "Only vendors can do this."
    assert snapshot(service) == before
    assert staff.patch(toggle(service)).json() == {"message": "Service deactivated.", "isActive": False}
    service.refresh_from_db()
    assert (service.name, service.rate, service.is_active) == (before["name"], before["rate"], False)


def test_a_vendor_who_is_also_staff_edits_only_his_own_services(api, wanda, service):
    """Staff reach (a vendor account with the staff flag and every service permission) does not
    extend editing to another vendor's service: 404, as for any other vendor."""
    wanda.is_staff = True
    wanda.save(update_fields=["is_staff"])
    staff_vendor = api(grant(wanda, "marketplace.change_service", "marketplace.view_service"))
    before = snapshot(service)

    assert staff_vendor.patch(detail(service), {"rate": "9"}, format="json").status_code == 404
    assert snapshot(service) == before


def test_staff_need_the_view_permission_beside_delete_to_retire_as_in_the_admin(api, stan, service):
    """The admin's retire action is on the services' list, which asks for the view (or change)
    permission: delete alone opens neither."""
    staff = api(grant(stan, "marketplace.delete_service"))

    response = staff.delete(detail(service))

    assert response.status_code == 403
    assert "marketplace.view_service and marketplace.delete_service" in response.json()["message"]
    service.refresh_from_db()
    assert service.deleted_at is None


def test_staff_may_retire_a_service_with_the_view_and_delete_permissions_only(api, stan, service):
    staff = api(grant(stan, "marketplace.view_service", "marketplace.delete_service"))
    before = snapshot(service)

    assert staff.patch(detail(service), {"name": "Renamed"}, format="json").status_code == 403
    assert staff.put(detail(service), body(name="Replaced"), format="json").status_code == 403
    assert staff.patch(toggle(service)).status_code == 403
    assert snapshot(service) == before
    assert staff.delete(detail(service)).status_code == 200
    service.refresh_from_db()
    assert service.deleted_at is not None


def test_staff_with_the_view_permission_see_every_service_and_change_none(api, victor, stan, service):
    api(victor).patch(toggle(service))
    before = snapshot(service)
    staff = api(grant(stan, "marketplace.view_service"))

    assert staff.get(detail(service)).status_code == 200
    assert staff.patch(detail(service), {"name": "Renamed"}, format="json").status_code == 403
    assert staff.delete(detail(service)).status_code == 403
    assert snapshot(service) == before


# --- my-services --------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "status"), [("anon", 401), ("alice", 403), ("olga", 403), ("stan", 403)])
def test_my_services_is_for_vendors(as_, who, status, service):
    assert as_(who).get(MY_SERVICES).status_code == status


def test_my_services_lists_only_ones_own_active_or_not(api, victor, wanda, service, make_service):
    inactive = make_service(victor, name="Paused", is_active=False)
    make_service(wanda, name="Wanda's")

    response = api(victor).get(MY_SERVICES)

    assert response.status_code == 200
    assert [s["id"] for s in response.json()["services"]] == [inactive.pk, service.pk]
    assert response.json()["count"] == 2
    assert [s["id"] for s in api(victor).get(f"{MY_SERVICES}?isActive=false").json()["services"]] == [inactive.pk]
    assert [s["id"] for s in api(victor).get(f"{MY_SERVICES}?isActive=true").json()["services"]] == [service.pk]
    assert api(wanda).get(MY_SERVICES).json()["count"] == 1


def test_my_services_filters_and_validates(api, victor, service, make_service):
    data = make_service(victor, name="Data feed", category="Data & Analytics", unit="per_request")

    assert [s["id"] for s in api(victor).get(f"{MY_SERVICES}?unit=per_request").json()["services"]] == [data.pk]
    assert api(victor).get(f"{MY_SERVICES}?unit=per_year").status_code == 400


@pytest.mark.parametrize("field", ["category", "subcategory"])
def test_my_services_filter_holding_nul_is_400(api, victor, service, field):
    response = api(victor).get(f"{MY_SERVICES}?{field}=%00")

    assert response.status_code == 400
    assert response.json()["errors"] == {field: ["Must not contain the NUL character."]}


def test_a_vendor_who_is_no_longer_one_sells_nothing(api, anon, alice, victor, service):
    """An operator takes the vendor role away (the admin's role field): his services leave the
    marketplace and cannot be started, as the vendor directory already drops him."""
    from wallets.tests.conftest import fund_wallet

    fund_wallet(alice, 50_000_000)
    victor.role = "user"
    victor.save(update_fields=["role"])

    started = api(alice).post("/api/v1/streams/start", {"serviceId": service.pk}, format="json")

    assert anon.get(detail(service)).status_code == 404
    assert service.pk not in [listed["id"] for listed in anon.get(SERVICES).json()["services"]]
    assert started.status_code == 400
    assert started.json()["errors"]["serviceId"] == ["No such service."]


def test_a_rate_raised_past_the_cap_is_told_and_changes_nothing(api, victor):
    """The default cap (a hundred units) was kept when the rate rose past it: a service whose
    every report was over its cap."""
    client = api(victor)
    created = client.post(
        SERVICES, {"name": "Calls", "category": "Usage-Based", "rate": "1", "unit": "per_request"}, format="json"
    )
    service_id = created.json()["service"]["id"]

    raised = client.patch(f"{SERVICES}/{service_id}", {"rate": "1000"}, format="json")
    both = client.patch(f"{SERVICES}/{service_id}", {"rate": "1000", "maxSessionCost": "100000"}, format="json")

    assert raised.status_code == 400 and set(raised.json()["errors"]) == {"maxSessionCost"}
    assert both.status_code == 200
    assert (both.json()["service"]["rate"], both.json()["service"]["maxSessionCost"]) == (
        "1000.000000",
        "100000.000000",
    )


def test_a_service_read_back_can_be_sent_again_whatever_its_rate(api, victor):
    """The default cap, a hundred units, could pass what the API takes as an amount (under 10^12
    whole tokens): the service read back and sent again was refused."""
    client = api(victor)
    created = client.post(
        SERVICES,
        {"name": "Big", "category": "Usage-Based", "rate": "50000000000", "unit": "per_request", "token": "ETH"},
        format="json",
    ).json()["service"]
    fields = ("name", "description", "category", "subcategory", "type", "rate", "token", "unit", "minimumCharge",
              "freeSeconds", "maxSessionCost", "maxEventQuantity", "metadata", "tags", "isActive")  # fmt: skip

    sent_again = client.put(f"{SERVICES}/{created['id']}", {name: created[name] for name in fields}, format="json")

    assert sent_again.status_code == 200, sent_again.json()
    terms = ("rate", "maxSessionCost", "priceVersion")
    stored = client.get(f"{SERVICES}/{created['id']}").json()["service"]
    assert [sent_again.json()["service"][name] for name in terms] == [created[name] for name in terms]
    assert [stored[name] for name in terms] == [created[name] for name in terms]  # the same terms, no new price


TAKEN = (409, "service_name_taken", "You already have a service with this name.")
INVISIBLE = (400, "invisible", "Use visible characters only (no control, zero-width or text-direction characters).")


@pytest.mark.parametrize(
    ("first", "second", "refusal"),
    [
        ("Caf\u00e9", "Cafe\u0301", TAKEN),  # one character, or a letter and its accent: the same text
        ("Foo", "Foo\u200b", INVISIBLE),  # a zero-width space after it
        ("Foo Bar", "Foo  Bar", TAKEN),  # two spaces
        ("Foo", "\uff26\uff4f\uff4f", TAKEN),  # full-width letters
    ],
    ids=["composed", "zero-width", "spaces", "full-width"],
)
def test_names_that_look_the_same_are_one_name(api, victor, first, second, refusal):
    """Names that looked the same were two names: one service could pose as another."""
    client = api(victor)
    assert client.post(SERVICES, body(name=first), format="json").status_code == 201

    response = client.post(SERVICES, body(name=second), format="json")

    status, code, message = refusal
    assert (response.status_code, response.json()["code"]) == (status, code), response.json()
    assert response.json()["errors"] == {"name": [message]}
    assert Service.objects.count() == 1


@pytest.mark.parametrize("name", ["\u200b", "\u202eevil", "a\x07b\x1b[31m"], ids=["zero-width", "bidi", "controls"])
def test_names_with_invisible_or_control_characters_are_400(api, victor, name):
    response = api(victor).post(SERVICES, body(name=name), format="json")

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"name"}
    assert not Service.objects.exists()


def test_a_name_is_kept_in_one_form_and_emoji_keep_their_joiners(api, victor):
    created = api(victor).post(
        SERVICES, body(name="  \uff26\uff4f\uff4f   Caf\u0065\u0301 \U0001f468\u200d\U0001f469  "), format="json"
    )

    assert created.status_code == 201, created.json()
    assert created.json()["service"]["name"] == "Foo Caf\u00e9 \U0001f468\u200d\U0001f469"


@pytest.mark.parametrize("edit", [{"isActive": True}, {"description": "Edited after it was retired"}])
def test_an_edit_racing_the_services_retirement_is_a_404_and_writes_nothing(api, victor, monkeypatch, edit):
    """The view read the service, then a DELETE committed before the edit was written: answered
    500 (an active retired service, refused by the database) or written onto a retired service."""
    from marketplace import selectors as market_selectors
    from marketplace.services import service_create, service_delete

    category = Category.objects.filter(parent__isnull=True).first()
    service = service_create(
        vendor=victor, name="Svc", category=category, rate=1000, unit="per_minute", is_active=False
    )
    fetch = market_selectors.service_get_for_owner

    def fetched_then_retired_by_another_request(**kwargs):
        found = fetch(**kwargs)
        service_delete(service=Service.objects.get(pk=found.pk), by=victor)  # the DELETE commits now
        return found

    monkeypatch.setattr(market_selectors, "service_get_for_owner", fetched_then_retired_by_another_request)
    response = api(victor).patch(f"/api/v1/service/{service.pk}", edit, format="json")

    assert response.status_code == 404, response.content
    service.refresh_from_db()
    assert (service.is_deleted, service.is_active, service.description) == (True, False, "")
